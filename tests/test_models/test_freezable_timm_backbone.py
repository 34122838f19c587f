"""FreezableTIMMBackbone: a timm CNN whose stem and first stages stay frozen."""
import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import registry_plugins  # noqa: F401


def build(**kwargs):
    init_default_scope('mmpretrain')
    return MODELS.build(dict(type='FreezableTIMMBackbone', model_name='resnet18', **kwargs))


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
