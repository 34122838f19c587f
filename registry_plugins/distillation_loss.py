"""Distillation of an ensemble of trained stages into one student."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS


def fused_soft_targets(teacher_logits: Sequence[torch.Tensor],
                       temperature: float) -> torch.Tensor:
    """The ensemble's softened prediction: the mean of the members' ``softmax(z / T)``.

    The same fusion as ``kt ensemble``'s softmax averaging, at temperature T.

    Args:
        teacher_logits (Sequence[Tensor]): Each member's logits (B, classes).
        temperature (float): T.

    Returns:
        Tensor: Probabilities (B, classes), detached.
    """
    return torch.stack([F.softmax(logits.detach() / temperature, dim=1)
                        for logits in teacher_logits]).mean(dim=0)


def ensemble_distillation_loss(student_logits: torch.Tensor,
                               teacher_logits: Sequence[torch.Tensor],
                               temperature: float = 4.0) -> torch.Tensor:
    """``T^2 * KL(p_ensemble^T || p_student^T)``, averaged over the batch.

    Hinton et al. (2015): the student's softened distribution is pulled
    towards the teachers'; the ``T^2`` factor keeps the gradient's scale
    independent of T.

    Args:
        student_logits (Tensor): The student's logits (B, classes).
        teacher_logits (Sequence[Tensor]): The members' logits (B, classes).
        temperature (float): T. Defaults to 4.0.

    Returns:
        Tensor: A scalar.
    """
    targets = fused_soft_targets(teacher_logits, temperature)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_student, targets, reduction='batchmean') * temperature**2


def union_attention_map(teacher_maps: Sequence[torch.Tensor], size: torch.Size) -> torch.Tensor:
    """The members' combined attention: their mean map at ``size``, normalised again.

    Each member's normalised map (B, H', W') is resized bilinearly to
    ``size``; the mean is normalised per sample to zero mean and unit
    (unbiased) std like a single map, so it marks the union of the regions
    the members look at.

    Args:
        teacher_maps (Sequence[Tensor]): The members' normalised maps.
        size (torch.Size): The student's (H, W).

    Returns:
        Tensor: The combined map (B, H, W), detached.
    """
    resized = [m.detach() if m.shape[-2:] == size else F.interpolate(
        m.detach()[:, None], size=size, mode='bilinear', align_corners=False)[:, 0]
        for m in teacher_maps]
    union = torch.stack(resized).mean(dim=0)
    mean = union.mean(dim=(1, 2), keepdim=True)
    std = union.flatten(1).std(dim=1, unbiased=True)[:, None, None]
    return (union - mean) / std.clamp(min=1e-6)


def attention_transfer_loss(student_map: torch.Tensor,
                            teacher_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean squared difference between the student's map and the members' union map.

    Args:
        student_map (Tensor): The student's normalised map (B, H, W).
        teacher_maps (Sequence[Tensor]): The members' normalised maps.

    Returns:
        Tensor: A scalar.
    """
    return F.mse_loss(student_map, union_attention_map(teacher_maps, student_map.shape[-2:]))


@MODELS.register_module()
class EnsembleDistillationLoss(nn.Module):
    """Knowledge distillation from an ensemble, with an optional attention term.

    ``loss_weight * T^2 * KL(mean_i softmax(z_i / T) || softmax(z_s / T))``
    (:func:`ensemble_distillation_loss`) plus ``attention_weight *``
    :func:`attention_transfer_loss`.

    Args:
        temperature (float): T. Defaults to 4.0.
        loss_weight (float): Weight of the KL term. Defaults to 0.9.
        attention_weight (float): Weight of the attention term (0: off).
            Defaults to 0.0.
    """

    def __init__(self, temperature: float = 4.0, loss_weight: float = 0.9,
                 attention_weight: float = 0.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be positive, got {temperature}')
        self.temperature = temperature
        self.loss_weight = loss_weight
        self.attention_weight = attention_weight

    def forward(self, student_logits: torch.Tensor, teacher_logits: Sequence[torch.Tensor],
                student_map: torch.Tensor, teacher_maps: Sequence[torch.Tensor]) -> dict:
        """The weighted terms: ``loss_kd`` and, when weighted, ``loss_at``."""
        losses = dict(loss_kd=self.loss_weight * ensemble_distillation_loss(
            student_logits, teacher_logits, self.temperature))
        if self.attention_weight:
            losses['loss_at'] = self.attention_weight * attention_transfer_loss(
                student_map, teacher_maps)
        return losses
