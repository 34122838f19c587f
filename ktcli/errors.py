"""Turn the errors a user can cause into one clear line and an exit code.

Light on imports on purpose: the CLI reports bad input before torch loads.
"""
import errno
import sys
from contextlib import contextmanager
from typing import Iterator, Optional


class UserError(Exception):
    """A problem with the user's input, data or files; its message says the fix."""


# Raised by kt, mmengine or mmpretrain for bad input rather than for a bug.
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, NotADirectoryError,
               PermissionError)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# What the machine can cause while kt writes, and the fix.
_STORAGE_FIXES = {
    errno.ENOSPC: 'the disk is full: free some space',
    errno.EDQUOT: 'the disk quota is exceeded: free some space',
    errno.EROFS: 'the file system is read-only: pass a writable --work-dir',
    errno.EACCES: 'permission denied: pass a --work-dir you can write to',
    errno.EPERM: 'permission denied: pass a --work-dir you can write to',
}


def storage_fix(error: BaseException) -> Optional[str]:
    """The fix for a full disk, read-only folder or denied permission, else None."""
    return _STORAGE_FIXES.get(error.errno) if isinstance(error, OSError) else None


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the host or a GPU running out of memory."""
    return isinstance(error, MemoryError) or type(error).__name__ == 'OutOfMemoryError'


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` means bad input (including unusable checkpoints) or
    a limit of the machine (full disk, read-only folder, out of memory)."""
    if isinstance(error, USER_ERRORS) or storage_fix(error) or is_out_of_memory(error):
        return True
    # Only loaded once something has touched checkpoints.
    checkpoints = sys.modules.get('registry_plugins.errors')
    return checkpoints is not None and isinstance(error, checkpoints.CheckpointError)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type name if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def describe(error: BaseException) -> str:
    """One line for a user error: its message, or what the machine lacks and the fix."""
    fix = storage_fix(error)
    if fix is not None:
        return f'cannot write {error.filename or "a file"}: {fix}; nothing finished was lost'
    if is_out_of_memory(error):
        return (f'out of memory ({first_line(error)[:120]}): lower --batch-size or --img-size, '
                'or use a smaller --backbone')
    return first_line(error)


@contextmanager
def builds_from(source: Optional[str], what: str) -> Iterator[None]:
    """Turn any failure to build ``what`` from a config into one user error naming both.

    A config that passed kt's checks (registered types only) can still hold values its
    classes refuse in their own ways (a registered name of the wrong kind, a bad argument);
    that is the config's fault, not a bug.

    Args:
        source (str, optional): The config's file (None: "the config").
        what (str): What is built, e.g. ``'model'``.
    """
    try:
        yield
    except UserError:
        raise
    except Exception as error:  # any failure of the config's own classes
        raise UserError(f'the {what} of {source or "the config"} does not build '
                        f'({type(error).__name__}: {first_line(error)[:200]}); retrain the stage '
                        'with `kt train`, or fix the config') from None


@contextmanager
def exit_on_user_error(resume_hint: str = '') -> Iterator[None]:
    """Report user errors and Ctrl-C as one line on stderr, then exit.

    Anything else (a bug) propagates with its traceback.

    Args:
        resume_hint (str): What to run to continue after Ctrl-C.
            Defaults to ''.
    """
    try:
        yield
    except KeyboardInterrupt:
        print(f'interrupted{": " + resume_hint if resume_hint else ""}', file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as error:
        if not is_user_error(error):
            raise
        print(f'error: {describe(error)}', file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
