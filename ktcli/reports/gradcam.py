"""Grad-CAM of a trained kt classifier, with pytorch-grad-cam (the ``grad-cam`` package).

The target layer is the module whose output is the backbone's last feature map: the map
the head pools and the spatial attention map (what the OR-loss acts on) is computed from,
so a member's Grad-CAM and its attention map describe the same features at the same
resolution. Where that module is depends on the backbone family
(:func:`gradcam_target_layer`).
"""
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn

from ..errors import UserError

GRADCAM_FAMILIES = ('mmpretrain ResNet (and its variants)', 'mmpretrain VGG',
                    'timm EfficientNet', 'other timm CNNs')


def gradcam_target_layer(model: nn.Module) -> Tuple[str, nn.Module]:
    """The layer Grad-CAM reads for ``model``'s backbone family.

    * mmpretrain ``ResNet`` (ResNet-50, ``resnet18_tiny``, ResNetV1c/d, ResNeXt, ...):
      its last returned stage (``layer4``).
    * mmpretrain ``VGG``: the last module of its last returned conv block (the block's
      max pool, when the backbone keeps it: the map the head pools).
    * timm ``EfficientNet`` (``efficientnet_lite0``, ``timm/efficientnet_b0``, ...):
      ``bn2``, the normalised, activated output of ``conv_head`` that ends
      ``forward_features`` (after the last block of ``blocks``).
    * any other timm CNN: the module of timm's last ``feature_info`` entry, its last
      feature stage.

    Args:
        model (nn.Module): A classifier with a ``backbone`` (a kt ``KTClassifier``).

    Returns:
        tuple[str, nn.Module]: The layer's dotted name in ``model`` and the layer.

    Raises:
        UserError: A backbone of another family.
    """
    from mmpretrain.models.backbones import VGG, ResNet, TIMMBackbone

    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, ResNet):
        name = f'backbone.{backbone.res_layers[max(backbone.out_indices)]}'
    elif isinstance(backbone, VGG):
        last = backbone.range_sub_modules[max(backbone.out_indices)][1] - 1
        name = f'backbone.{backbone.module_name}.{last}'
    elif isinstance(backbone, TIMMBackbone):
        from timm.models.efficientnet import EfficientNet
        timm_model = backbone.timm_model
        if isinstance(timm_model, EfficientNet):
            name = 'backbone.timm_model.bn2'
        else:
            name = f'backbone.timm_model.{timm_model.feature_info[-1]["module"]}'
    else:
        raise UserError(
            f'Grad-CAM has no target layer for a {type(backbone).__name__} backbone; kt knows '
            f'{", ".join(GRADCAM_FAMILIES)} (use --method attention for this work dir)')
    return name, model.get_submodule(name)


class _Logits(nn.Module):
    """The classifier's class scores, with the input made to require a gradient so that
    the target layer's output carries one even when every layer before it is frozen."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not inputs.requires_grad:
            inputs = inputs.detach().requires_grad_(True)
        return self.classifier(inputs, mode='tensor')


def gradcam_maps(model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
    """Grad-CAM maps of ``model`` for ``classes`` on a preprocessed batch.

    Deterministic for a fixed model and input (eval mode, no test-time augmentation):
    the same call gives the same maps.

    Args:
        model (nn.Module): A trained classifier (see :func:`gradcam_target_layer`).
        inputs (Tensor): Preprocessed images (B, 3, H, W), as the model's
            ``data_preprocessor`` gives them.
        classes (Tensor): The class each map explains, (B,) (e.g. the predicted ones).

    Returns:
        np.ndarray: (B, H, W) float32 maps in 0..1 (each scaled by its maximum by
        pytorch-grad-cam), at the input's resolution.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _, layer = gradcam_target_layer(model)
    model.eval()
    with torch.inference_mode(False), torch.enable_grad():
        with GradCAM(model=_Logits(model), target_layers=[layer]) as cam:
            maps = cam(input_tensor=inputs.clone(),
                       targets=[ClassifierOutputTarget(int(c)) for c in classes])
    model.zero_grad(set_to_none=True)
    return np.asarray(maps, dtype=np.float32)
