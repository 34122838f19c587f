"""The frozen features of the last test split scored, kept for the next stage that shares them.

The models of a sequence fine-tuned from one pretrained backbone with its first stages
frozen (the README's demo: EfficientNet-Lite0, five stages frozen) compute the same frozen
features of the same test image: those stages keep their pretrained weights. Scoring
stage after stage in one process (``kt train``, ``kt ablate``, ``kt ensemble``), kt
computes them once and runs only the trained stages of every later model.
"""
import hashlib
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

# What one process keeps at most (the demo's 4,000 test images take 115 MB; a split whose
# features would not fit is scored without keeping them).
MAX_BYTES = 2 ** 30

Batches = List[Tuple[torch.Tensor, torch.Tensor]]


def frozen_features_key(model: nn.Module, split: str, batch_size: int) -> Optional[str]:
    """What decides a model's frozen features of a test split; None if it has none.

    Args:
        model (nn.Module): A trained classifier whose backbone may have a
            ``frozen_prefix`` (``FreezableTIMMBackbone``).
        split (str): The test split's digest (its data and pipeline).
        batch_size (int): The loader's batch size (the batches are kept).

    Returns:
        str | None: A digest of the split, the batch size, the input
        normalisation and channel order, and the frozen modules as printed
        with every weight and statistic.
    """
    from registry_plugins.input_normalisation import channel_order, input_normalisation
    prefix = getattr(model.backbone, 'frozen_prefix_digest', lambda: None)()
    if prefix is None:
        return None
    return hashlib.sha256(f'{split}:{batch_size}:{input_normalisation(model)}:'
                          f'{channel_order(model)}:{prefix}'.encode()).hexdigest()


class FrozenFeatureCache:
    """One test split's frozen features and labels, batch by batch, under their key."""

    def __init__(self) -> None:
        self.key: Optional[str] = None
        self.batches: Batches = []

    def get(self, key: Optional[str]) -> Optional[Batches]:
        """The batches kept under ``key``, or None."""
        return self.batches if key is not None and key == self.key else None

    def keep(self, key: Optional[str], batches: Optional[Batches]) -> None:
        """Keep ``batches`` under ``key`` in place of what was kept (nothing for None)."""
        self.key, self.batches = (key, batches) if key and batches is not None else (None, [])


def batch_bytes(frozen: torch.Tensor, labels: torch.Tensor) -> int:
    """The memory one kept batch takes."""
    return frozen.numel() * frozen.element_size() + labels.numel() * labels.element_size()


# The process's cache (scoring runs one stage at a time).
FROZEN_FEATURES = FrozenFeatureCache()
