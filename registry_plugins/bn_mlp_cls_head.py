"""The authors' classification head: BN -> Linear -> BN -> ELU -> Linear."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS


@MODELS.register_module()
class BNMLPClsHead(ClsHead):
    """Two-layer classifier with batch normalisation, as in the authors' code.

    ``BatchNorm1d(C) -> Linear(C, hidden) -> BatchNorm1d(hidden) -> ELU ->
    Linear(hidden, num_classes)`` on pooled features; the authors pool with
    global max pooling (use the ``GlobalMaxPooling`` neck).

    Args:
        num_classes (int): Number of categories.
        in_channels (int): Channels of the pooled input features.
        hidden_channels (int): Width of the hidden layer. Defaults to 512.
        init_cfg (dict, optional): The initialisation config. Defaults to
            ``dict(type='Normal', layer='Linear', std=0.01)``.
        **kwargs: Passed to :class:`ClsHead` (``loss``, ``topk``, ...).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 hidden_channels: int = 512,
                 init_cfg: Optional[dict] = dict(type='Normal', layer='Linear', std=0.01),
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes={num_classes} must be a positive integer')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.hidden = nn.Sequential(
            nn.BatchNorm1d(in_channels),
            nn.Linear(in_channels, hidden_channels),
            nn.BatchNorm1d(hidden_channels),
            nn.ELU(inplace=True),
        )
        self.fc = nn.Linear(hidden_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The hidden features of the last stage's pooled input."""
        return self.hidden(feats[-1])

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Class scores (B, num_classes)."""
        return self.fc(self.pre_logits(feats))
