"""Write the demo dataset in the on-disk layout of CUB-200-2011.

It is read by mmpretrain's ``CUB`` class given
``metainfo=dict(classes=list(DEMO_CLASSES))``.
"""
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np

from ..specs import DEMO_TEST_PER_CLASS, DEMO_TRAIN_PER_CLASS
from .scene import background_textures, render_specimen
from .species import DEMO_CLASSES

MANIFEST_NAME = 'kt_demo.json'
JPEG_QUALITY = 92
# A species' backgrounds are drawn in blocks: the first holds its training images and its
# first TEXTURE_BLOCK test images, each later one TEXTURE_BLOCK more test images. So a
# larger test split adds images and leaves the training split and the smaller test split
# as they were.
TEXTURE_BLOCK = 40
# Bump when the drawing changes, so that older datasets are regenerated.
_GENERATOR_VERSION = 2
_GENERATOR_NAME = 'kt demo dataset'
_LAYOUT_FILES = ('images.txt', 'image_class_labels.txt',
                 'train_test_split.txt', 'classes.txt')


def _manifest(seed: int, img_size: int, train_per_class: int,
              test_per_class: int, occlusion_prob: float) -> dict:
    """Return the kt_demo.json content of a complete dataset."""
    return {
        'generator': _GENERATOR_NAME,
        'version': _GENERATOR_VERSION,
        'arguments': {
            'seed': seed,
            'img_size': img_size,
            'train_per_class': train_per_class,
            'test_per_class': test_per_class,
            'occlusion_prob': occlusion_prob,
        },
        'classes': list(DEMO_CLASSES),
        'num_images': len(DEMO_CLASSES) * (train_per_class + test_per_class),
        'complete': True,
    }


def _read_manifest(out_dir: Path) -> dict | None:
    """Return a directory's demo manifest, or None if it holds none."""
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or (
            manifest.get('generator') != _GENERATOR_NAME):
        return None
    return manifest


def _is_complete(out_dir: Path, expected: dict) -> bool:
    """Whether a directory holds the complete dataset a manifest describes."""
    if _read_manifest(out_dir) != expected:
        return False
    if not all((out_dir / name).is_file() for name in _LAYOUT_FILES):
        return False
    written = sum(1 for _ in (out_dir / 'images').glob('*/*.jpg'))
    return written == expected['num_images']


