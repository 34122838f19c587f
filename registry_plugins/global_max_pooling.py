"""Global max pooling neck (the pooling of the authors' classifier)."""
from typing import Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS


@MODELS.register_module()
class GlobalMaxPooling(nn.Module):
    """Global max pooling over H x W, the counterpart of
    mmpretrain's ``GlobalAveragePooling`` for 2-D feature maps.

    Accepts a tensor (B, C, H, W) or a tuple of them (one per backbone stage)
    and returns (B, C) tensors in the same structure.
    """

    def init_weights(self) -> None:
        """Nothing to initialise."""

    def forward(
        self, inputs: Union[torch.Tensor, Tuple[torch.Tensor, ...]]
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """Pool each feature map to its per-channel maximum."""
        if isinstance(inputs, tuple):
            return tuple(x.amax(dim=(2, 3)) for x in inputs)
        if isinstance(inputs, torch.Tensor):
            return inputs.amax(dim=(2, 3))
        raise TypeError('neck inputs should be a tuple or a torch.Tensor')
