"""What ``--backbone``, ``--pretrained``, ``--frozen-stages`` and ``--output-stride`` make of a
stage's model.

A backbone is either one of the model configs kt ships (``configs/_base_/models/<name>_kt.py``:
``resnet50``, ``vgg16``, ``efficientnet_lite0``, ``resnet18_tiny``) or ``timm/<model name>``,
any timm CNN built through mmpretrain's ``TIMMBackbone``. Pretrained weights decide the input
normalisation: a model config whose backbone starts from pretrained weights carries the
mean/std those weights expect in ``model.data_preprocessor`` (for ``timm/...``, timm's own
pretrained config supplies it); a backbone trained from scratch takes the dataset config's.
"""
import functools
import re
from pathlib import Path
from typing import Any, List, Optional, Tuple

from mmengine.config import Config

from ..errors import UserError
from ..resources import CONFIG_ROOT

MODEL_CONFIGS = CONFIG_ROOT / '_base_' / 'models'
BACKBONE_ALIASES = {'vgg16': 'vgg16bn'}
TIMM_PREFIX = 'timm/'
# The model config that ``timm/<name>`` fills in.
TIMM_CONFIG = 'timm_kt.py'
# timm's module inside mmpretrain's TIMMBackbone: plain timm weights load into it.
TIMM_SUBMODULE = 'timm_model'
CLASSIFIER_PREFIX = 'backbone.'


def available_backbones() -> List[str]:
    """Backbone names with a shipped ``configs/_base_/models/<name>_kt.py``."""
    return sorted(path.stem[:-len('_kt')] for path in MODEL_CONFIGS.glob('*_kt.py')
                  if path.name != TIMM_CONFIG)


def backbone_config(name: str) -> Path:
    """The model config of backbone ``name`` (``vgg16`` means ``vgg16bn``): one of the
    shipped files, chosen by name, never a path that ``name`` spells."""
    if is_backbone_name(name) and name.startswith(TIMM_PREFIX):
        return MODEL_CONFIGS / TIMM_CONFIG
    path = MODEL_CONFIGS / f'{BACKBONE_ALIASES.get(name, name)}_kt.py'
    if not is_backbone_name(name) or not path.is_file():
        raise UserError(f'unknown backbone {name!r}; choose one of '
                        f'{", ".join(available_backbones() + list(BACKBONE_ALIASES))}, '
                        'or timm/<model name> for any timm CNN')
    return path


def timm_model_facts(model_name: str) -> Tuple[int, Tuple[float, ...], Tuple[float, ...]]:
    """Channels of a timm model's last feature map, and its pretrained mean/std (0..1 units).

    The model is built on the meta device (no weights are made or downloaded)
    and run on a meta image to check that it gives a spatial feature map.

    Raises:
        UserError: timm has no such model, or it gives no (B, C, H, W) map.
    """
    import timm
    import torch
    if not timm.is_model(model_name):
        raise UserError(f'timm has no model {model_name!r}; list them with '
                        "python -c \"import timm; print(timm.list_models('*name*'))\"")
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False)
        feats = model.forward_features(torch.empty(1, 3, 224, 224))
    if feats.dim() != 4:
        raise UserError(f'timm/{model_name} gives features of shape {tuple(feats.shape)}, not a '
                        'spatial map (B, C, H, W); the OR-loss needs a CNN-like backbone')
    config = model.pretrained_cfg
    return feats.shape[1], tuple(config.get('mean', (0.5,) * 3)), tuple(
        config.get('std', (0.5,) * 3))


