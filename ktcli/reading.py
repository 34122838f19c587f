"""Read the files of a received work dir or export without being led anywhere by them.

Work dirs and exports travel between people, so whatever kt reads from one is treated as
untrusted: a path it names must stay inside the work dir, a file must be a regular file
(not a symbolic link out of the folder, a FIFO that blocks the reader or a device that never
ends), and no file is read past a size cap. Every refusal is a :class:`UnsafeFileError`, one
line naming the file and what is wrong with it. Light on imports, like ``ktbase.writing``.
"""
import errno
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Union

from .errors import UserError

# Largest JSON file kt reads from a work dir (manifests, stage records, configs).
JSON_LIMIT = 16 * 2 ** 20
# Deepest nesting of a JSON value kt reads (its own files nest about 10 deep): deeper data
# would exhaust Python's recursion in the parser or in whatever walks it.
JSON_DEPTH = 64
# Largest image side (pixels) a config or an export may resize or crop to.
MAX_IMAGE_SIDE = 2048
# A stage's directory: WORK_DIR/stages/<16 hex digits>.
DIGEST = re.compile(r'[0-9a-f]{16}')

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0)


class UnsafeFileError(UserError):
    """A file of a work dir or export that kt will not read as it is."""


def open_regular(path: Union[str, Path], follow_links: bool = False) -> int:
    """Open ``path`` for reading if it is a regular file itself (not a link to one).

    Opened without blocking, so that a FIFO is refused rather than waited on.

    Args:
        path (str | Path): The file.
        follow_links (bool): Open the file a link points to (a dataset's files may be
            links to shared storage; a work dir's never are). Defaults to False.

    Returns:
        int: An open file descriptor (the caller closes it).

    Raises:
        FileNotFoundError: No such file.
        UnsafeFileError: A symbolic link (unless ``follow_links``), a FIFO, a device, a
            folder, or unreadable.
    """
    try:
        descriptor = os.open(path, _OPEN_FLAGS & ~os.O_NOFOLLOW if follow_links else _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeFileError(f'{path} is a symbolic link; kt reads the files of a work '
                                  'dir only as they are, never through links: replace it by '
                                  'the file itself') from None
        raise UnsafeFileError(f'cannot read {path}: {error.strerror or error}') from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise UnsafeFileError(f'{path} is not a regular file ({_kind(mode)}); kt reads only '
                              'regular files from a work dir or export')
    return descriptor


def read_capped(path: Union[str, Path], limit: int = JSON_LIMIT) -> bytes:
    """The whole content of the regular file ``path``, refused beyond ``limit`` bytes.

    Raises:
        FileNotFoundError: No such file.
        UnsafeFileError: Not a regular file, or larger than ``limit``.
    """
    descriptor = open_regular(path)
    with os.fdopen(descriptor, 'rb') as file:
        content = file.read(limit + 1)
    if len(content) > limit:
        raise UnsafeFileError(f'{path} is larger than the {limit // 2 ** 20} MiB kt reads from '
                              'such a file; it is not one kt wrote')
    return content


def read_json(path: Union[str, Path], limit: int = JSON_LIMIT) -> Any:
    """The JSON value in the regular file ``path``, read as :func:`read_capped` reads it;
    a file that is not JSON as :func:`parse_json` takes it is an :class:`UnsafeFileError`
    too."""
    return parse_json(read_capped(path, limit), str(path), limit)


def parse_json(content: Union[str, bytes], where: str, limit: int = JSON_LIMIT) -> Any:
    """The JSON value of ``content`` (from the file or entry ``where``): at most ``limit``
    bytes, nested at most :data:`JSON_DEPTH` deep, no NaN or Infinity.

    Raises:
        UnsafeFileError: Larger, deeper, or not JSON.
    """
    if len(content) > limit:
        raise UnsafeFileError(f'{where} is larger than the {limit // 2 ** 20} MiB kt reads from '
                              'such a file; it is not one kt wrote')
    try:
        text = content.decode('utf-8') if isinstance(content, bytes) else content
        if _bracket_depth(text) > JSON_DEPTH:
            raise ValueError(f'nested more than {JSON_DEPTH} deep')
        return strict_json(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnsafeFileError(f'{where} is not readable JSON ({reason}); it is truncated or '
                              'not written by kt') from None


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r'[\[\]{}]')


def _bracket_depth(text: str) -> int:
    """How deep the brackets of a JSON text nest, strings left out (an upper bound of the
    value's depth when the text is not JSON)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub('', text)):
        depth += 1 if bracket in '[{' else -1
        deepest = max(deepest, depth)
    return deepest


def open_data_file(path: Union[str, Path]) -> BinaryIO:
    """A dataset's file (an image, an annotation list), opened for reading in binary mode if
    it is a regular file (a link to one is followed); a FIFO or device, which would block
    or never end, is refused.

    Raises:
        FileNotFoundError: No such file.
        UnsafeFileError: Not a regular file, or unreadable.
    """
    return os.fdopen(open_regular(path, follow_links=True), 'rb')


def read_tail(path: Union[str, Path], size: int) -> bytes:
    """The last ``size`` bytes of the regular file ``path`` (a log).

    Raises:
        FileNotFoundError: No such file.
        UnsafeFileError: Not a regular file.
    """
    descriptor = open_regular(path)
    with os.fdopen(descriptor, 'rb') as file:
        file.seek(max(0, os.fstat(descriptor).st_size - size))
        return file.read(size)


def no_links_below(root: Path, relative: Union[str, PurePosixPath]) -> Path:
    """``root / relative``, refused if a folder or file on the way is a symbolic link.

    ``root`` itself may be a link (a work dir kept on another disk); nothing below it may.

    Raises:
        UnsafeFileError: A component below ``root`` is a symbolic link.
    """
    path = Path(root)
    for part in PurePosixPath(relative).parts:
        path = path / part
        try:
            is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:
            return Path(root) / relative
        if is_link:
            raise UnsafeFileError(f'{path} is a symbolic link; kt never reads or writes through '
                                  'links inside a work dir: replace it by what it points to')
    return path


def is_regular_file(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a regular file itself (``Path.is_file`` follows links)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def strict_json(text: str) -> Any:
    """``json.loads`` without the NaN and Infinity that Python's JSON allows.

    Raises:
        ValueError: Not JSON.
    """
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> None:
    raise ValueError(f'{name} is not a JSON number')


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, 'a folder'), (stat.S_ISFIFO, 'a FIFO'),
                       (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
                       (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return name
    return 'not a file'


def shown(value: Any) -> str:
    """A value as a message quotes it: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + '...'
