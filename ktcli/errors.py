"""Turn the errors a user can cause into one clear line and an exit code.

Light on imports on purpose: the CLI reports bad input before torch loads.
"""
import sys
from contextlib import contextmanager
from typing import Iterator


class UserError(Exception):
    """A problem with the user's input, data or files; its message says the fix."""


# Raised by kt, mmengine or mmpretrain for bad input rather than for a bug.
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, NotADirectoryError,
               PermissionError)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` means bad input (including unusable checkpoints)."""
    if isinstance(error, USER_ERRORS):
        return True
    # Only loaded once something has touched checkpoints.
    checkpoints = sys.modules.get('registry_plugins.checkpoint_loading')
    return checkpoints is not None and isinstance(error, checkpoints.CheckpointError)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type name if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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
        print(f'error: {first_line(error)}', file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
