"""Keep the weights of the epoch with the best top-1 of mmengine's val loop as ``best.pth``."""
import io
import json
import math
import os
from pathlib import Path
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import weights_to_cpu
from mmpretrain.registry import HOOKS

from ktbase.writing import write_atomically

# The best epoch's weights, the file a stage with --checkpoint best-val|best-test hands on.
BEST_CHECKPOINT = 'best.pth'
# What the hook has seen: the last validated epoch, the best epoch and its top-1.
BEST_RECORD = 'best_checkpoint.json'
METRIC = 'accuracy/top1'


@HOOKS.register_module()
class BestCheckpointHook(Hook):
    """Write the model's weights to ``best.pth`` after every validation that beats the
    best top-1 so far (a tie keeps the earlier epoch).

    kt trains a stage with ``--checkpoint best-val`` (the val loop scores the
    validation split) or ``best-test`` (it scores the test split: the authors'
    protocol, labelled "selected on the test set" wherever kt prints it). The file
    holds ``state_dict`` and ``meta`` (epoch, top-1) only, so it loads weights-only.
    ``best_checkpoint.json`` records the last epoch validated; a run resumed from an
    epoch whose validation never happened (stopped in between) validates it first, so
    the best epoch is the one an uninterrupted run picks.
    """

    priority = 'LOW'

    def before_train(self, runner) -> None:
        """Validate the epoch a resumed run starts from when it was not validated."""
        record = self._record(runner.work_dir)
        if runner.epoch > record['validated_epoch']:
            runner.val_loop.run()

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        """Keep the weights if this epoch's top-1 is the best so far."""
        if runner.rank != 0 or not metrics or METRIC not in metrics:
            return
        record = self._record(runner.work_dir)
        top1 = float(metrics[METRIC])
        if record['best_epoch'] is None or top1 > record['top1']:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            buffer = io.BytesIO()
            torch.save(dict(state_dict=weights_to_cpu(model.state_dict()),
                            meta=dict(epoch=runner.epoch, top1=top1)), buffer)
            write_atomically(Path(runner.work_dir) / BEST_CHECKPOINT, buffer.getvalue())
            record.update(best_epoch=runner.epoch, top1=top1)
        record['validated_epoch'] = runner.epoch
        write_atomically(Path(runner.work_dir) / BEST_RECORD, json.dumps(record))

    @staticmethod
    def _record(work_dir: str) -> dict:
        """The hook's record; an absent or malformed one is a fresh start."""
        fresh = dict(validated_epoch=0, best_epoch=None, top1=-math.inf)
        path = os.path.join(work_dir, BEST_RECORD)
        if not os.path.isfile(path) or os.path.islink(path):
            return fresh
        try:
            with open(path, 'rb') as file:
                record = json.loads(file.read(4096))
        except (OSError, ValueError):
            return fresh
        numbers = (isinstance(record, dict) and isinstance(record.get('validated_epoch'), int)
                   and isinstance(record.get('best_epoch'), int)
                   and isinstance(record.get('top1'), (int, float))
                   and math.isfinite(record['top1']))
        return record if numbers else fresh
