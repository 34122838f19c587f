"""Download a dataset's official archive, resumably, verify it and unpack it.

Plain ``urllib`` and ``rich``: the archive is streamed into
``<archive>.part`` with a progress bar, an interrupted download resumes with
an HTTP Range request, and the archive is only renamed into place once its
MD5 matches.
"""
import hashlib
import http.client
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse
from urllib.request import url2pathname

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .. import __version__
from ..errors import UserError, first_line
from .check import layout_problem
from .specs import dataset_spec

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
# The most an archive may unpack to (CUB-200-2011 is 1.2 GB, FGVC-Aircraft 2.8 GB).
MAX_UNPACKED_BYTES = 64 * 2 ** 30
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError,
                   http.client.HTTPException)


def _md5_of_file(path: Path) -> 'hashlib._Hash':
    """The MD5 state after hashing a whole file, ready for more bytes."""
    digest = hashlib.md5()
    with path.open('rb') as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    """Open ``url``, asking for the bytes from ``offset`` on when it is not 0."""
    headers = {'User-Agent': f'kt/{__version__}'}
    if offset:
        headers['Range'] = f'bytes={offset}-'
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                  timeout=TIMEOUT_S)


def _resumes_at(response: http.client.HTTPResponse, offset: int, url: str) -> bool:
    """Whether a response continues a partial download at ``offset``.

    A 200 answer (the server ignored the Range header) means starting over.
    """
    if response.status != 206:
        return False
    match = re.match(r'bytes (\d+)-', response.headers.get('Content-Range', ''))
    if match is None or int(match[1]) != offset:
        raise UserError(f'{url} answered a request for the bytes from {offset} on with '
                        f'{response.headers.get("Content-Range")!r}; delete the .part file and '
                        'run the same command again')
    return True


def _progress(console: Console) -> Progress:
    """A progress bar with bytes, speed and time left."""
    return Progress(TextColumn('{task.description}'), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console)


def _stream(url: str, part: Path, console: Console) -> 'hashlib._Hash':
    """Download ``url`` into ``part``, resuming what it holds.

    Returns:
        The MD5 state of the whole file.
    """
    offset = part.stat().st_size if part.is_file() else 0
    try:
        with _open(url, offset) as response:
            if not _resumes_at(response, offset, url):
                offset = 0
            digest = _md5_of_file(part) if offset else hashlib.md5()
            length = response.headers.get('Content-Length')
            total = offset + int(length) if length else None
            with part.open('ab' if offset else 'wb') as file, _progress(console) as progress:
                task = progress.add_task(escape(part.name.removesuffix('.part')), total=total,
                                         completed=offset)
                while chunk := response.read(CHUNK_BYTES):
                    file.write(chunk)
                    digest.update(chunk)
                    progress.advance(task, len(chunk))
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # The .part file already holds the whole archive.
            return _md5_of_file(part)
        raise UserError(f'download of {url} failed: HTTP {error.code} {error.reason}; check the '
                        'URL, or retry later') from None
    except _NETWORK_ERRORS as error:
        reason = getattr(error, 'reason', None) or first_line(error)
        raise UserError(f'download of {url} failed ({reason}); check the connection and run the '
                        'same command again (a partial download resumes)') from None
    if total is not None and part.stat().st_size < total:
        raise UserError(f'download of {url} stopped after {part.stat().st_size} of {total} '
                        'bytes; run the same command again to resume')
    return digest


def _fetch(url: str, archive: Path, expected_md5: str, console: Console) -> None:
    """Download ``url`` to ``archive`` through ``archive.part``, checking its MD5."""
    part = archive.with_name(archive.name + '.part')
    got = _stream(url, part, console).hexdigest()
    if got != expected_md5:
        part.unlink()
        raise UserError(f'the checksum of {archive.name} from {url} did not match (expected MD5 '
                        f'{expected_md5}, got {got}), so it was deleted; run the command again '
                        "to retry, or pass --md5 with a mirror's own checksum")
    part.replace(archive)


def _unpack(archive: Path, root: Path, top_folder: str, console: Console) -> None:
    """Unpack the regular files and folders under ``top_folder/`` of a tar or zip archive
    into ``root`` (other top-level entries are left in the archive).

    Raises:
        UserError: Not an archive, or a member that is absolute, climbs out with ``..``, is
            a link, device or FIFO below the top folder, or more than ``MAX_UNPACKED_BYTES``
            in all.
    """
    try:
        with console.status(f'unpacking {escape(archive.name)}'):
            if tarfile.is_tarfile(archive):
                with tarfile.open(archive) as tar:
                    members = [member for member in tar.getmembers()
                               if _wanted(archive, member.name, top_folder,
                                          member.isfile() or member.isdir(), member.size)]
                    _check_total(archive, sum(member.size for member in members))
                    tar.extractall(root, members=members, filter='data')
            elif zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zip_file:
                    members = [info for info in zip_file.infolist()
                               if _wanted(archive, info.filename, top_folder,
                                          _is_plain_zip_member(info), info.file_size)]
                    _check_total(archive, sum(info.file_size for info in members))
                    zip_file.extractall(root, members=members)
            else:
                raise UserError(f'{archive} is neither a tar nor a zip archive; check --url')
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise UserError(f'cannot unpack {archive} into {root}: {first_line(error)}') from None


