"""Write the files of a work dir so that a kill, a full disk or a read-only folder loses nothing."""
import contextlib
import os
from pathlib import Path

from ..errors import UserError, describe, storage_fix


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by a file holding ``text``, all at once.

    The text goes to a temporary file beside ``path``, which is synced and
    renamed over it: a reader finds the old or the new complete file, never a
    part. If writing fails, the temporary file is removed and ``path`` is
    left as it was.

    Args:
        path (Path): The file to write.
        text (str): Its new content.

    Raises:
        UserError: The file cannot be written (disk full, read-only, no
            permission); the message names the path and the fix.
    """
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, 'w') as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        error.filename = str(path)
        raise UserError(describe(error) if storage_fix(error)
                        else f'cannot write {path}: {error.strerror or error}') from None
