"""A stage's dataset splits as an exported ensemble sees them: through the test pipeline.

Every image comes out as mmpretrain's test pipeline leaves it (uint8, N x 3 x H x W, BGR,
resized and cropped to the input size), which :func:`~ktcli.deployment.export_verifier.
to_model_input` turns into model input. The export check reads the first test images,
int8 calibration reads training images (through the test pipeline, not the augmenting
training one: calibration must see what the model will see) and the accuracy check of a
reduced-precision file reads the whole test split with its labels.
"""
from typing import Iterator, Optional, Tuple

import numpy as np
from mmengine.config import Config

from ..errors import UserError

# What building or reading a dataset raises when its files are missing or unreadable.
READ_ERRORS = (OSError, ValueError, RuntimeError, AssertionError, KeyError)


def _dataset(cfg: Config, split: str):
    """The ``'train'`` or ``'test'`` dataset of ``cfg``, read through the test pipeline."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    test = cfg.test_dataloader.dataset
    dataset_cfg = test if split == 'test' else dict(cfg.train_dataloader.dataset,
                                                    pipeline=test.pipeline)
    return DATASETS.build(dataset_cfg)


def _unreadable(split: str, error: Exception) -> UserError:
    first = str(error).strip().splitlines()
    return UserError(f'cannot read the {split} split ({first[0] if first else type(error).__name__}'
                     '); pass --data-root with the folder holding the data the stages were '
                     'trained on')


def first_test_images(cfg: Config, count: int) -> Optional[np.ndarray]:
    """The first ``count`` test images (uint8 BGR NCHW), or None when the split cannot be read.

    Args:
        cfg (Config): A stage's config.
        count (int): How many.
    """
    if cfg.test_dataloader.dataset.get('data_root') is None:
        return None  # the stages' data is not at hand
    try:
        dataset = _dataset(cfg, 'test')
        images = [dataset[k]['inputs'].numpy() for k in range(min(count, len(dataset)))]
    except READ_ERRORS:
        return None
    return np.stack(images) if images else None


def calibration_images(cfg: Config, count: int) -> np.ndarray:
    """``count`` training images spread evenly over the training split (uint8 BGR NCHW).

    Evenly spaced indices, not the first ``count``: split files are usually
    sorted by class, so the first images would cover a few classes only.

    Args:
        cfg (Config): A stage's config.
        count (int): How many (all of them when the split holds fewer).

    Raises:
        UserError: The training split cannot be read.
    """
    try:
        dataset = _dataset(cfg, 'train')
        picked = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round())
        return np.stack([dataset[int(k)]['inputs'].numpy() for k in picked])
    except READ_ERRORS as error:
        raise _unreadable('train', error) from None


def labelled_test_batches(cfg: Config,
                          batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Every test image in order, in batches, with its label.

    Args:
        cfg (Config): A stage's config.
        batch_size (int): Images per batch.

    Yields:
        tuple: uint8 BGR images (B, 3, H, W) and their class indices (B,).

    Raises:
        UserError: The test split cannot be read.
    """
    try:
        dataset = _dataset(cfg, 'test')
        for start in range(0, len(dataset), batch_size):
            samples = [dataset[k] for k in range(start, min(start + batch_size, len(dataset)))]
            yield (np.stack([sample['inputs'].numpy() for sample in samples]),
                   np.array([int(sample['data_samples'].gt_label[0]) for sample in samples]))
    except READ_ERRORS as error:
        raise _unreadable('test', error) from None
