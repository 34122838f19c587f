"""Pretrained initialisation that never leaves a weight behind.

mmengine's ``Pretrained`` initialiser loads with ``strict=False`` and only logs the keys it
could not match, so a checkpoint with an unexpected prefix or layout leaves a backbone
randomly initialised while training goes on. kt registers its own ``Pretrained`` in
mmpretrain's registry (which the ``mmpretrain`` default scope of kt's configs searches
first): every parameter and buffer of the module must come from the checkpoint.
"""
from collections import OrderedDict
from typing import Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model.weight_init import PretrainedInit, update_init_info
from mmengine.runner.checkpoint import CheckpointLoader
from mmpretrain.registry import WEIGHT_INITIALIZERS

from .errors import CheckpointError

# mmengine's default revision of the keys of a checkpoint saved from a DDP-wrapped model.
_WRAPPER_PREFIX = 'module.'
_EXAMPLES = 3


def checkpoint_state_dict(checkpoint: object, source: str) -> 'OrderedDict':
    """The weights of a loaded checkpoint: its ``state_dict`` entry, else the dict itself.

    Raises:
        CheckpointError: ``checkpoint`` holds no dict of weights.
    """
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f'{source} holds no state dict of weights')
    return OrderedDict((key[len(_WRAPPER_PREFIX):] if key.startswith(_WRAPPER_PREFIX) else key,
                        value) for key, value in state.items())


@WEIGHT_INITIALIZERS.register_module(name='Pretrained')
class CompletePretrainedInit(PretrainedInit):
    """Initialise a module from a checkpoint that must cover all of it.

    Loads ``checkpoint`` (a file, a URL, or one of the schemes of
    :mod:`registry_plugins.checkpoint_loading` such as ``timm://NAME``), keeps
    the keys that start with ``prefix`` (with the prefix removed) and loads
    them into the module, or into its ``submodule``. Every parameter and
    buffer there (BatchNorm's ``num_batches_tracked`` counters aside) must be
    in the checkpoint with the same shape; keys the module has no use for
    (e.g. an ImageNet classifier's head) are ignored and counted in the log.

    Args:
        checkpoint (str): Where the weights come from.
        prefix (str, optional): Keep only the keys under this prefix, e.g.
            ``'backbone.'`` for a classifier checkpoint. Defaults to None.
        submodule (str, optional): Load into this submodule of the module
            (``'timm_model'`` for plain timm weights in a ``TIMMBackbone``).
            Defaults to None.
        map_location (str): Same as :func:`torch.load`. Defaults to ``'cpu'``.

    Raises:
        CheckpointError: The checkpoint misses weights of the module or holds
            some of another shape.
    """

    def __init__(self, checkpoint: str, prefix: Optional[str] = None,
                 submodule: Optional[str] = None, map_location: str = 'cpu') -> None:
        super().__init__(checkpoint, prefix, map_location)
        self.submodule = submodule

    def __call__(self, module: nn.Module) -> None:
        target = module.get_submodule(self.submodule) if self.submodule else module
        state = checkpoint_state_dict(
            CheckpointLoader.load_checkpoint(self.checkpoint, self.map_location, 'current'),
            self.checkpoint)
        if self.prefix:
            state = OrderedDict((key[len(self.prefix):], value) for key, value in state.items()
                                if key.startswith(self.prefix))
        expected = target.state_dict()
        missing = [key for key in expected
                   if key not in state and not key.endswith('num_batches_tracked')]
        if missing:
            raise CheckpointError(
                f'{self.checkpoint} leaves {len(missing)} of {len(expected)} weights of '
                f'{type(target).__name__} uninitialised (e.g. {", ".join(missing[:_EXAMPLES])}); '
                f'with prefix {self.prefix!r} its keys look like '
                f'{", ".join(list(state)[:_EXAMPLES]) or "nothing"}: fix the prefix or pass '
                'weights of this architecture')
        wrong_shape = [f'{key} {tuple(state[key].shape)} vs {tuple(value.shape)}'
                       for key, value in expected.items()
                       if key in state and state[key].shape != value.shape]
        if wrong_shape:
            raise CheckpointError(f'{self.checkpoint} has weights of another shape than '
                                  f'{type(target).__name__}: {"; ".join(wrong_shape[:_EXAMPLES])}')
        target.load_state_dict(OrderedDict((key, state[key]) for key in expected if key in state),
                               strict=False)
        unused = [key for key in state if key not in expected]
        print_log(f'loaded all {len(expected)} weights of {type(target).__name__} from '
                  f'{self.checkpoint}' + (f'; {len(unused)} other keys unused (e.g. '
                                          f'{", ".join(unused[:_EXAMPLES])})' if unused else ''),
                  logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())
