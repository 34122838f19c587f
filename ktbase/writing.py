"""Write kt's files so that a kill, a full disk or a read-only folder loses nothing."""
import contextlib
import errno
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from .errors import UserError, storage_failure


def write_atomically(path: Path, content: Union[str, bytes],
                     check: Optional[Callable[[Path], None]] = None, mode: int = 0o666) -> None:
    """Replace ``path`` by a file holding ``content``, all at once.

    The content goes to a new file in ``path``'s folder, which is synced,
    checked by ``check`` if given, and renamed over ``path``: a reader finds
    the old or the new complete file, never a part, and a link at ``path`` is
    replaced, not followed. Where the file system allows (Linux ``O_TMPFILE``)
    the new file has no name until it is complete and checked, so a kill
    (even kill -9) leaves nothing behind; elsewhere it is a hidden
    ``.NAME.*.tmp`` beside ``path``, removed on any failure kt sees.

    Args:
        path (Path): The file to write.
        content (str | bytes): Its new content.
        check (callable, optional): Called with a path that reads the
            complete new file (named like ``path``), before it replaces
            ``path``; whatever it raises leaves ``path`` as it was. Defaults
            to None.
        mode (int): The new file's permissions (less the umask). Defaults to 0o666.

    Raises:
        UserError: The file cannot be written (disk full, read-only, no
            permission); the message names the path and the fix.
    """
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp')
    data = content.encode() if isinstance(content, str) else content
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = _unnamed_file(path.parent, mode)
        named = descriptor is None
        if named:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, mode)
        with os.fdopen(descriptor, 'wb') as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
            if check is not None:
                with _readable_as(temporary if named else None, descriptor, path.name) as view:
                    check(view)
            if not named:
                _name_unnamed(descriptor, temporary)
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        error.filename = str(path)
        raise UserError(storage_failure(error)
                        or f'cannot write {path}: {error.strerror or error}') from None
    except BaseException:
        _remove(temporary)
        raise


def _unnamed_file(folder: Path, mode: int) -> Optional[int]:
    """A new file without a name in ``folder`` (``O_TMPFILE``), or None where unsupported."""
    if not hasattr(os, 'O_TMPFILE') or not os.path.isdir('/proc/self/fd'):
        return None
    try:
        return os.open(folder, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, mode)
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None
        raise


def _name_unnamed(descriptor: int, path: Path) -> None:
    """Give the unnamed file ``descriptor`` the name ``path`` (``linkat`` following its
    ``/proc`` link: Python calls plain ``link``, which would not, unless a folder
    descriptor is passed)."""
    root = os.open('/', os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.link(f'/proc/self/fd/{descriptor}', path, src_dir_fd=root, follow_symlinks=True)
    finally:
        os.close(root)


@contextlib.contextmanager
def _readable_as(named: Optional[Path], descriptor: int, name: str) -> Iterator[Path]:
    """A path named ``name`` that reads the file being written (for checks in other
    processes): the named temporary file itself, or a link to the unnamed one in a private
    folder."""
    if named is not None:
        yield named
        return
    with private_temporary_folder('kt_write_') as folder:
        view = Path(folder) / name
        view.symlink_to(f'/proc/{os.getpid()}/fd/{descriptor}')
        yield view


@contextlib.contextmanager
def private_temporary_folder(prefix: str) -> Iterator[str]:
    """A new temporary folder, removed on leaving, named ``<prefix><pid>_...``; the folders
    of this prefix that processes no longer running left behind (killed with -9 before
    they could remove them) are removed first."""
    import shutil
    root = Path(tempfile.gettempdir())
    for stale in root.glob(f'{prefix}*_*'):
        pid = stale.name[len(prefix):].partition('_')[0]
        with contextlib.suppress(OSError):
            if (pid.isdigit() and not _running(int(pid)) and stale.is_dir()
                    and not stale.is_symlink() and stale.lstat().st_uid == os.getuid()):
                shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f'{prefix}{os.getpid()}_') as folder:
        yield folder


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (a signal 0 finds it, whoever owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove(path: Path) -> None:
    """Remove ``path`` if it is there; a failure leaves it (nothing else to do then)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
