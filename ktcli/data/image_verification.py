"""Find the images that are missing or cannot be decoded, once per image set.

Decoding all of CUB-200-2011 takes a while on one core, so ``unreadable_images``
decodes in a small process pool and remembers its verdict in a JSON file,
keyed by the paths, sizes and modification times of the images: checking an
unchanged image set again decodes nothing. A cache that cannot be read or
written is ignored.
"""
import hashlib
import json
import os
import signal
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from multiprocessing import get_context
from pathlib import Path

from ktbase.writing import write_atomically

from ..cpus import available_cpus
from ..errors import UserError

# The unreadable images an error line names before "and N more".
LISTED_UNREADABLE = 3
# Fewer images than this are decoded in this process: starting workers costs more.
POOL_THRESHOLD = 200
MAX_WORKERS = 4
# Images per task sent to a worker.
CHUNK_SIZE = 64
# Part of every cache key; bump it when the verdict of an image can change.
_CACHE_VERSION = 1


def worker_count() -> int:
    """The processes that decode a large image set: the usable CPUs, at most 4."""
    return min(MAX_WORKERS, available_cpus())


def cache_dir() -> Path | None:
    """Where verdicts are cached, or None if there is no home to put them in.

    ``$KT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/kt/image_checks``, else
    ``~/.cache/kt/image_checks``.
    """
    if os.environ.get('KT_CACHE_DIR'):
        return Path(os.environ['KT_CACHE_DIR'])
    xdg = os.environ.get('XDG_CACHE_HOME', '')
    try:
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / '.cache'
    except RuntimeError:  # No home directory.
        return None
    return base / 'kt' / 'image_checks'


def _cache_key(paths: Sequence[str]) -> str:
    """The sha256 of the (path, size, mtime_ns) of sorted, distinct images (None if missing)."""
    entries = []
    for path in paths:
        try:
            stat = os.stat(path)
            entries.append([path, stat.st_size, stat.st_mtime_ns])
        except OSError:
            entries.append([path, None, None])
    return hashlib.sha256(json.dumps([_CACHE_VERSION, entries]).encode()).hexdigest()


def _cached_verdict(file: Path) -> set[str] | None:
    """The unreadable paths stored in a cache file, or None if it is missing or corrupt."""
    try:
        unreadable = json.loads(file.read_text())['unreadable']
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(unreadable, list) or not all(isinstance(p, str) for p in unreadable):
        return None
    return set(unreadable)


def _store_verdict(file: Path, images: int, unreadable: Sequence[str]) -> None:
    """Write a verdict atomically; give up silently if the cache is not writable."""
    with suppress(UserError):
        write_atomically(file, json.dumps(dict(images=images, unreadable=sorted(unreadable))))


def is_unreadable(path: str | Path) -> bool:
    """Whether an image is missing or cannot be fully decoded.

    JPEGs are decoded at reduced scale, which still reads every byte, so
    truncated files are caught at a fraction of the cost of a full decode.

    Args:
        path: The image file.

    Returns:
        True if opening or decoding the file fails, or it is not a regular file.
    """
    from PIL import Image

    from ..reading import open_data_file
    try:
        with open_data_file(path) as file, Image.open(file) as image:
            image.draft(image.mode, (1, 1))
            image.load()
    except (OSError, SyntaxError, ValueError, UserError, Image.DecompressionBombError):
        # A decompression bomb (an image larger than PIL decodes safely) counts as
        # unreadable, and so does a FIFO or a device (UnsafeFileError), which never ends.
        return True
    return False


def _unreadable_of(paths: Sequence[str]) -> list[str]:
    """The unreadable images of one chunk, in order."""
    return [path for path in paths if is_unreadable(path)]


def _decode_all(paths: Sequence[str]) -> list[str]:
    """Decode every image, in worker processes when there are many; return the unreadable."""
    workers = worker_count()
    if len(paths) < POOL_THRESHOLD or workers < 2:
        return _unreadable_of(paths)
    chunks = [paths[start:start + CHUNK_SIZE] for start in range(0, len(paths), CHUNK_SIZE)]
    # Spawned workers share no state (threads, locks) with a parent that has loaded torch;
    # they ignore Ctrl-C, which the parent handles by cancelling the chunks not yet started.
    with ProcessPoolExecutor(workers, mp_context=get_context('spawn'),
                             initializer=signal.signal,
                             initargs=(signal.SIGINT, signal.SIG_IGN)) as pool:
        return [path for unreadable in pool.map(_unreadable_of, chunks) for path in unreadable]


def unreadable_images(paths: Iterable[Path]) -> list[Path]:
    """Return the images that are missing or cannot be fully decoded.

    The verdict is cached (see ``cache_dir``) under a key made of every
    image's absolute path, size and modification time, so an unchanged image
    set is decoded once; adding, removing, replacing or touching an image
    makes the whole set be decoded again.

    Args:
        paths: The image files.

    Returns:
        The unreadable ones, in the given order.
    """
    paths = list(paths)
    absolute = [os.path.abspath(path) for path in paths]
    unique = sorted(set(absolute))
    folder = cache_dir()
    file = None if folder is None else folder / f'{_cache_key(unique)}.json'
    unreadable = None if file is None else _cached_verdict(file)
    if unreadable is None:
        unreadable = set(_decode_all(unique))
        if file is not None:
            _store_verdict(file, len(unique), sorted(unreadable))
    return [path for path, key in zip(paths, absolute) if key in unreadable]


def unreadable_error(root: Path, paths: Sequence[Path]) -> UserError:
    """The one-line error for a dataset's unreadable images, naming the first few.

    Args:
        root: The dataset root.
        paths: Its unreadable images (at least one).

    Returns:
        The error to raise.
    """
    listed = ', '.join(str(path) for path in paths[:LISTED_UNREADABLE])
    more = f' and {len(paths) - LISTED_UNREADABLE} more' if len(paths) > LISTED_UNREADABLE else ''
    return UserError(f'{len(paths)} unreadable image(s) under {root} (missing or not '
                     f'decodable): {listed}{more}; replace or re-download them')
