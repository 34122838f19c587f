import math

import pytest
import torch
from mmpretrain.registry import MODELS

import registry_plugins  # noqa: F401


def build_attention(**kwargs):
    return MODELS.build(dict(type='SpatialAttention', **kwargs))


def test_map_matches_hand_computation_with_unbiased_std():
    # Channel means are 2 and 1, so M = mean([2*[1,2,3], 1*[0,0,3]]) = [1, 2, 4.5];
    # mean 2.5, unbiased std sqrt(((-1.5)^2 + (-0.5)^2 + 2^2) / 2) = sqrt(3.25).
    feats = torch.tensor([[[[1., 2., 3.]], [[0., 0., 3.]]]])
    std = math.sqrt(3.25)
    expected = torch.tensor([[[-1.5 / std, -0.5 / std, 2.0 / std]]])
    result = build_attention()(feats)
    assert result.shape == (1, 1, 3)
    torch.testing.assert_close(result, expected)
    # The biased (n) estimate would give visibly different values.
    assert not torch.allclose(result, torch.tensor([[[-1.5, -0.5, 2.0]]]) / math.sqrt(6.5 / 3))


def test_each_sample_is_normalised_on_its_own():
    torch.manual_seed(0)
    feats = torch.rand(3, 4, 5, 6)
    feats[1] *= 10
    maps = build_attention()(feats)
    assert maps.shape == (3, 5, 6)
    torch.testing.assert_close(maps.flatten(1).mean(1), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(maps.flatten(1).std(1), torch.ones(3))
    torch.testing.assert_close(maps[1], build_attention()(feats[1:2])[0])


@pytest.mark.parametrize('value', [0.0, 0.1, 3.7])
def test_constant_map_gives_zeros_and_finite_gradients(value):
    feats = torch.full((2, 3, 4, 4), value, requires_grad=True)
    maps = build_attention()(feats)
    assert torch.equal(maps, torch.zeros(2, 4, 4))
    maps.sum().backward()
    assert torch.isfinite(feats.grad).all()


def test_constant_sample_does_not_disturb_the_others():
    feats = torch.rand(2, 3, 4, 4)
    feats[0] = 1.0
    maps = build_attention()(feats)
    assert torch.equal(maps[0], torch.zeros(4, 4))
    torch.testing.assert_close(maps[1].std(), torch.tensor(1.0))


def test_rejects_non_4d_features():
    with pytest.raises(ValueError, match='B, C, H, W'):
        build_attention()(torch.rand(3, 4, 5))


def test_one_pixel_map_is_constant_without_warnings():
    import warnings
    feats = torch.rand(2, 3, 1, 1, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        maps = build_attention()(feats)
    assert torch.equal(maps, torch.zeros(2, 1, 1))
    maps.sum().backward()
    assert torch.isfinite(feats.grad).all()
