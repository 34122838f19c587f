"""Build a classifier from a kt config and load its trained weights."""
import logging
from pathlib import Path
from typing import Union

import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS

from ktbase.errors import builds_from, first_line

from .checkpoint_loading import resolve_checkpoint
from .errors import CheckpointError

ConfigLike = Union[str, Path, dict, Config]


def build_model_from_config(config: ConfigLike) -> nn.Module:
    """Build ``cfg.model`` the way mmengine's Runner does.

    The config's top-level ``data_preprocessor`` is merged into the model
    config unless the model sets its own; weights are not initialised (no
    pretrained download happens).

    Args:
        config (str | Path | dict | Config): A config file or a loaded config.

    Returns:
        nn.Module: The model, with freshly constructed weights.
    """
    if isinstance(config, (str, Path)):
        cfg = Config.fromfile(str(config))
    else:
        cfg = config if isinstance(config, Config) else Config(config)
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    # Building logs what the backbone is made of (mmpretrain's TIMMBackbone: one INFO line
    # per feature map) to mmengine's current logger, which outside a Runner is stdout.
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        return MODELS.build(model_cfg)
    finally:
        logger.setLevel(level)


def load_trained_model(config: ConfigLike,
                       checkpoint: Union[str, Path],
                       logger=None) -> nn.Module:
    """Build a model from its config and strictly load a trained checkpoint.

    Args:
        config (str | Path | dict | Config): The config it was trained with.
        checkpoint (str | Path): A checkpoint file or a work directory with
            mmengine's ``last_checkpoint`` record.
        logger (optional): Where mmengine logs the loading. Defaults to None.

    Returns:
        nn.Module: The model in eval mode, on the CPU.

    Raises:
        CheckpointError: The checkpoint is unreadable or its weights do not
            fit the model the config builds.
        UserError: The config's model does not build.
    """
    source = config if isinstance(config, (str, Path)) else getattr(config, 'filename', None)
    with builds_from(source, 'model'):
        model = build_model_from_config(config)
    checkpoint = resolve_checkpoint(checkpoint)
    try:
        load_checkpoint(model, str(checkpoint), map_location='cpu', strict=True,
                        logger=logger)
    except CheckpointError:
        raise
    except RuntimeError as error:
        raise CheckpointError(
            f'{checkpoint} does not fit the model of its config ({first_line(error)}); '
            'pass the config it was trained with') from None
    return model.eval()
