"""Tests of the built-in demo dataset generator (ktcli.data.demo)."""
import itertools
import os
from pathlib import Path

import pytest
from mmengine import Config
from PIL import Image

from ktcli.data.demo import (
    DEMO_CLASSES,
    MANIFEST_NAME,
    PART_VALUES,
    make_demo_dataset,
    species_parts,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(img_size=48, train_per_class=4, test_per_class=3)
NUM_CLASSES = 20
# The body region that each part is drawn in (occlusion hides a whole region).
PART_REGIONS = {'head_shape': 'head', 'head_colour': 'head', 'wing_pattern': 'wing',
                'tail_shape': 'tail', 'leg_colour': 'legs'}


def read_pairs(path: Path) -> dict[int, str]:
    """Read a CUB ``<id> <item>`` file into a dict from id to item."""
    pairs = {}
    for line in path.read_text().splitlines():
        image_id, item = line.split()
        assert int(image_id) not in pairs, f'duplicate id {image_id} in {path.name}'
        pairs[int(image_id)] = item
    return pairs


def all_files(root: Path) -> dict[str, bytes]:
    """Return every file under a directory, by relative path, with its bytes."""
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob('*')) if path.is_file()}


def part_distance(first: int, second: int) -> int:
    """Return the number of parts in which two species differ."""
    parts_a, parts_b = species_parts(first), species_parts(second)
    return sum(parts_a[part] != parts_b[part] for part in PART_VALUES)


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo dataset, written once for the module."""
    return make_demo_dataset(tmp_path_factory.mktemp('demo') / 'kt_demo', seed=0, **SMALL)


def test_layout_files_list_the_same_ids_with_one_based_labels(demo_root: Path) -> None:
    images = read_pairs(demo_root / 'images.txt')
    labels = read_pairs(demo_root / 'image_class_labels.txt')
    splits = read_pairs(demo_root / 'train_test_split.txt')
    per_class = SMALL['train_per_class'] + SMALL['test_per_class']

    assert set(images) == set(labels) == set(splits) == set(range(1, NUM_CLASSES * per_class + 1))
    assert sorted(int(label) for label in labels.values()) == sorted(
        list(range(1, NUM_CLASSES + 1)) * per_class)
    split_values = list(splits.values())
    assert split_values.count('1') == NUM_CLASSES * SMALL['train_per_class']
    assert split_values.count('0') == NUM_CLASSES * SMALL['test_per_class']
    for image_id, relative in images.items():
        label = int(labels[image_id])
        assert relative.startswith(f'{label:03d}.{DEMO_CLASSES[label - 1]}/')
        assert (demo_root / 'images' / relative).is_file()
    class_lines = (demo_root / 'classes.txt').read_text().splitlines()
    assert class_lines == [f'{label} {name}' for label, name in enumerate(DEMO_CLASSES, 1)]


@pytest.mark.parametrize('split,per_class', [('train', SMALL['train_per_class']),
                                             ('test', SMALL['test_per_class'])])
def test_mmpretrain_cub_loads_each_split(demo_root: Path, split: str, per_class: int) -> None:
    from mmpretrain.datasets import CUB

    dataset = CUB(data_root=str(demo_root), split=split,
                  metainfo=dict(classes=list(DEMO_CLASSES)))

    assert len(dataset) == NUM_CLASSES * per_class
    assert list(dataset.CLASSES) == list(DEMO_CLASSES)
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        folder = Path(info['img_path']).parent.name
        assert folder == f"{info['gt_label'] + 1:03d}.{DEMO_CLASSES[info['gt_label']]}"
    counts = [0] * NUM_CLASSES
    for index in range(len(dataset)):
        counts[dataset.get_data_info(index)['gt_label']] += 1
    assert counts == [per_class] * NUM_CLASSES


def test_images_decode_to_the_requested_size(demo_root: Path) -> None:
    paths = sorted((demo_root / 'images').glob('*/*.jpg'))

    assert len(paths) == NUM_CLASSES * (SMALL['train_per_class'] + SMALL['test_per_class'])
    for path in paths:
        with Image.open(path) as image:
            assert image.format == 'JPEG'
            assert image.mode == 'RGB'
            assert image.size == (SMALL['img_size'], SMALL['img_size'])


def test_same_seed_is_byte_identical_and_another_seed_differs(demo_root: Path,
                                                              tmp_path: Path) -> None:
    again = make_demo_dataset(tmp_path / 'again', seed=0, **SMALL)
    other = make_demo_dataset(tmp_path / 'other', seed=1, **SMALL)
    reference = all_files(demo_root)

    assert all_files(again) == reference
    other_files = all_files(other)
    assert other_files.keys() == reference.keys()
    images = [name for name in reference if name.endswith('.jpg')]
    assert all(other_files[name] != reference[name] for name in images)


def test_each_species_differs_from_its_nearest_in_one_or_two_parts() -> None:
    combinations = {tuple(species_parts(label).values()) for label in range(NUM_CLASSES)}
    assert len(combinations) == NUM_CLASSES
    for label in range(NUM_CLASSES):
        nearest = min(part_distance(label, other) for other in range(NUM_CLASSES)
                      if other != label)
        assert nearest in (1, 2), f'{DEMO_CLASSES[label]} is {nearest} parts from its nearest'


def test_no_single_part_value_determines_the_species() -> None:
    for part, values in PART_VALUES.items():
        counts = {value: 0 for value in values}
        for label in range(NUM_CLASSES):
            counts[species_parts(label)[part]] += 1
        assert min(counts.values()) >= 2, f'{part}: {counts}'


def test_species_stay_distinct_with_any_one_region_hidden() -> None:
    for region in set(PART_REGIONS.values()):
        visible = [part for part in PART_VALUES if PART_REGIONS[part] != region]
        seen = [tuple(species_parts(label)[part] for part in visible)
                for label in range(NUM_CLASSES)]
        assert len(set(seen)) == NUM_CLASSES, f'hiding the {region} merges species'


def test_every_value_pair_of_two_parts_occurs() -> None:
    for first, second in itertools.combinations(PART_VALUES, 2):
        pairs = {(species_parts(label)[first], species_parts(label)[second])
                 for label in range(NUM_CLASSES)}
        assert len(pairs) == len(PART_VALUES[first]) * len(PART_VALUES[second])


def test_class_names_describe_the_parts() -> None:
    for label, name in enumerate(DEMO_CLASSES):
        parts = species_parts(label)
        assert name == (f"{parts['head_shape']}-{parts['head_colour']}-"
                        f"{parts['wing_pattern']}-{parts['tail_shape']}tail-"
                        f"{parts['leg_colour']}leg")
        assert name.isascii() and ' ' not in name


def test_species_parts_rejects_an_unknown_label() -> None:
    with pytest.raises(ValueError):
        species_parts(NUM_CLASSES)


def test_config_lists_the_demo_classes() -> None:
    config = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/demo.py'))

    assert config.demo_classes == list(DEMO_CLASSES)
    assert config.data_preprocessor.num_classes == len(DEMO_CLASSES)
    assert config.train_dataloader.dataset.metainfo.classes == list(DEMO_CLASSES)


def test_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    notes = tmp_path / 'notes.txt'
    notes.write_text('not a dataset')

    with pytest.raises(FileExistsError, match='not empty'):
        make_demo_dataset(tmp_path, **SMALL)
    assert [path.name for path in tmp_path.iterdir()] == ['notes.txt']
    assert notes.read_text() == 'not a dataset'


def test_a_second_call_with_the_same_arguments_does_not_rewrite(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / 'demo', **SMALL)
    files = [path for path in root.rglob('*') if path.is_file()]
    old_time_ns = 1_000_000_000 * 1_000_000_000
    for path in files:
        os.utime(path, ns=(old_time_ns, old_time_ns))

    assert make_demo_dataset(tmp_path / 'demo', **SMALL) == root
    assert all(path.stat().st_mtime_ns == old_time_ns for path in files)


def test_a_demo_dataset_with_other_arguments_is_replaced(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path, **SMALL)
    make_demo_dataset(tmp_path, **{**SMALL, 'test_per_class': 1})

    assert len(list((tmp_path / 'images').glob('*/*.jpg'))) == NUM_CLASSES * (
        SMALL['train_per_class'] + 1)
    assert len(read_pairs(tmp_path / 'images.txt')) == NUM_CLASSES * (
        SMALL['train_per_class'] + 1)
    assert '"test_per_class": 1' in (tmp_path / MANIFEST_NAME).read_text()


def test_a_larger_test_split_only_adds_images(demo_root: Path, tmp_path: Path) -> None:
    # 45 test images per species: past the first background block of 40.
    larger = make_demo_dataset(tmp_path / 'larger', seed=0, **{**SMALL, 'test_per_class': 45})
    reference = all_files(demo_root / 'images')
    grown = all_files(larger / 'images')
    assert len(grown) == NUM_CLASSES * (SMALL['train_per_class'] + 45)
    # Every training image and the first three test images of each species are unchanged.
    assert {name: grown[name] for name in reference} == reference
    splits = read_pairs(larger / 'train_test_split.txt')
    assert list(splits.values()).count('1') == NUM_CLASSES * SMALL['train_per_class']
    # The added images differ from each other (each has its own background).
    added = [data for name, data in grown.items() if name not in reference]
    assert len(set(added)) == len(added)


@pytest.mark.parametrize('arguments', [dict(seed=-1), dict(img_size=16),
                                       dict(train_per_class=0), dict(test_per_class=0),
                                       dict(occlusion_prob=1.5)])
def test_rejects_out_of_range_arguments(tmp_path: Path, arguments: dict) -> None:
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path / 'demo', **{**SMALL, **arguments})
    assert not (tmp_path / 'demo').exists()
