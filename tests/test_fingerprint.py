"""The data fingerprint: what the splits hold, wherever they are; cached; found again."""
import os
import shutil
from pathlib import Path

import pytest

import ktcli.data.fingerprint as fingerprint_module
from ktcli.data.data_folders import locate_data, remember_folder
from ktcli.data.fingerprint import dataset_fingerprint
from ktcli.errors import UserError


@pytest.fixture
def hashed(monkeypatch) -> list:
    """The files hashed (the count tells a cache hit from a miss)."""
    calls = []
    original = fingerprint_module.file_digest

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(fingerprint_module, 'file_digest', counting)
    return calls


def image_folder(demo_root: Path, root: Path) -> Path:
    """A 3-class ImageFolder tree (custom layout) made of demo images."""
    for split in ('train', 'test'):
        for k, folder in enumerate(sorted((demo_root / 'images').iterdir())[:3]):
            target = root / split / folder.name
            target.mkdir(parents=True)
            images = sorted(folder.iterdir())
            for image in images[:2] if split == 'train' else images[2:3]:
                shutil.copy(image, target / image.name)
    return root


def test_the_same_data_anywhere_has_one_fingerprint_and_any_change_a_new_one(
        tmp_path, demo_root):
    here = dataset_fingerprint('demo', demo_root)
    copy = shutil.copytree(demo_root, tmp_path / 'elsewhere' / 'birds')
    assert dataset_fingerprint('demo', copy) == here
    assert here.images == 100 and here.dataset == 'demo'
    # A relabelled training image: only the training split changes.
    labels = copy / 'image_class_labels.txt'
    lines = labels.read_text().splitlines()
    first_id, label = lines[0].split()
    lines[0] = f'{first_id} {int(label) % 20 + 1}'
    labels.write_text('\n'.join(lines) + '\n')
    relabelled = dataset_fingerprint('demo', copy)
    assert relabelled.train != here.train and relabelled.test == here.test

    tree = image_folder(demo_root, tmp_path / 'tree')
    first = dataset_fingerprint('custom', tree)
    image = next((tree / 'train').rglob('*.jpg'))
    image.unlink()
    removed = dataset_fingerprint('custom', tree)
    assert removed.train != first.train and removed.images == first.images - 1
    shutil.copy(next((tree / 'test').rglob('*.jpg')), image)
    replaced = dataset_fingerprint('custom', tree)
    assert replaced.train not in (first.train, removed.train)
    assert replaced.test == first.test


def test_a_fingerprint_is_hashed_once_per_version_of_the_files(tmp_path, demo_root, hashed):
    copy = shutil.copytree(demo_root, tmp_path / 'birds')
    first = dataset_fingerprint('demo', copy)
    assert len(hashed) == 100
    assert dataset_fingerprint('demo', copy) == first and len(hashed) == 100
    image = next((copy / 'images').rglob('*.jpg'))
    os.utime(image, ns=(0, 0))  # touched, same bytes: hashed again, same fingerprint
    assert dataset_fingerprint('demo', copy) == first and len(hashed) == 200


def test_the_data_is_found_where_kt_has_seen_it_and_other_data_is_refused(
        tmp_path, demo_root, monkeypatch):
    monkeypatch.setenv('KT_CACHE_DIR', str(tmp_path / 'cache'))  # this test's index alone
    recorded = dataset_fingerprint('demo', demo_root)
    copy = shutil.copytree(demo_root, tmp_path / 'moved' / 'birds')
    remember_folder(recorded, copy)
    monkeypatch.chdir(tmp_path)
    assert locate_data(recorded) == copy
    assert locate_data(recorded, copy) == copy
    shutil.rmtree(copy)
    # The dataset's usual folder, under the current directory.
    shutil.copytree(demo_root, tmp_path / 'data' / 'kt_demo')
    assert locate_data(recorded) == tmp_path / 'data' / 'kt_demo'
    tree = image_folder(demo_root, tmp_path / 'tree')
    other = dataset_fingerprint('custom', tree)
    with pytest.raises(UserError, match='cannot find the data the stages were trained on '
                       r'\(ImageFolder tree, 9 images, fingerprint [0-9a-f]{16}\): it is not '
                       'in data/custom nor in a folder where kt has seen it on this machine; '
                       'pass --data-root with the folder that holds it'):
        locate_data(type(other)('custom', '0' * 16, '1' * 16, 9))
    with pytest.raises(UserError, match=f'--data-root {tree} holds other data than'):
        locate_data(type(other)('custom', '0' * 16, '1' * 16, 9), tree)
