"""What a dataset's splits are, not where they are: a fingerprint of their content.

A split's fingerprint is the sha256 of its class names and, sample by sample in the
dataset's order, the image's name relative to the dataset root, its class, its size and
the sha256 of its bytes. The same data in any folder, on any machine, has the same
fingerprint; one changed, added, removed or relabelled image gives a new one. The samples
come from the split as mmpretrain reads it (``ktcli.data.check.split_samples``: CUB and
the demo through their three list files, FGVC-Aircraft through its variant lists,
Stanford Cars through its annotation .mat files, an ImageFolder tree through its class
folders), so what the annotation files say is in the fingerprint, not how they are written.

Hashing every image of CUB-200-2011 takes seconds, so the fingerprint is cached as the
image check's verdict is (``ktcli.data.image_verification``): in kt's cache folder, keyed
by the images' paths, sizes and modification times and the samples' classes. Checking an
unchanged dataset again hashes nothing; touching an image hashes the dataset again.
"""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from ktbase.writing import write_atomically

from ..errors import UserError
from ..reading import open_data_file
from .image_verification import POOL_THRESHOLD, cache_dir, worker_count

# Part of every fingerprint and cache key; bump it when what is hashed changes.
FINGERPRINT_VERSION = 1
# Hex digits kept of each fingerprint.
DIGITS = 16
_CACHE_PREFIX = 'fingerprint-'
_BLOCK = 1 << 20


@dataclass(frozen=True)
class DataFingerprint:
    """A dataset's identity: its training and test splits' fingerprints.

    Attributes:
        dataset (str): The dataset (cub, car, air, demo or custom).
        train (str): The training split's fingerprint (``trainval`` for
            FGVC-Aircraft).
        test (str): The test split's fingerprint.
        images (int): The images of both splits.
    """

    dataset: str
    train: str
    test: str
    images: int

    @property
    def id(self) -> str:
        """One fingerprint for both splits (what kt's index of data folders maps)."""
        return _digest([self.dataset, self.train, self.test])

    def describe(self) -> str:
        """E.g. ``'kt demo (synthetic), 100 images, fingerprint 1a2b3c4d5e6f7a8b'``."""
        from .specs import dataset_spec
        return f'{dataset_spec(self.dataset).title}, {self.images} images, fingerprint {self.id}'

    def to_record(self) -> dict:
        """The fingerprint as JSON data (kept in stage configs and records)."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: object) -> 'DataFingerprint':
        """A fingerprint read back from :meth:`to_record`'s data.

        Raises:
            UserError: The data is not such a record.
        """
        fields = ('dataset', 'train', 'test', 'images')
        if not (isinstance(record, dict) and set(record) == set(fields)
                and all(isinstance(record[key], str) for key in fields[:3])
                and isinstance(record['images'], int)):
            raise UserError(f'{record!r} is not a data fingerprint; the work dir was written by '
                            'another kt version')
        return cls(**record)


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes (hex); a FIFO or device is refused (UnsafeFileError)."""
    digest = hashlib.sha256()
    with open_data_file(path) as file:
        while block := file.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def cached_file_digest(path: Path) -> str:
    """:func:`file_digest` of one file (e.g. a ``--pretrained`` checkpoint), cached by its
    path, size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    return _cached(['file', str(path), stat.st_size, stat.st_mtime_ns],
                   lambda: dict(sha256=file_digest(path)),
                   lambda value: isinstance(value.get('sha256'), str))['sha256']


def dataset_fingerprint(name: str, root: Path) -> DataFingerprint:
    """The fingerprint of a dataset root, hashed once per version of its files.

    Args:
        name (str): The dataset (cub, car, air, demo or custom).
        root (Path): Its root.

    Returns:
        DataFingerprint: Its splits' fingerprints.

    Raises:
        UserError: The root does not hold the dataset (see
            ``ktcli.data.check``), or an image cannot be read.
    """
    from .check import check_layout, split_samples

    root = check_layout(name, root)
    splits = list(split_samples(name, root))
    files = sorted({str(path) for split in splits for path, _ in split.samples})
    sizes = {path: _stat(path) for path in files}
    key = [name, str(root), [[split.name, list(split.classes),
                              [[str(path), label] for path, label in split.samples]]
                             for split in splits], [[path, *sizes[path]] for path in files]]

    def compute() -> dict:
        hashes = _hash_files(files)
        train, test = (_split_fingerprint(split.classes, [
            [os.path.relpath(path, root), label, sizes[str(path)][0], hashes[str(path)]]
            for path, label in split.samples]) for split in splits)
        return dict(dataset=name, train=train, test=test,
                    images=sum(len(split.samples) for split in splits))

    return DataFingerprint.from_record(_cached(key, compute, _is_fingerprint))


def _is_fingerprint(value: dict) -> bool:
    try:
        DataFingerprint.from_record(value)
    except UserError:
        return False
    return True


def _split_fingerprint(classes: Sequence[str], entries: List[list]) -> str:
    return _digest([list(classes), entries])


def _digest(value: object) -> str:
    text = json.dumps([FINGERPRINT_VERSION, value], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGITS]


def _stat(path: str) -> tuple:
    """(size, mtime_ns) of a file; a missing one is an error the data check names."""
    try:
        stat = os.stat(path)
    except OSError:
        raise UserError(f'{path} is missing or unreadable; restore it, or check the data with '
                        '`kt data check`') from None
    return stat.st_size, stat.st_mtime_ns


def _hash_files(paths: Sequence[str]) -> Dict[str, str]:
    """The sha256 of every file, several at once when there are many (hashlib releases the
    GIL while it hashes)."""
    def one(path: str) -> str:
        try:
            return file_digest(Path(path))
        except OSError as error:
            raise UserError(f'cannot read {path} ({error.strerror}); restore it, or check the '
                            'data with `kt data check`') from None

    if len(paths) < POOL_THRESHOLD or worker_count() < 2:
        return {path: one(path) for path in paths}
    with ThreadPoolExecutor(worker_count()) as pool:
        return dict(zip(paths, pool.map(one, paths)))


def _cached(key: list, compute: Callable[[], dict], valid: Callable[[dict], bool]) -> dict:
    """``compute()``'s JSON result, stored in kt's cache folder under ``key``'s hash (a
    stored value that is not ``valid`` is computed again)."""
    folder = cache_dir()
    name = hashlib.sha256(json.dumps([FINGERPRINT_VERSION, key]).encode()).hexdigest()
    file = None if folder is None else folder / f'{_CACHE_PREFIX}{name}.json'
    if file is not None:
        with suppress(OSError, ValueError):
            cached = json.loads(file.read_text())
            if isinstance(cached, dict) and valid(cached):
                return cached
    value = compute()
    if file is not None:
        with suppress(UserError):
            write_atomically(file, json.dumps(value))
    return value
