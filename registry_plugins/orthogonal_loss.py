"""The orthogonal loss (OR-loss) between a student's and its teachers' maps."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

WEIGHTINGS = ('fixed', 'adaptive')


def orthogonal_loss(student_map: torch.Tensor,
                    teacher_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over teachers of the overlap between student and teacher maps.

    For each teacher n: ``mean over (b, h, w) of |T_n| * max(S, 0)``
    (Eq. 3-5 with the authors' reduction); the values are averaged over the
    teachers (the ``1 / (N - 1) * sum`` of Eq. 6). A teacher map of another
    size is first resized bilinearly to the student's H x W (then its
    absolute value is taken). Teacher maps are detached.

    Args:
        student_map (Tensor): Normalised student maps of shape (B, H, W).
        teacher_maps (Sequence[Tensor]): Normalised teacher maps, each of
            shape (B, H', W').

    Returns:
        Tensor: A scalar; a graph-connected zero when there are no teachers.
    """
    if not teacher_maps:
        return student_map.sum() * 0
    student = student_map.clamp(min=0)
    overlaps = []
    for teacher_map in teacher_maps:
        teacher = teacher_map.detach()
        if teacher.shape[-2:] != student.shape[-2:]:
            teacher = F.interpolate(
                teacher[:, None], size=student.shape[-2:], mode='bilinear',
                align_corners=False)[:, 0]
        overlaps.append((teacher.abs() * student).mean())
    return torch.stack(overlaps).mean()


@MODELS.register_module()
class OrthogonalLoss(nn.Module):
    """OR-loss: keeps a student's attention off its teachers' regions.

    Args:
        loss_weight (float): alpha, the weight of the OR term. Defaults to 0.5
            (the paper's best value).
        weighting (str): ``'fixed'`` is the paper's Eq. (6):
            ``loss_weight * L_OR``. ``'adaptive'`` is the authors' code: the
            OR term is rescaled every step by ``ce_loss / L_OR`` (both
            detached), so its value is always ``loss_weight * ce_loss`` while
            its gradient is that of ``L_OR`` times the same constant.
            Defaults to ``'fixed'``.
    """

    def __init__(self, loss_weight: float = 0.5, weighting: str = 'fixed') -> None:
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f'weighting must be one of {WEIGHTINGS}, got {weighting!r}')
        self.loss_weight = loss_weight
        self.weighting = weighting

    def forward(self,
                student_map: torch.Tensor,
                teacher_maps: Sequence[torch.Tensor],
                ce_loss: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the weighted OR-loss.

        Args:
            student_map (Tensor): Normalised student maps (B, H, W).
            teacher_maps (Sequence[Tensor]): Normalised teacher maps, each
                (B, H', W').
            ce_loss (Tensor, optional): The step's cross-entropy; required by
                the adaptive weighting. Defaults to None.

        Returns:
            Tensor: The scalar loss term to add to the cross-entropy.
        """
        loss = orthogonal_loss(student_map, teacher_maps)
        if self.weighting == 'adaptive':
            if ce_loss is None:
                raise ValueError("weighting='adaptive' needs the step's ce_loss")
            value = loss.detach()
            # A zero overlap has a zero gradient too; it stays zero.
            scale = torch.where(value > 0, ce_loss.detach() / value.clamp(min=1e-12),
                                torch.zeros_like(value))
            loss = loss * scale
        return self.loss_weight * loss
