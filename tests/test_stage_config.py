"""Stage configs and digests, without training."""
from pathlib import Path

import pytest
import torch

from ktcli.errors import UserError
from ktcli.stages.stage_config import (
    Teacher,
    TrainSettings,
    compose_stage_config,
    parse_cfg_options,
    stage_digest,
)

WORK = Path('/tmp/kt-stage-config-test')


def settings(**changes) -> TrainSettings:
    values = dict(dataset='cub', data_root='data/cub')
    values.update(changes)
    return TrainSettings(**values)


def digest(train_settings: TrainSettings, teachers=()) -> str:
    cfg = compose_stage_config(train_settings, list(teachers), WORK, index=len(teachers) + 1)
    return stage_digest(cfg, [t.digest for t in teachers], train_settings.processes)


TEACHER = Teacher('0123456789abcdef', WORK / 'a' / 'config.py', WORK / 'a' / 'epoch_100.pth')


def test_paper_defaults_reach_the_config():
    cfg = compose_stage_config(settings(), [TEACHER], WORK, index=2)
    assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == 200
    assert cfg.train_dataloader.dataset.data_root == 'data/cub'
    assert cfg.test_dataloader.dataset.data_root == 'data/cub'
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult == 0.1
    assert cfg.train_cfg.max_epochs == cfg.param_scheduler.T_max == 100
    assert cfg.randomness.seed == 1  # stage 2 of seed 0
    assert cfg.model.or_loss == dict(type='OrthogonalLoss', loss_weight=0.5, weighting='fixed')
    (hook, ) = cfg.custom_hooks
    assert hook.teachers == [dict(config=str(TEACHER.config), checkpoint=str(TEACHER.checkpoint))]


def test_alpha_changes_only_stages_with_teachers():
    assert digest(settings(alpha=0.5)) == digest(settings(alpha=2.0))
    assert digest(settings(alpha=0.5), [TEACHER]) != digest(settings(alpha=2.0), [TEACHER])
    assert digest(settings(weighting='adaptive'), [TEACHER]) != digest(settings(), [TEACHER])


def test_digest_follows_what_determines_the_weights():
    base = digest(settings())
    assert digest(settings(seed=1)) != base
    assert digest(settings(epochs=50)) != base
    assert digest(settings(img_size=224)) != base
    assert digest(settings(batch_size=16)) != base
    assert digest(settings(data_root='elsewhere')) != base
    assert digest(settings(), [TEACHER]) != base
    # Not by how the batch is split over processes, nor by logging.
    assert digest(settings(processes=2)) == base
    assert digest(settings(cfg_options=(('default_hooks.logger.interval', 1), ))) == base


def test_img_size_scales_the_resize_and_crops():
    cfg = compose_stage_config(settings(img_size=224), [], WORK)
    train = {step.type: step for step in cfg.train_dataloader.dataset.pipeline}
    test = {step.type: step for step in cfg.test_dataloader.dataset.pipeline}
    assert train['Resize'].scale == test['Resize'].scale == (300, 300)
    assert (train['RandomCrop'].crop_size, train['RandomCrop'].padding) == (224, 4)
    assert test['CenterCrop'].crop_size == 224


def test_without_pretraining_the_backbone_learns_at_the_head_rate():
    cfg = compose_stage_config(settings(pretrained='none'), [], WORK)
    assert 'init_cfg' not in cfg.model.backbone
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult == 1.0


def test_pretrained_file_prefix_is_detected(tmp_path):
    bare, classifier = tmp_path / 'bare.pth', tmp_path / 'classifier.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, bare)
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1)}}, classifier)
    for path, prefix in ((bare, None), (classifier, 'backbone.')):
        init_cfg = compose_stage_config(settings(pretrained=str(path)), [], WORK).model.backbone
        assert init_cfg.init_cfg == dict(type='Pretrained', checkpoint=str(path),
                                         prefix=prefix)


def test_batch_must_split_over_processes():
    with pytest.raises(UserError, match='does not split evenly'):
        compose_stage_config(settings(batch_size=30, processes=4), [], WORK)
    cfg = compose_stage_config(settings(batch_size=32, processes=4), [], WORK)
    assert cfg.train_dataloader.batch_size == 8


def test_vis_backend_without_its_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr('importlib.util.find_spec', lambda name: None)
    with pytest.raises(UserError, match='needs the tensorboard package'):
        compose_stage_config(settings(vis_backends=('tensorboard', )), [], WORK)
    with pytest.raises(UserError, match='unknown --vis-backend'):
        compose_stage_config(settings(vis_backends=('paper', )), [], WORK)


def test_cfg_options_are_parsed_like_mmengine():
    assert parse_cfg_options(['a.b=1', 'c=[1,2]', 'd=x']) == {'a.b': 1, 'c': [1, 2], 'd': 'x'}
    with pytest.raises(UserError, match='KEY=VALUE'):
        parse_cfg_options(['novalue'])


def test_amp_selects_mmengine_amp_wrapper_and_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(UserError, match='--amp needs a GPU'):
        compose_stage_config(settings(amp=True), [], WORK)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = compose_stage_config(settings(amp=True), [], WORK)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert digest(settings(amp=True)) != digest(settings())
