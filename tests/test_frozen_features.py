"""Scoring stage after stage: a later model with the same frozen stages starts from the frozen
features the first one computed (the README demo's sequence: one pretrained Lite0 trunk)."""
import copy

import torch
from mmengine.config import Config

from ktcli.scoring import test_outputs
from ktcli.scoring.frozen_features import FROZEN_FEATURES
from registry_plugins import build_model_from_config

from .conftest import REPO, write_tiny_config

LITE0_DEMO = REPO / 'configs' / 'kt' / 'efficientnet-lite0_kt_demo.py'


def saved(model: torch.nn.Module, path) -> str:
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return str(path)


def test_a_model_with_the_same_frozen_weights_scores_from_the_kept_features(
        tmp_path, demo_root, monkeypatch):
    cfg = Config.fromfile(str(write_tiny_config(tmp_path / 'lite0.py', demo_root,
                                                base=LITE0_DEMO)))
    cfg.model.backbone.init_cfg = None  # random weights: no pretrained file needed
    torch.manual_seed(0)
    first = build_model_from_config(cfg)
    later, other = copy.deepcopy(first), copy.deepcopy(first)
    with torch.no_grad():
        for parameter in later.backbone.timm_model.blocks[5].parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))  # trained apart: other outputs
        other.backbone.timm_model.conv_stem.weight.mul_(1.1)  # other frozen weights
    checkpoints = {name: saved(model, tmp_path / f'{name}.pth')
                   for name, model in (('first', first), ('later', later), ('other', other))}
    loads = []
    load_batches = test_outputs._test_batches
    monkeypatch.setattr(test_outputs, '_test_batches',
                        lambda *args: loads.append(1) or load_batches(*args))

    def score(name: str) -> dict:
        return test_outputs.compute_test_outputs(cfg, checkpoints[name])

    FROZEN_FEATURES.keep(None, None)
    outputs = {name: score(name) for name in ('first', 'later')}
    assert len(loads) == 1  # the later model read no image
    score('other')
    assert len(loads) == 2  # other frozen weights: the split is read again
    FROZEN_FEATURES.keep(None, None)
    recomputed = score('later')
    assert len(loads) == 3
    assert outputs['later'].keys() == recomputed.keys() == {'logits', 'labels', 'attention'}
    for key, value in recomputed.items():
        assert torch.equal(outputs['later'][key], value), key
    assert len(recomputed['labels']) == 40
    assert not torch.allclose(outputs['first']['logits'], outputs['later']['logits'])
