"""BestCheckpointHook: the best epoch's weights, a tie keeping the earlier epoch, and the
validation a resumed run owes."""
import json
from types import SimpleNamespace

import torch

from registry_plugins.best_checkpoint_hook import BEST_RECORD, BestCheckpointHook


def runner_at(work_dir, model, epoch, validations):
    return SimpleNamespace(work_dir=str(work_dir), model=model, epoch=epoch, rank=0,
                           val_loop=SimpleNamespace(run=lambda: validations.append(epoch)))


def test_keeps_the_best_epoch_and_a_tie_keeps_the_earlier(tmp_path):
    hook, model, validations = BestCheckpointHook(), torch.nn.Linear(2, 1), []
    for epoch, top1 in enumerate([40.0, 55.0, 55.0, 50.0], start=1):
        with torch.no_grad():
            model.bias.fill_(epoch)
        hook.after_val_epoch(runner_at(tmp_path, model, epoch, validations),
                             {'accuracy/top1': top1})
    best = torch.load(tmp_path / 'best.pth', weights_only=True)
    assert best['meta'] == dict(epoch=2, top1=55.0)
    assert best['state_dict']['bias'].item() == 2.0
    assert json.loads((tmp_path / BEST_RECORD).read_text()) == dict(
        validated_epoch=4, best_epoch=2, top1=55.0)


def test_a_resumed_run_validates_the_epoch_it_resumes_from_once(tmp_path):
    hook, model, validations = BestCheckpointHook(), torch.nn.Linear(2, 1), []
    hook.before_train(runner_at(tmp_path, model, 0, validations))
    assert validations == []
    hook.after_val_epoch(runner_at(tmp_path, model, 1, validations), {'accuracy/top1': 10.0})
    # Stopped after epoch 2's checkpoint, before its validation: the resumed run owes it.
    hook.before_train(runner_at(tmp_path, model, 2, validations))
    assert validations == [2]
    hook.after_val_epoch(runner_at(tmp_path, model, 2, validations), {'accuracy/top1': 20.0})
    hook.before_train(runner_at(tmp_path, model, 2, validations))
    assert validations == [2]


def test_a_malformed_record_is_a_fresh_start(tmp_path):
    for text in ('[1, 2]', '{"validated_epoch": "9", "best_epoch": 1, "top1": 5}',
                 '{"validated_epoch": 9, "best_epoch": 1, "top1": NaN}', 'not json'):
        (tmp_path / BEST_RECORD).write_text(text)
        validations = []
        hook = BestCheckpointHook()
        hook.before_train(runner_at(tmp_path, torch.nn.Linear(2, 1), 1, validations))
        assert validations == [1]
