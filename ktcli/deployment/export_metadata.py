"""The schema of an export's metadata (``kt.json``), checked before a file is run.

An exported file travels on its own, so the metadata ``kt predict``, the benchmark and the
export check read from it (how to prepare an image, the classes, the outputs) is checked
field by field: a received file with a malformed ``kt.json`` is one line naming the field,
never a traceback or an allocation of gigabytes. Standard library only.
"""
import math
from typing import Any, Optional, Sequence

from ..errors import UserError
from ..reading import MAX_IMAGE_SIDE, parse_json, shown

# mmcv's names for the interpolation of its Resize transform.
INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'area', 'lanczos')
CHANNEL_ORDERS = ('RGB', 'BGR')
# Largest kt.json read from a file.
METADATA_LIMIT = 2 ** 20


class MetadataError(UserError):
    """An exported file whose metadata kt cannot use."""


def parse_metadata(text: Optional[str], path: Any,
                   output_names: Optional[Sequence[str]] = None) -> dict:
    """The metadata in ``text`` (a file's ``kt.json``), every field kt reads checked.

    Args:
        text (str, optional): The JSON text read from the file.
        path: The file, for messages.
        output_names (Sequence[str], optional): The outputs the model has
            (ONNX); the metadata's must be among them.

    Returns:
        dict: The metadata.

    Raises:
        MetadataError: No metadata, not JSON, or a field of the wrong kind.
    """
    if not text:
        raise MetadataError(f'{path} holds no kt metadata (kt.json); it was not written by '
                            '`kt export`')
    if len(text) > METADATA_LIMIT:
        raise MetadataError(f'{path}: its kt.json is larger than kt writes')
    try:
        metadata = parse_json(text, f'{path}: its kt.json', METADATA_LIMIT)
    except UserError as error:
        raise MetadataError(str(error)) from None
    problem = _problem(metadata, output_names)
    if problem is not None:
        raise MetadataError(f'{path}: kt.json {problem}; it was not written by this kt '
                            '(export it again with `kt export`)')
    return metadata


def _problem(metadata: Any, output_names: Optional[Sequence[str]]) -> Optional[str]:
    if not isinstance(metadata, dict):
        return 'is not an object'
    preprocessing, model_input = metadata.get('preprocessing'), metadata.get('input')
    if not isinstance(preprocessing, dict):
        return 'has no preprocessing object'
    if not isinstance(model_input, dict):
        return 'has no input object'
    for name in ('mean', 'std'):
        values = preprocessing.get(name)
        if not (isinstance(values, list) and len(values) == 3 and all(
                _finite(v) and (name == 'mean' or v > 0) for v in values)):
            return f'preprocessing.{name} must be 3 finite numbers, not {shown(values)}'
    if preprocessing.get('channel_order') not in CHANNEL_ORDERS:
        return (f'preprocessing.channel_order must be RGB or BGR, not '
                f'{shown(preprocessing.get("channel_order"))}')
    if preprocessing.get('interpolation') not in INTERPOLATIONS:
        return (f'preprocessing.interpolation must be one of {", ".join(INTERPOLATIONS)}, '
                f'not {shown(preprocessing.get("interpolation"))}')
    sizes = {name: preprocessing.get(name) for name in ('resize', 'crop')}
    for name, size in sizes.items():
        if size is not None and not _size(size):
            return (f'preprocessing.{name} must be [width, height] of 1 to {MAX_IMAGE_SIDE} '
                    f'pixels or null, not {shown(size)}')
    width, height = sizes['crop'] or sizes['resize'] or (None, None)
    if width is None:
        return 'sets neither preprocessing.resize nor preprocessing.crop'
    if model_input.get('size') != [height, width]:
        return (f'input.size must be {[height, width]} (the crop), not '
                f'{shown(model_input.get("size"))}')
    if not isinstance(model_input.get('normalised_in_model'), bool):
        return 'input.normalised_in_model must be true or false'
    classes = metadata.get('classes')
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        return f'classes must be a list of names, not {shown(classes)}'
    outputs = metadata.get('outputs')
    if not (isinstance(outputs, list) and outputs and all(isinstance(o, str) for o in outputs)
            and len(set(outputs)) == len(outputs)):
        return f'outputs must be a list of distinct names, not {shown(outputs)}'
    if output_names is not None and not set(outputs) <= set(output_names):
        return (f'names outputs {shown(outputs)}, but the model has '
                f'{shown(list(output_names))}')
    layout = metadata.get('attention_layout')
    if layout is not None and not (isinstance(layout, str) and len(outputs) >= 2):
        return 'attention_layout must be null, or a string with attention outputs'
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _size(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(
        isinstance(side, int) and not isinstance(side, bool) and 1 <= side <= MAX_IMAGE_SIDE
        for side in value)
