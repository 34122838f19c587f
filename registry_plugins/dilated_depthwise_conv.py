"""Dilated depthwise convolutions whose CPU backward pass is two plain convolutions."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class _DilatedDepthwise(torch.autograd.Function):
    """A stride-1, zero-padded ('same') dilated depthwise convolution.

    PyTorch's CPU gradient of a dilated depthwise convolution is slow (EfficientNet-Lite0's
    dilated 5 x 5 convolutions at 8 x 8, batch 32: 0.13 s backward against 8 ms forward on
    2 cores). Both gradients are convolutions of their own: the input's is the same
    convolution of the output gradient with the kernel flipped, the kernel's a grouped
    convolution of the (zero-padded) input with the output gradient as kernel, strided by
    the dilation, summed over the batch. The results are autograd's up to float rounding.
    """

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, weight: torch.Tensor, bias, dilation: int,
                padding: int) -> torch.Tensor:
        ctx.save_for_backward(inputs, weight)
        ctx.has_bias, ctx.dilation, ctx.padding = bias is not None, dilation, padding
        return F.conv2d(inputs, weight, bias, 1, padding, dilation, inputs.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inputs, weight = ctx.saved_tensors
        batch, channels, height, width = grad.shape
        dilation, padding = ctx.dilation, ctx.padding
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = F.conv2d(grad, weight.flip(-1, -2), None, 1, padding, dilation,
                                  channels)
        if ctx.needs_input_grad[1]:
            per_image = F.conv2d(inputs.reshape(1, batch * channels, height, width),
                                 grad.reshape(batch * channels, 1, height, width), None,
                                 dilation, padding, 1, batch * channels)
            grad_weight = per_image.reshape(batch, channels, *weight.shape[-2:]).sum(0)
            grad_weight = grad_weight.unsqueeze(1)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_input, grad_weight, grad_bias, None, None


class DilatedDepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` that trains a dilated depthwise convolution with :class:`_DilatedDepthwise`
    on the CPU; elsewhere, and outside training, it is ``nn.Conv2d``.

    Made from a convolution in place by :func:`speed_up_dilated_depthwise` (its weights and
    state-dict keys stay).
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The convolution of ``inputs``."""
        if inputs.device.type != 'cpu' or not torch.is_grad_enabled() or not (
                inputs.requires_grad or self.weight.requires_grad):
            return super().forward(inputs)
        return _DilatedDepthwise.apply(inputs, self.weight, self.bias, self.dilation[0],
                                       self.padding[0])


def is_dilated_depthwise(module: nn.Module) -> bool:
    """Whether ``module`` is a plain ``nn.Conv2d`` that :class:`DilatedDepthwiseConv2d` can
    train: depthwise, stride 1, one dilation above 1 in both directions, an odd square
    kernel and the zero padding that keeps the size."""
    if type(module) is not nn.Conv2d:
        return False
    (kernel, other_kernel), (dilation, other_dilation) = module.kernel_size, module.dilation
    return (module.groups == module.in_channels == module.out_channels
            and module.stride == (1, 1) and dilation == other_dilation > 1
            and kernel == other_kernel and kernel % 2 == 1
            and module.padding == (dilation * (kernel - 1) // 2, ) * 2
            and module.padding_mode == 'zeros')


def speed_up_dilated_depthwise(model: nn.Module) -> int:
    """Make every dilated depthwise ``nn.Conv2d`` of ``model`` a
    :class:`DilatedDepthwiseConv2d`; the number made."""
    convolutions = [module for module in model.modules() if is_dilated_depthwise(module)]
    for module in convolutions:
        module.__class__ = DilatedDepthwiseConv2d
    return len(convolutions)
