"""The input normalisation a model expects, and turning one model's input into another's.

Pretrained weights decide the mean/std their backbone expects (ImageNet's for OpenMMLab's
ResNet-50, 0.5/0.5 for TF EfficientNet-Lite0), so two models of one ensemble, or a student
and its teacher, may expect differently normalised input. They all see the same images: the
batch normalised for one model is turned into the batch another expects by one per-channel
affine map, ``x * std_a / std_b + (mean_a - mean_b) / std_b``.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn


def input_normalisation(model: nn.Module) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """The per-channel (mean, std), in 0..255 units, that ``model``'s data preprocessor applies.

    Args:
        model (nn.Module): An mmpretrain classifier (its ``data_preprocessor``
            normalises unless it was built without mean/std).

    Returns:
        tuple: ``(mean, std)``, each one float per channel; ``(0, ..), (1, ..)``
        when the preprocessor does not normalise.
    """
    preprocessor = model.data_preprocessor
    if getattr(preprocessor, '_enable_normalize', False):
        return (tuple(preprocessor.mean.flatten().tolist()),
                tuple(preprocessor.std.flatten().tolist()))
    return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def channel_order(model: nn.Module) -> str:
    """``'RGB'`` when ``model``'s preprocessor converts loaded BGR images to RGB, else BGR."""
    return 'RGB' if getattr(model.data_preprocessor, 'to_rgb', False) else 'BGR'


class InputRenormalisation(nn.Module):
    """Map a batch normalised with one (mean, std) to the same images normalised with another.

    ``forward(x) = x * source_std / target_std + (source_mean - target_mean) / target_std``,
    per channel; the identity (no operation at all) when both are equal. Parameter-free; its
    two buffers move with the module.

    Args:
        source (tuple): ``(mean, std)`` the input batch was normalised with
            (``((0,)*3, (1,)*3)`` for raw 0..255 values).
        target (tuple): ``(mean, std)`` the receiving model expects.
    """

    def __init__(self, source: Tuple[Sequence[float], Sequence[float]],
                 target: Tuple[Sequence[float], Sequence[float]]) -> None:
        super().__init__()
        source_mean, source_std = (torch.tensor(v, dtype=torch.float64) for v in source)
        target_mean, target_std = (torch.tensor(v, dtype=torch.float64) for v in target)
        self.identity = bool(torch.equal(source_mean, target_mean)
                             and torch.equal(source_std, target_std))
        scale = (source_std / target_std).float().view(1, -1, 1, 1)
        shift = ((source_mean - target_mean) / target_std).float().view(1, -1, 1, 1)
        self.register_buffer('scale', scale, persistent=False)
        self.register_buffer('shift', shift, persistent=False)

    @classmethod
    def between(cls, source: nn.Module, target: nn.Module) -> 'InputRenormalisation':
        """The map from ``source``'s input to ``target``'s (both mmpretrain classifiers).

        Raises:
            ValueError: The two expect different channel orders.
        """
        if channel_order(source) != channel_order(target):
            raise ValueError(f'one model expects {channel_order(source)} input and the other '
                             f'{channel_order(target)}; give both the same to_rgb')
        return cls(input_normalisation(source), input_normalisation(target))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Re-normalise ``inputs`` (B, C, H, W)."""
        if self.identity:
            return inputs
        return inputs * self.scale.to(inputs.dtype) + self.shift.to(inputs.dtype)