def configure_backbone(cfg: Config, name: str, pretrained: str,
                       frozen_stages: Optional[int] = None,
                       output_stride: Optional[int] = None) -> bool:
    """Apply the backbone options to a composed config.

    Args:
        cfg (Config): The stage config built on :func:`backbone_config`.
        name (str): The backbone (see the module docstring).
        pretrained (str): ``'default'`` (the config's weights; timm's own for
            ``timm/...``), ``'none'``, a checkpoint file or a URL.
        frozen_stages (int, optional): Freeze the stem and this many stages
            (``-1``: nothing). Defaults to None (the config's choice).
        output_stride (int, optional): The last feature map's stride for a
            timm backbone (16 or 8 dilate the last stages: a 2x or 4x larger
            attention map). Defaults to None (the model's own, usually 32).

    Returns:
        bool: Whether the backbone starts from pretrained weights.
    """
    backbone = cfg.model.backbone
    if name.startswith(TIMM_PREFIX):
        model_name = name[len(TIMM_PREFIX):]
        channels, mean, std = timm_model_facts(model_name)
        backbone.model_name = model_name
        cfg.model.head.in_channels = channels
        cfg.model.data_preprocessor = dict(mean=[round(255 * v, 4) for v in mean],
                                           std=[round(255 * v, 4) for v in std], to_rgb=True)
        if pretrained == 'default':
            backbone.init_cfg = dict(type='Pretrained', checkpoint=f'timm://{model_name}',
                                     submodule=TIMM_SUBMODULE)
    if pretrained == 'none':
        backbone.pop('init_cfg', None)
    elif pretrained != 'default':
        backbone.init_cfg = _checkpoint_init(pretrained, backbone)
    if frozen_stages is not None:
        if 'frozen_stages' not in _backbone_arguments(backbone.type):
            raise UserError(f'--frozen-stages: the {backbone.type} backbone cannot freeze stages')
        backbone.frozen_stages = frozen_stages
    if output_stride is not None:
        if not _is_timm(backbone):
            raise UserError('--output-stride works with timm backbones (efficientnet_lite0, '
                            f'timm/<name>), not {backbone.type}')
        backbone.output_stride = output_stride
    init_cfg = backbone.get('init_cfg')
    starts_pretrained = bool(init_cfg) and init_cfg.get('type') == 'Pretrained'
    if not starts_pretrained:
        # Weights from scratch: the dataset config's normalisation applies.
        cfg.model.pop('data_preprocessor', None)
    return starts_pretrained


def _checkpoint_init(pretrained: str, backbone: Config) -> dict:
    """The init_cfg that loads ``--pretrained FILE|URL`` into ``backbone``.

    A file's keys tell its layout: a classifier checkpoint (``backbone.``
    keys) gives its backbone; other weights are the backbone's own (for a
    timm backbone, plain timm weights).
    """
    if pretrained.startswith(('http://', 'https://')):
        prefix = backbone.get('init_cfg', {}).get('prefix', CLASSIFIER_PREFIX)
        return dict(type='Pretrained', checkpoint=pretrained, prefix=prefix)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise UserError(f'--pretrained {pretrained}: no such file; pass a checkpoint file, a '
                        'URL, "default" or "none"')
    path = path.resolve()
    init_cfg = dict(type='Pretrained', checkpoint=str(path))
    if _is_classifier_checkpoint(str(path), path.stat().st_mtime_ns):
        return dict(init_cfg, prefix=CLASSIFIER_PREFIX)
    if _is_timm(backbone):
        return dict(init_cfg, submodule=TIMM_SUBMODULE)
    return dict(init_cfg, prefix=None)


@functools.lru_cache(maxsize=8)
def _is_classifier_checkpoint(path: str, mtime_ns: int) -> bool:
    """Whether a checkpoint file holds a classifier (``backbone.`` keys).

    Read once per file version: every stage of every planned sequence asks.
    """
    from registry_plugins.checkpoint_loading import load_checkpoint_file
    from registry_plugins.pretrained_init import checkpoint_state_dict
    state = checkpoint_state_dict(load_checkpoint_file(path, map_location='cpu'), path)
    return any(key.startswith(CLASSIFIER_PREFIX) for key in state)


def _is_timm(backbone: Config) -> bool:
    """Whether ``backbone`` wraps a timm model (mmpretrain's TIMMBackbone or kt's subclass)."""
    return backbone.type.endswith('TIMMBackbone')


def _backbone_arguments(backbone_type: str) -> set:
    """The constructor arguments of a registered backbone class."""
    import inspect

    import registry_plugins  # noqa: F401  (registers kt's backbone)
    from mmpretrain.registry import MODELS
    return set(inspect.signature(MODELS.get(backbone_type).__init__).parameters)


# kt's own backbone names are plain words; a timm model's name is timm's (letters, digits,
# '_', '-' and a '.' before a pretrained tag), never a path.
_KT_BACKBONE = re.compile(r'[a-z0-9_]{1,64}')
_TIMM_BACKBONE = re.compile(r'timm/[A-Za-z0-9][A-Za-z0-9_\-]{0,127}(\.[A-Za-z0-9_\-]{1,64})?')


def is_backbone_name(name: Any) -> bool:
    """Whether ``name`` is one backbone as kt names it: one of kt's model configs
    (``resnet50``, ``vgg16``...) or ``timm/<model name>``; never a path. (Whether timm has
    the model is asked where it is built: :func:`timm_model_facts`.)"""
    if not isinstance(name, str):
        return False
    if _TIMM_BACKBONE.fullmatch(name):
        return True
    return bool(_KT_BACKBONE.fullmatch(name)) and (
        name in BACKBONE_ALIASES or name in available_backbones())
