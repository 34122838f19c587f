"""DilatedDepthwiseConv2d: autograd's gradients of a dilated depthwise convolution, from two
plain convolutions."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from registry_plugins.dilated_depthwise_conv import (DilatedDepthwiseConv2d,
                                                     is_dilated_depthwise,
                                                     speed_up_dilated_depthwise)


@pytest.mark.parametrize('kernel,dilation,bias', [(5, 2, False), (3, 2, True), (3, 3, True)])
def test_gradients_equal_autograds(kernel, dilation, bias):
    torch.manual_seed(0)
    plain = nn.Conv2d(6, 6, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                      groups=6, bias=bias)
    fast = copy.deepcopy(plain)
    assert speed_up_dilated_depthwise(fast) == 1 and type(fast) is DilatedDepthwiseConv2d
    assert fast.state_dict().keys() == plain.state_dict().keys()
    inputs = torch.randn(3, 6, 8, 10, requires_grad=True)
    grad = torch.randn(3, 6, 8, 10)
    results = []
    for conv in (plain, fast):
        output = conv(inputs)
        results.append((output, *torch.autograd.grad(output, (inputs, *conv.parameters()),
                                                     grad)))
    assert len(results[0]) == (4 if bias else 3)
    for expected, got in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert results[1][2].abs().sum() > 0
    with torch.no_grad():  # outside training: nn.Conv2d's own forward
        assert torch.equal(fast(inputs), plain(inputs))


def test_only_stride_1_same_padded_dilated_depthwise_convolutions_change():
    def conv(**kwargs):
        return nn.Conv2d(**{**dict(in_channels=4, out_channels=4, kernel_size=3, groups=4,
                                   dilation=2, padding=2), **kwargs})
    assert is_dilated_depthwise(conv())
    for other in (conv(dilation=1, padding=1), conv(groups=1), conv(stride=2),
                  conv(padding=1), conv(kernel_size=2, padding=1), conv(padding_mode='reflect'),
                  conv(dilation=(2, 1), padding=(2, 1))):
        assert not is_dilated_depthwise(other)


def test_lite0_at_output_stride_16_trains_its_dilated_convolutions_so():
    init_default_scope('mmpretrain')
    backbone = MODELS.build(dict(type='FreezableTIMMBackbone', model_name='tf_efficientnet_lite0',
                                 output_stride=16))
    fast = [name for name, module in backbone.named_modules()
            if isinstance(module, DilatedDepthwiseConv2d)]
    assert fast == [f'timm_model.blocks.{stage}.{block}.conv_dw'
                    for stage, blocks in ((5, range(1, 4)), (6, range(1))) for block in blocks]
    stride_32 = MODELS.build(dict(type='FreezableTIMMBackbone',
                                  model_name='tf_efficientnet_lite0'))
    assert not any(isinstance(m, DilatedDepthwiseConv2d) for m in stride_32.modules())
