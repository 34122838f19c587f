"""kt's mmengine plugins, registered in mmpretrain's registries on import.

Configs load them with ``custom_imports = dict(imports=['registry_plugins'])``.
Importing this package also adapts mmengine's checkpoint loading to
torch >= 2.6 (see :mod:`registry_plugins.checkpoint_loading`).
"""
import warnings

# mmcv-lite has no compiled ops; mmpretrain never needs them, but importing
# mmcv's transformer bricks warns about one on every start.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from .bn_mlp_cls_head import BNMLPClsHead
from .checkpoint_loading import (
                                 CheckpointError,
                                 UntrustedCheckpointError,
                                 is_kt_checkpoint,
                                 load_checkpoint_file,
                                 mark_work_dir,
                                 resolve_checkpoint,
)
from .freezable_timm_backbone import FreezableTIMMBackbone
from .global_max_pooling import GlobalMaxPooling
from .input_normalisation import InputRenormalisation, input_normalisation
from .kt_classifier import KTClassifier
from .orthogonal_loss import OrthogonalLoss, orthogonal_loss
from .pretrained_init import CompletePretrainedInit
from .sequential_teacher_hook import SequentialTeacherHook
from .spatial_attention import SpatialAttention, spatial_attention_map
from .trained_model import build_model_from_config, load_trained_model

__all__ = [
    'BNMLPClsHead', 'CheckpointError', 'CompletePretrainedInit', 'FreezableTIMMBackbone',
    'GlobalMaxPooling', 'InputRenormalisation', 'KTClassifier', 'OrthogonalLoss',
    'SequentialTeacherHook', 'SpatialAttention', 'UntrustedCheckpointError',
    'build_model_from_config', 'input_normalisation', 'is_kt_checkpoint',
    'load_checkpoint_file', 'load_trained_model', 'mark_work_dir', 'orthogonal_loss',
    'resolve_checkpoint', 'spatial_attention_map'
]
