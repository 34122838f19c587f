"""The spatial attention map that carries knowledge between models."""
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS


def spatial_attention_map(feats: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Compute the normalised spatial attention map of Eq. (1)-(2).

    ``M = CAP(GAP(F) * F)``: each channel is weighted by its spatial mean and
    the weighted channels are averaged. Each sample's map is then normalised
    to ``(M - mean) / std`` over its H x W positions, with the unbiased
    (n - 1) standard deviation as in the authors' code.

    The authors divide by the std without any guard, so a constant map gives
    NaN there. Here a map whose std is at most ``eps`` times its largest
    magnitude counts as constant and is normalised to zeros (and its gradient
    is zero), never NaN or inf; an all-zero map and a 1 x 1 map are constant
    too.

    Half-precision features (from a model under autocast) are normalised in
    float32, so the map is float32 whatever precision the backbone ran in.

    Args:
        feats (Tensor): Feature maps of shape (B, C, H, W).
        eps (float): Relative flatness threshold. Defaults to 1e-6.

    Returns:
        Tensor: Normalised maps of shape (B, H, W).
    """
    if feats.dim() != 4:
        raise ValueError(f'expected features of shape (B, C, H, W), got {tuple(feats.shape)}')
    if feats.dtype in (torch.float16, torch.bfloat16):
        feats = feats.float()
    channel_weights = feats.mean(dim=(2, 3), keepdim=True)
    maps = (channel_weights * feats).mean(dim=1)
    mean = maps.mean(dim=(1, 2), keepdim=True)
    if not torch.jit.is_tracing() and maps.shape[-2:] == (1, 1):
        # A 1 x 1 map (a small image through a deep backbone) is constant; its unbiased std
        # would be NaN, with NaN gradients. (An exported graph needs no gradient, and a
        # traced size comparison would be frozen into it.)
        return (maps - mean) * 0
    std = maps.flatten(1).std(dim=1, unbiased=True)[:, None, None]
    scale = maps.abs().amax(dim=(1, 2), keepdim=True)
    varies = std > eps * scale
    # Dividing by 1 where the map is flat keeps the backward pass finite.
    safe_std = torch.where(varies, std, torch.ones_like(std))
    return (maps - mean) / safe_std * varies


@MODELS.register_module()
class SpatialAttention(nn.Module):
    """Normalised spatial attention map of a feature map (Eq. 1-2).

    Parameter-free; see :func:`spatial_attention_map`.

    Args:
        eps (float): Relative threshold below which a map's std counts as
            zero and the map is normalised to zeros. Defaults to 1e-6.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Map features (B, C, H, W) to normalised attention maps (B, H, W)."""
        return spatial_attention_map(feats, self.eps)