def _wanted(archive: Path, name: str, top_folder: str, plain: bool, size: int) -> bool:
    """Whether a member lies below ``top_folder/`` (to unpack); refuses unsafe ones."""
    path = PurePosixPath(name)
    if path.is_absolute() or '..' in path.parts or '\\' in name:
        raise UserError(f'{archive} holds the member {name!r}, which points outside the folder '
                        'it unpacks into; it is not the dataset\'s archive: check --url')
    parts = [part for part in path.parts if part != '.']
    if not parts or parts[0] != top_folder:
        return False
    if not plain or size < 0:
        raise UserError(f'{archive} holds {name!r}, which is not a regular file or folder '
                        '(a link, device or FIFO); kt unpacks only files and folders: check '
                        '--url')
    return True


def _is_plain_zip_member(info: zipfile.ZipInfo) -> bool:
    """A zip member that is a file or folder (the file type of its Unix mode, when it has
    one, says which; a link is stored as a member of type S_IFLNK)."""
    return stat.S_IFMT(info.external_attr >> 16) in (0, stat.S_IFREG, stat.S_IFDIR)


def _check_total(archive: Path, size: int) -> None:
    if size > MAX_UNPACKED_BYTES:
        raise UserError(f'{archive} unpacks to {size / 2 ** 30:.1f} GiB, more than the '
                        f'{MAX_UNPACKED_BYTES // 2 ** 30} GiB of any dataset kt downloads; '
                        'check --url')


def _archive_name(url: str, default: str) -> str:
    """The file name an archive gets: the last part of its URL's path."""
    return PurePosixPath(urlparse(url).path).name or default


def _local_archive(url: str) -> Path | None:
    """The file a ``file://`` URL names (used where it lies), or None for other URLs."""
    parsed = urlparse(url)
    return Path(url2pathname(parsed.path)) if parsed.scheme == 'file' else None


def _unpack_to(archive: Path, top_folder: str, data_root: Path, console: Console) -> None:
    """Unpack ``archive``, whose top folder is ``top_folder``, into a fresh folder beside
    ``data_root``, then move that top folder into place as ``data_root``: nothing is written
    anywhere else, whatever the archive holds."""
    parent = data_root.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{data_root.name}.unpacking.', dir=parent))
    try:
        _unpack(archive, staging, top_folder, console)
        unpacked = staging / top_folder
        if unpacked.is_symlink() or not unpacked.is_dir():
            raise UserError(f'{archive} holds no {top_folder}/ folder; check --url')
        if data_root.is_dir() and not any(data_root.iterdir()):
            data_root.rmdir()
        unpacked.rename(data_root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_dataset(name: str, data_root: str | Path | None = None, url: str | None = None,
                     md5: str | None = None, console: Console | None = None) -> Path:
    """Download, verify and unpack a dataset's archive so that it is at ``data_root``.

    Nothing is downloaded when ``data_root`` already holds the dataset. An
    earlier interrupted download (``<archive>.part``) is resumed. The archive
    is kept in the folder above ``data_root``. A ``file://`` URL (a copy of the
    archive already on this machine) is checked and unpacked where it lies,
    not copied.

    Args:
        name: The dataset: cub or air (car, demo and custom have no download).
        data_root: The dataset folder to create. Defaults to the dataset's
            usual folder (e.g. ``data/CUB_200_2011``).
        url: A mirror of the archive, or ``file:///path/to/archive``, instead
            of the official URL.
        md5: The MD5 of the mirror's archive, when it differs from the
            official one.
        console: Where to print progress. Defaults to a new console.

    Returns:
        The dataset root, whose layout passed the checks of ``check_layout``.

    Raises:
        UserError: If the dataset has no download, the download fails or its
            checksum does not match, or the archive does not unpack to the
            dataset's layout.
    """
    spec = dataset_spec(name)
    if spec.download is None:
        raise UserError(f'kt cannot download {spec.title}: {spec.no_download}; expected layout: '
                        f'{spec.layout}')
    if md5 is not None and not re.fullmatch(r'[0-9a-fA-F]{32}', md5):
        raise UserError(f'--md5 must be 32 hexadecimal digits, got {md5!r}')
    console = console or Console()
    target = Path(data_root or spec.default_root).expanduser().resolve()
    if layout_problem(name, target) is None:
        console.print(f'{escape(spec.title)} is already at {escape(str(target))}; nothing to '
                      'download', soft_wrap=True)
        return target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f'{target} exists and does not hold {spec.title} '
                        f'({layout_problem(name, target)}); move it away or pass another '
                        '--data-root')

    url = url or spec.download.url
    expected_md5 = (md5 or spec.download.md5).lower()
    archive = _local_archive(url)
    if archive is not None:
        if not archive.is_file():
            raise UserError(f'--url {url}: {archive} does not exist')
        got = _md5_of_file(archive).hexdigest()
        if got != expected_md5:
            raise UserError(f'the checksum of {archive} did not match (expected MD5 '
                            f'{expected_md5}, got {got}); pass --md5 with its own checksum if '
                            'it is another mirror of the dataset')
    else:
        archive = target.parent / _archive_name(url, PurePosixPath(spec.download.url).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if archive.is_file() and _md5_of_file(archive).hexdigest() == expected_md5:
            console.print(f'using the archive downloaded before, {escape(str(archive))}',
                          soft_wrap=True)
        else:
            _fetch(url, archive, expected_md5, console)
    _unpack_to(archive, spec.download.unpacks_to, target, console)
    problem = layout_problem(name, target)
    if problem is not None:
        raise UserError(f'{archive} did not unpack to the layout of {spec.title} ({problem}); '
                        f'expected {spec.layout}; check --url')
    console.print(f'{escape(spec.title)} is ready at {escape(str(target))} (archive kept at '
                  f'{escape(str(archive))})', soft_wrap=True)
    return target
