"""Write kt's files so that a kill, a full disk or a read-only folder loses nothing, and
count the CPUs kt may use."""
import contextlib
import os
import threading
from pathlib import Path
from typing import Union

from .errors import UserError, describe, storage_fix


def write_atomically(path: Path, content: Union[str, bytes]) -> None:
    """Replace ``path`` by a file holding ``content``, all at once.

    The content goes to a temporary file beside ``path``, which is synced and
    renamed over it: a reader finds the old or the new complete file, never a
    part. If writing fails, the temporary file is removed and ``path`` is
    left as it was.

    Args:
        path (Path): The file to write.
        content (str | bytes): Its new content.

    Raises:
        UserError: The file cannot be written (disk full, read-only, no
            permission); the message names the path and the fix.
    """
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, 'wb' if isinstance(content, bytes) else 'w') as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        error.filename = str(path)
        raise UserError(describe(error) if storage_fix(error)
                        else f'cannot write {path}: {error.strerror or error}') from None


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
