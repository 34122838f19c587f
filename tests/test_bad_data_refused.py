"""kt train and kt ablate refuse bad data before stage 1; image verdicts are cached."""
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from ktcli.data import image_verification
from ktcli.data.check import verified_data_root
from ktcli.data.image_verification import POOL_THRESHOLD, unreadable_images, worker_count

from .kt_processes import forked_kt

CLASSES = 3
pytestmark = pytest.mark.usefixtures('kt_server')


def kt(*args: str, work_dir: Path, cache: Path) -> subprocess.CompletedProcess:
    """Run ``kt <args>`` with tiny training options, caching image verdicts in ``cache``."""
    return forked_kt(*args, '--backbone', 'resnet18_tiny', '--img-size', '32', '--epochs', '1',
                     '--batch-size', '8', '--work-dir', work_dir,
                     env=dict(KT_CACHE_DIR=str(cache)))


def refusal(result: subprocess.CompletedProcess, work_dir: Path) -> str:
    """The one error line of a command that refused its data before stage 1."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert 'Traceback' not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('error: ')
    assert not (work_dir / 'stages').exists()
    return lines[0]


def train_refusal(dataset: str, root: Path, tmp_path: Path) -> str:
    """The error line of ``kt train --n 1`` on ``root``."""
    work_dir = tmp_path / 'work'
    result = kt('train', '--dataset', dataset, '--data-root', str(root), '--n', '1',
                work_dir=work_dir, cache=tmp_path / 'cache')
    return refusal(result, work_dir)


@pytest.fixture
def demo_copy(demo_root: Path, tmp_path: Path) -> Path:
    """A copy of the tiny demo dataset (CUB layout) that a test may break."""
    return Path(shutil.copytree(demo_root, tmp_path / 'kt_demo')).resolve()


@pytest.fixture
def custom_root(demo_root: Path, tmp_path: Path) -> Path:
    """An ImageFolder tree of 3 demo species: 3 train and 2 test images each."""
    root = tmp_path / 'custom'
    for folder in sorted((demo_root / 'images').iterdir())[:CLASSES]:
        images = sorted(folder.glob('*.jpg'))
        for split, chosen in (('train', images[:3]), ('test', images[3:])):
            (root / split / folder.name).mkdir(parents=True)
            for image in chosen:
                shutil.copy(image, root / split / folder.name)
    return root.resolve()


def first_image(root: Path) -> Path:
    """The first image of the demo dataset."""
    return sorted((root / 'images').rglob('*.jpg'))[0]


def test_a_good_demo_and_custom_dataset_pass(demo_copy: Path, custom_root: Path,
                                             tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv('KT_CACHE_DIR', str(tmp_path / 'cache'))

    assert verified_data_root('demo', demo_copy) == demo_copy
    assert verified_data_root('custom', custom_root) == custom_root


def test_train_refuses_a_listed_image_that_is_missing(demo_copy: Path, tmp_path: Path) -> None:
    listing = demo_copy / 'images.txt'
    lines = listing.read_text().splitlines()
    image_id, name = lines[0].split()
    gone = name.replace('.jpg', '_gone.jpg')
    listing.write_text(''.join(f'{line}\n' for line in [f'{image_id} {gone}', *lines[1:]]))
    missing = demo_copy / 'images' / gone

    line = train_refusal('demo', demo_copy, tmp_path)

    assert line.startswith(f'error: 1 unreadable image(s) under {demo_copy}')
    assert str(missing) in line


@pytest.mark.parametrize('content', [b'', random.Random(0).randbytes(3000)],
                         ids=['zero-byte', 'random-bytes'])
def test_train_refuses_a_corrupt_image(demo_copy: Path, tmp_path: Path, content: bytes) -> None:
    image = first_image(demo_copy)
    image.write_bytes(content)

    line = train_refusal('demo', demo_copy, tmp_path)

    assert line.startswith(f'error: 1 unreadable image(s) under {demo_copy}')
    assert str(image) in line


def test_train_refuses_custom_splits_with_different_class_folders(custom_root: Path,
                                                                   tmp_path: Path) -> None:
    renamed = sorted((custom_root / 'test').iterdir())[-1]
    renamed.rename(renamed.with_name('renamed'))

    line = train_refusal('custom', custom_root, tmp_path)

    assert f'class folders of {custom_root / "test"} and {custom_root / "train"} differ' in line
    assert "1 only in test/ (first: 'renamed')" in line
    assert f'1 only in train/ (first: {renamed.name!r})' in line


@pytest.mark.parametrize('split', ['train', 'test'])
def test_train_refuses_an_empty_class_folder(custom_root: Path, tmp_path: Path,
                                             split: str) -> None:
    empty = custom_root / split / 'empty_class'
    empty.mkdir()

    line = train_refusal('custom', custom_root, tmp_path)

    assert f'the class folder {empty} holds no image' in line


def test_ablate_refuses_a_corrupt_image(demo_copy: Path, tmp_path: Path) -> None:
    image = first_image(demo_copy)
    image.write_bytes(image.read_bytes()[:100])
    work_dir = tmp_path / 'work'

    result = kt('ablate', 'n', '--dataset', 'demo', '--data-root', str(demo_copy),
                '--max-n', '2', work_dir=work_dir, cache=tmp_path / 'cache')

    assert str(image) in refusal(result, work_dir)


def write_images(folder: Path, count: int, bad: set[int]) -> list[Path]:
    """Write ``count`` tiny PNGs, those at the ``bad`` positions random bytes."""
    folder.mkdir()
    paths = []
    for index in range(count):
        path = folder / f'{index:04d}.png'
        if index in bad:
            path.write_bytes(random.Random(index).randbytes(200))
        else:
            Image.new('RGB', (8, 8), (index % 256, 0, 0)).save(path)
        paths.append(path)
    return paths


def test_a_second_check_of_unchanged_images_decodes_nothing(tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.setenv('KT_CACHE_DIR', str(tmp_path / 'cache'))
    paths = write_images(tmp_path / 'images', 6, bad={4})
    decoded = []
    decode = image_verification.is_unreadable
    monkeypatch.setattr(image_verification, 'is_unreadable',
                        lambda path: decoded.append(path) or decode(path))
    assert unreadable_images(paths) == [paths[4]]
    assert len(decoded) == 6

    def no_decoding(path):
        raise AssertionError(f'decoded {path}')

    monkeypatch.setattr(image_verification, 'is_unreadable', no_decoding)
    assert unreadable_images(paths) == [paths[4]]
    assert unreadable_images(reversed(paths)) == [paths[4]]


def test_a_changed_mtime_or_size_invalidates_the_cached_verdict(tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.setenv('KT_CACHE_DIR', str(tmp_path / 'cache'))
    paths = write_images(tmp_path / 'images', 6, bad={4})
    assert unreadable_images(paths) == [paths[4]]
    decoded = []
    decode = image_verification.is_unreadable
    monkeypatch.setattr(image_verification, 'is_unreadable',
                        lambda path: decoded.append(path) or decode(path))

    stat = paths[0].stat()
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert unreadable_images(paths) == [paths[4]]
    assert len(decoded) == 6

    paths[1].write_bytes(paths[1].read_bytes()[:20])
    assert unreadable_images(paths) == [paths[1], paths[4]]
    assert len(decoded) == 12

    paths[5].unlink()
    assert unreadable_images(paths) == [paths[1], paths[4], paths[5]]


def test_an_unusable_cache_is_ignored(tmp_path: Path, monkeypatch) -> None:
    paths = write_images(tmp_path / 'images', 4, bad={2})
    cache = tmp_path / 'cache'
    monkeypatch.setenv('KT_CACHE_DIR', str(cache))
    assert unreadable_images(paths) == [paths[2]]
    for file in cache.iterdir():
        file.write_text('{"unreadable": [')
    assert unreadable_images(paths) == [paths[2]]

    not_a_folder = tmp_path / 'file'
    not_a_folder.write_text('')
    monkeypatch.setenv('KT_CACHE_DIR', str(not_a_folder))
    assert unreadable_images(paths) == [paths[2]]


@pytest.mark.skipif(worker_count() < 2, reason='one CPU: images are decoded in-process')
def test_many_images_are_decoded_in_worker_processes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv('KT_CACHE_DIR', str(tmp_path / 'cache'))
    paths = write_images(tmp_path / 'images', POOL_THRESHOLD + 50, bad={3, 170, 240})

    def not_in_this_process(path):
        raise AssertionError(f'decoded {path} in the parent process')

    monkeypatch.setattr(image_verification, 'is_unreadable', not_in_this_process)
    assert unreadable_images(reversed(paths)) == [paths[240], paths[170], paths[3]]
