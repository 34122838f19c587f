"""What an error a user can cause is, and how it reads in one line.

kt's command line and its plugins raise these alike; ``ktcli.errors`` turns them into an
exit code.
"""
import errno
from contextlib import contextmanager
from typing import Iterator, Optional


class UserError(Exception):
    """A problem with the user's input, data or files; its message says the fix."""


# What the machine can cause while kt writes, and the fix.
_STORAGE_FIXES = {
    errno.ENOSPC: 'the disk is full: free some space',
    errno.EDQUOT: 'the disk quota is exceeded: free some space',
    errno.EROFS: 'the file system is read-only: pass a writable --work-dir',
    errno.EACCES: 'permission denied: pass a --work-dir you can write to',
    errno.EPERM: 'permission denied: pass a --work-dir you can write to',
}


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type name if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def storage_failure(error: BaseException) -> Optional[str]:
    """One line for a full disk, read-only folder or denied permission, naming the file
    and the fix; None for any other error."""
    fix = _STORAGE_FIXES.get(error.errno) if isinstance(error, OSError) else None
    if fix is None:
        return None
    return f'cannot write {error.filename or "a file"}: {fix}; nothing finished was lost'


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
