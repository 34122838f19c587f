"""Checkpoints that load with ``torch.load(weights_only=True)``, resume included, and name
no folder of the machine that wrote them."""
import os
import tempfile
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmpretrain.registry import HOOKS

from .checkpoint_loading import without_code

# Marks a HistoryBuffer written as plain data.
_HISTORY = '__history_buffer__'


def _plain(value: Any) -> Any:
    """``value`` with HistoryBuffers and numpy values turned into plain data."""
    if isinstance(value, HistoryBuffer):
        logs, counts = value.data
        return {_HISTORY: True, 'max_length': value.max_length,
                'logs': torch.as_tensor(logs), 'counts': torch.as_tensor(counts)}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((key, _plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def _history_buffer(value: dict) -> HistoryBuffer:
    """Rebuild a HistoryBuffer that :func:`_plain` wrote."""
    return HistoryBuffer(value['logs'].tolist(), value['counts'].tolist(), value['max_length'])


def _relative(value: Any, work_dir: str) -> Any:
    """A path inside ``work_dir`` made relative to it; any other value as it is."""
    if isinstance(value, str) and value.startswith(os.path.join(work_dir, '')):
        return os.path.relpath(value, work_dir)
    return value


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Write checkpoints with tensors and plain Python values only.

    mmengine stores the message hub's ``HistoryBuffer`` objects and numpy
    values in every checkpoint, so loading one needs a full unpickle (or, in
    onedl-mmengine, an allowlist that admits ``getattr``), which can run
    whatever code a file names. kt loads every checkpoint with
    ``weights_only=True`` instead: before a checkpoint is saved this hook
    turns those objects into tensors and plain values, and after one is
    loaded for resuming it rebuilds the HistoryBuffers, so logging continues
    as if the run had never stopped. Nothing it writes is code or a path of
    this machine: the config text mmengine stores (and would execute on
    resume) and the checkpoint paths of the message hub are left out, and
    mmengine's ``last_checkpoint`` record in the work dir is kept relative to
    it (work dirs travel; kt reads only the file's name).
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Make the message hub and meta plain data, without the config as Python text
        (which mmengine does not need to resume) or the absolute path of the checkpoint."""
        for key in ('message_hub', 'meta'):
            if key in checkpoint:
                checkpoint[key] = _plain(checkpoint[key])
        without_code(checkpoint)

    def after_train_epoch(self, runner) -> None:
        """Keep mmengine's ``last_checkpoint`` record (just written by the CheckpointHook,
        which runs before this hook) relative to the work dir, replacing the file rather
        than writing through it."""
        record = os.path.join(runner.work_dir, 'last_checkpoint')
        if runner.rank == 0 and os.path.isfile(record) and not os.path.islink(record):
            with open(record) as file:
                path = file.read().strip()
            if _relative(path, runner.work_dir) != path:
                with tempfile.NamedTemporaryFile('w', dir=runner.work_dir, delete=False) as file:
                    file.write(_relative(path, runner.work_dir))
                os.replace(file.name, record)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Rebuild the message hub's HistoryBuffers."""
        scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
        for name, value in scalars.items():
            if isinstance(value, dict) and value.get(_HISTORY):
                scalars[name] = _history_buffer(value)