def _prepare_directory(out_dir: Path) -> None:
    """Create the output directory, or clear an earlier demo dataset in it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f'{out_dir} exists and is not a directory')
    out_dir.mkdir(parents=True, exist_ok=True)
    if _read_manifest(out_dir) is not None:
        shutil.rmtree(out_dir / 'images', ignore_errors=True)
        for name in (*_LAYOUT_FILES, MANIFEST_NAME):
            (out_dir / name).unlink(missing_ok=True)
    elif any(out_dir.iterdir()):
        raise FileExistsError(
            f'{out_dir} is not empty and holds no kt demo dataset (no valid '
            f'{MANIFEST_NAME}); choose a new or empty directory')


def _write_lines(path: Path, lines: list[str]) -> None:
    """Write lines to a text file, each ending with a newline."""
    path.write_text(''.join(f'{line}\n' for line in lines))


def _background_pairs(seed: int, label: int, train_per_class: int, test_per_class: int,
                      img_size: int):
    """Yield each image's background and occluder textures, in image order.

    The first block of textures serves the training images and the first
    :data:`TEXTURE_BLOCK` test images; every later block serves the next
    :data:`TEXTURE_BLOCK` test images and has a random stream of its own, so
    an image's textures do not depend on how many test images follow it.
    An image's occluder texture is the next image's background, within its
    block.
    """
    blocks = [train_per_class + TEXTURE_BLOCK] + [TEXTURE_BLOCK] * math.ceil(
        max(test_per_class - TEXTURE_BLOCK, 0) / TEXTURE_BLOCK)
    remaining = train_per_class + test_per_class
    for number, count in enumerate(blocks):
        stream = [seed, label] if number == 0 else [seed, label, number]
        textures = background_textures(np.random.default_rng(stream), count, img_size)
        for index in range(min(count, remaining)):
            yield textures[index], textures[(index + 1) % count]
        remaining -= count


def make_demo_dataset(out_dir: str | Path, seed: int = 0, img_size: int = 80,
                      train_per_class: int = DEMO_TRAIN_PER_CLASS,
                      test_per_class: int = DEMO_TEST_PER_CLASS,
                      occlusion_prob: float = 0.25) -> Path:
    """Write the demo dataset in CUB-200-2011's layout.

    The directory receives ``images/<NNN.species>/<species>_<NNNN>.jpg``,
    ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``,
    ``classes.txt`` and ``kt_demo.json`` (the arguments and image count).
    The output is byte-identical for the same arguments, and the training
    images and the first test images of each species do not depend on
    ``test_per_class``: a larger test split only adds images. A directory that
    already holds a complete demo dataset written with the same arguments is
    returned untouched; a demo dataset written with other arguments, or left
    incomplete, is replaced.

    Args:
        out_dir: The dataset directory; created if needed.
        seed: The random seed (non-negative).
        img_size: The side of the square images, in pixels (at least 32).
        train_per_class: The number of training images per species.
        test_per_class: The number of test images per species.
        occlusion_prob: The share of images in which one body region (head,
            wing, tail or legs) is covered by a background or texture patch.

    Returns:
        The dataset directory as a ``Path``.

    Raises:
        FileExistsError: If ``out_dir`` is a file, or a non-empty directory
            that holds no demo dataset.
        ValueError: If an argument is out of range.
    """
    if seed < 0:
        raise ValueError(f'seed must be non-negative, got {seed}')
    if img_size < 32:
        raise ValueError(f'img_size must be at least 32, got {img_size}')
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError('train_per_class and test_per_class must be at '
                         f'least 1, got {train_per_class}, {test_per_class}')
    if not 0.0 <= occlusion_prob <= 1.0:
        raise ValueError(
            f'occlusion_prob must be in [0, 1], got {occlusion_prob}')

    out_dir = Path(out_dir)
    manifest = _manifest(seed, img_size, train_per_class, test_per_class,
                         occlusion_prob)
    if _is_complete(out_dir, manifest):
        return out_dir
    _prepare_directory(out_dir)
    (out_dir / MANIFEST_NAME).write_text(
        json.dumps({**manifest, 'complete': False}, indent=2) + '\n')

    image_lines, label_lines, split_lines = [], [], []
    for label, name in enumerate(DEMO_CLASSES):
        folder = f'{label + 1:03d}.{name}'
        (out_dir / 'images' / folder).mkdir(parents=True)
        backgrounds = _background_pairs(seed, label, train_per_class, test_per_class,
                                        img_size)
        for index, (background, patch) in enumerate(backgrounds):
            rng = random.Random(f'kt-demo/{seed}/{label}/{index}')
            image = render_specimen(label, rng, background, patch, occlusion_prob)
            relative = f'{folder}/{name}_{index + 1:04d}.jpg'
            image.save(out_dir / 'images' / relative, format='JPEG',
                       quality=JPEG_QUALITY, subsampling=0)
            image_id = len(image_lines) + 1
            image_lines.append(f'{image_id} {relative}')
            label_lines.append(f'{image_id} {label + 1}')
            split_lines.append(
                f'{image_id} {int(index < train_per_class)}')

    _write_lines(out_dir / 'images.txt', image_lines)
    _write_lines(out_dir / 'image_class_labels.txt', label_lines)
    _write_lines(out_dir / 'train_test_split.txt', split_lines)
    _write_lines(out_dir / 'classes.txt',
                 [f'{label + 1} {name}'
                  for label, name in enumerate(DEMO_CLASSES)])
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + '\n')
    return out_dir
