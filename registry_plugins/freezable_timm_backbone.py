"""mmpretrain's TIMMBackbone with its first stages frozen, as mmpretrain's ResNet does."""
import hashlib
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.backbones import TIMMBackbone
from mmpretrain.registry import MODELS

from .dilated_depthwise_conv import speed_up_dilated_depthwise


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

    For timm's EfficientNet family the frozen stem and stages are a prefix of the
    forward pass (:attr:`frozen_prefix`): :meth:`frozen_features` runs them on
    their own, in the channels-last memory format (their batch-32 pass at 128 px took
    0.31 s instead of 0.44 s on a 2-core CPU), and :meth:`features_after_frozen` runs
    the rest. ``KTClassifier`` hands the frozen output of its student to every teacher
    with the same frozen weights, which then runs only its trained stages. Its dilated
    depthwise convolutions (``output_stride=16``) train with
    :class:`~registry_plugins.dilated_depthwise_conv.DilatedDepthwiseConv2d`.

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
        self.frozen_prefix = self._frozen_prefix(frozen_stages)
        speed_up_dilated_depthwise(self.timm_model)

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

    def _frozen_prefix(self, frozen_stages: int) -> List[nn.Module]:
        """The frozen modules in the order the forward pass runs them, when they are a prefix
        of it (timm's EfficientNet: stem, then ``blocks[:frozen_stages]``); else ``[]``."""
        from timm.models.efficientnet import EfficientNet
        model = self.timm_model
        if frozen_stages < 0 or not isinstance(model, EfficientNet):
            return []
        return [model.conv_stem, model.bn1, *model.blocks[:frozen_stages]]

    def frozen_features(self, x: torch.Tensor) -> torch.Tensor:
        """The output of the frozen stem and stages, in the memory format of ``x``.

        Only for a backbone with a :attr:`frozen_prefix`.
        """
        layout = (torch.channels_last if x.dim() == 4 and not x.is_contiguous()
                  and x.is_contiguous(memory_format=torch.channels_last)
                  else torch.contiguous_format)
        x = x.contiguous(memory_format=torch.channels_last)
        for module in self.frozen_prefix:
            x = module(x)
        return x.contiguous(memory_format=layout)

    def features_after_frozen(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        """The backbone's output from :meth:`frozen_features`' output: the trained stages,
        the head convolution and timm's (pool-free) ``forward_head``."""
        model = self.timm_model
        for block in model.blocks[len(self.frozen_prefix) - 2:]:
            x = block(x)
        return (model.forward_head(model.bn2(model.conv_head(x))), )

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        """The last feature map, as ``TIMMBackbone`` gives it."""
        if not self.frozen_prefix or self.timm_model.grad_checkpointing:
            return super().forward(x)
        return self.features_after_frozen(self.frozen_features(x))

    def frozen_prefix_digest(self) -> Optional[str]:
        """A digest of what :meth:`frozen_features` computes: the frozen modules as printed
        (sizes, strides, paddings) with every weight and statistic; None without a prefix."""
        if not self.frozen_prefix:
            return None
        digest = hashlib.sha256()
        for module in self.frozen_prefix:
            digest.update(repr(module).encode())
            for name, tensor in module.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                              .numpy().tobytes())
        return digest.hexdigest()

    def shares_frozen_features(self, other: nn.Module) -> bool:
        """Whether ``other`` (a backbone) computes :meth:`frozen_features` exactly as this
        one does (equal :meth:`frozen_prefix_digest`)."""
        mine = self.frozen_prefix_digest()
        return mine is not None and mine == getattr(other, 'frozen_prefix_digest', lambda: None)()

    def train(self, mode: bool = True) -> 'FreezableTIMMBackbone':
        """Set the mode; frozen modules always stay in eval mode."""
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        return self
