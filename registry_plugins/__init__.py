"""kt's mmengine plugins, registered in mmpretrain's registries on import.

Configs load them with ``custom_imports = dict(imports=['registry_plugins'])``.
Importing this package also makes mmengine load every checkpoint weights-only
(see :mod:`registry_plugins.checkpoint_loading`).
Importing it also keeps what the libraries print outside a Runner off stdout
(see :mod:`registry_plugins.library_output`).
"""
import warnings

# onedl-mmcv installs without compiled ops (built without torch); mmpretrain never needs
# them, but importing mmcv's transformer bricks warns about one on every start.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from .library_output import route_library_output_to_stderr

route_library_output_to_stderr()

from .best_checkpoint_hook import BestCheckpointHook
from .bn_mlp_cls_head import BNMLPClsHead
from .checkpoint_loading import UnsafeCheckpointError, load_checkpoint_file, resolve_checkpoint
from .distillation_loss import EnsembleDistillationLoss, ensemble_distillation_loss
from .epoch_seeding import EpochSeedHook, seed_loader_worker
from .errors import CheckpointError
from .freezable_timm_backbone import FreezableTIMMBackbone
from .global_max_pooling import GlobalMaxPooling
from .input_normalisation import InputRenormalisation, input_normalisation
from .kt_classifier import KTClassifier, KTDistiller
from .orthogonal_loss import OrthogonalLoss, orthogonal_loss
from .pretrained_init import CompletePretrainedInit
from .sequential_teacher_hook import SequentialTeacherHook
from .spatial_attention import SpatialAttention, spatial_attention_map
from .trained_model import build_model_from_config, load_trained_model
from .weights_only_checkpoint_hook import WeightsOnlyCheckpointHook

__all__ = [
    'BestCheckpointHook', 'BNMLPClsHead', 'CheckpointError', 'CompletePretrainedInit',
    'EnsembleDistillationLoss',
    'EpochSeedHook', 'FreezableTIMMBackbone', 'GlobalMaxPooling', 'InputRenormalisation',
    'KTClassifier', 'KTDistiller', 'ensemble_distillation_loss',
    'OrthogonalLoss', 'SequentialTeacherHook', 'SpatialAttention', 'UnsafeCheckpointError',
    'WeightsOnlyCheckpointHook', 'build_model_from_config', 'input_normalisation',
    'load_checkpoint_file', 'load_trained_model', 'orthogonal_loss', 'resolve_checkpoint',
    'seed_loader_worker', 'spatial_attention_map'
]
