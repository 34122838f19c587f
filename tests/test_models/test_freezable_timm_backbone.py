"""FreezableTIMMBackbone: a timm CNN whose stem and first stages stay frozen."""
import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import registry_plugins  # noqa: F401


def build(model_name: str = 'resnet18', **kwargs):
    init_default_scope('mmpretrain')
    return MODELS.build(dict(type='FreezableTIMMBackbone', model_name=model_name, **kwargs))


def test_frozen_stages_get_no_gradient_and_keep_their_statistics():
    backbone = build(frozen_stages=1)
    model = backbone.timm_model
    frozen = [model.conv1, model.bn1, model.layer1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    backbone.train()
    assert not model.bn1.training and not model.layer1[0].bn1.training
    assert model.layer2[0].bn1.training
    before = model.layer1[0].bn1.running_mean.clone()
    (feats, ) = backbone(torch.randn(2, 3, 64, 64))
    feats.sum().backward()
    assert feats.shape == (2, 512, 2, 2)
    assert torch.equal(model.layer1[0].bn1.running_mean, before)
    assert model.layer1[0].conv1.weight.grad is None
    assert model.layer2[0].conv1.weight.grad is not None


def test_default_freezes_nothing_and_too_many_stages_is_an_error():
    assert all(p.requires_grad for p in build().parameters())
    with pytest.raises(ValueError, match='frozen_stages=9 is more than that'):
        build(frozen_stages=9)


def test_an_efficientnet_runs_its_frozen_prefix_apart_and_gives_timms_output():
    """The demo's setting (Lite0, five stages frozen, output stride 16): the frozen stem and
    stages run first, channels-last inside (rounding only), and the rest continues from
    their output; a ResNet has no such prefix and runs timm's forward unchanged."""
    torch.manual_seed(0)
    backbone = build('tf_efficientnet_lite0', frozen_stages=5, output_stride=16).eval()
    model = backbone.timm_model
    assert backbone.frozen_prefix == [model.conv_stem, model.bn1, *model.blocks[:5]]
    assert all(not p.requires_grad for m in backbone.frozen_prefix for p in m.parameters())
    assert all(p.requires_grad for p in model.blocks[5].parameters())
    x = torch.randn(2, 3, 64, 64)
    frozen = backbone.frozen_features(x)
    assert frozen.shape == (2, 112, 4, 4) and frozen.is_contiguous()
    (feats, ) = backbone(x)
    assert feats.shape == (2, 1280, 4, 4)
    assert torch.equal(backbone.features_after_frozen(frozen)[0], feats)
    torch.testing.assert_close(feats, model(x), rtol=1e-4, atol=1e-5)
    assert not torch.equal(frozen, torch.zeros_like(frozen))
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert backbone.frozen_features(channels_last).is_contiguous(
        memory_format=torch.channels_last)
    assert build(frozen_stages=1).frozen_prefix == []
    assert build('tf_efficientnet_lite0').frozen_prefix == []
