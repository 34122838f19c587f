"""Turn the errors a user can cause into one clear line and an exit code.

Light on imports on purpose: the CLI reports bad input before torch loads.
"""
import sys
from contextlib import contextmanager
from typing import Iterator

from ktbase.errors import UserError, first_line, storage_failure

# Raised by kt, mmengine or mmpretrain for bad input rather than for a bug.
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, NotADirectoryError,
               PermissionError)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the host or a GPU running out of memory."""
    return isinstance(error, MemoryError) or type(error).__name__ == 'OutOfMemoryError'


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` means bad input (including unusable checkpoints) or
    a limit of the machine (full disk, read-only folder, out of memory)."""
    if (isinstance(error, USER_ERRORS) or storage_failure(error) is not None
            or is_out_of_memory(error)):
        return True
    # Only loaded once something has touched checkpoints.
    checkpoints = sys.modules.get('registry_plugins.errors')
    return checkpoints is not None and isinstance(error, checkpoints.CheckpointError)


def describe(error: BaseException) -> str:
    """One line for a user error: its message, or what the machine lacks and the fix."""
    failure = storage_failure(error)
    if failure is not None:
        return failure
    if is_out_of_memory(error):
        return (f'out of memory ({first_line(error)[:120]}): lower --batch-size or --img-size, '
                'or use a smaller --backbone')
    return first_line(error)


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
