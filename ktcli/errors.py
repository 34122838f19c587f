"""Turn the errors a user can cause into one clear line and an exit code."""
import sys
from contextlib import contextmanager
from typing import Iterator

from registry_plugins.checkpoint_loading import CheckpointError


class UserError(Exception):
    """A problem with the user's input, data or files; its message says the fix."""


# Errors raised by kt, mmengine or mmpretrain that mean bad input, not a bug.
USER_ERRORS = (UserError, CheckpointError, FileNotFoundError, FileExistsError,
               NotADirectoryError, PermissionError)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _first_line(error: BaseException) -> str:
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
    except USER_ERRORS as error:
        print(f'error: {_first_line(error)}', file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        print(f'interrupted{": " + resume_hint if resume_hint else ""}', file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
