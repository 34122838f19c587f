"""mmpretrain's TIMMBackbone with its first stages frozen, as mmpretrain's ResNet does."""
from typing import List

import torch.nn as nn
from mmpretrain.models.backbones import TIMMBackbone
from mmpretrain.registry import MODELS


@MODELS.register_module()
class FreezableTIMMBackbone(TIMMBackbone):
    """Any timm CNN as a backbone, optionally with its stem and first stages frozen.

    The stages are timm's coarse parameter groups (``group_matcher(coarse=True)``):
    the stem, then each stage of blocks (EfficientNet's ``blocks.0`` ... ``blocks.6``,
    ResNet's ``layer1`` ... ``layer4``). Frozen modules get no gradient, so the
    backward pass stops at the first trained stage, and their normalisation
    layers stay in eval mode (running statistics kept), like mmpretrain's
    ``ResNet(frozen_stages=k)``. The output is the last feature map
    (``features_only=False``: timm's ``forward_features``, the map its ImageNet
    classifier pooled).

    Args:
        model_name (str): The timm model, e.g. ``'tf_efficientnet_lite0'``.
        frozen_stages (int): Freeze the stem and this many stages after it;
            ``0`` freezes the stem only, ``-1`` nothing. Defaults to -1.
        **kwargs: Passed to ``TIMMBackbone`` and on to ``timm.create_model``
            (``init_cfg``, ``output_stride``, ``drop_path_rate``, ...).
    """

    def __init__(self, model_name: str, frozen_stages: int = -1, **kwargs) -> None:
        super().__init__(model_name=model_name, **kwargs)
        self.frozen_stages = frozen_stages
        self.frozen_modules = self._stage_modules(frozen_stages + 1)
        for module in self.frozen_modules:
            module.requires_grad_(False)

    def _stage_modules(self, count: int) -> List[nn.Module]:
        """The modules of timm's first ``count`` coarse groups (stem first)."""
        if count <= 0:
            return []
        from timm.models import group_modules
        model = self.timm_model
        groups = group_modules(model, model.group_matcher(coarse=True))
        stages = [groups[key] for key in sorted(groups)]
        if count > len(stages):
            raise ValueError(f'{type(model).__name__} has a stem and {len(stages) - 1} more '
                             f'parameter groups; frozen_stages={count - 1} is more than that')
        return [model.get_submodule(name) for stage in stages[:count] for name in stage]

    def train(self, mode: bool = True) -> 'FreezableTIMMBackbone':
        """Set the mode; frozen modules always stay in eval mode."""
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        return self
