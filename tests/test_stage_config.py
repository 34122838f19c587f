"""Stage configs and digests, without training."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from ktcli.data.fingerprint import DataFingerprint
from ktcli.errors import UserError
from ktcli.scoring.test_outputs import split_digest
from ktcli.stages.portable_config import RunInputs, portable_config, runtime_config
from ktcli.stages.settings import Teacher, TrainSettings
from ktcli.stages.stage_config import compose_stage_config, stage_digest
from ktcli.stages.validation_config import checkpoint_name, validation_view

WORK = Path('/tmp/kt-stage-config-test')


def settings(**changes) -> TrainSettings:
    values = dict(dataset='cub', data_root='data/cub')
    values.update(changes)
    return TrainSettings(**values)


def digest(train_settings: TrainSettings, teachers=()) -> str:
    """The digest of the stage's portable config, as a sequence gives it."""
    cfg = compose_stage_config(train_settings, list(teachers), WORK, index=len(teachers) + 1)
    return stage_digest(portable_config(cfg)[0], [t.digest for t in teachers],
                        train_settings.processes)


TEACHER_CONFIG = Config(dict(model=dict(type='KTClassifier', head=dict(num_classes=200)),
                             data_preprocessor=dict(mean=[0.0] * 3, std=[1.0] * 3)))
TEACHER = Teacher('0123456789abcdef', TEACHER_CONFIG, Path('..') / 'a' / 'epoch_100.pth')


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
    # The teacher's model travels in the student's config; its checkpoint path stays relative.
    assert hook.teachers == [dict(config=TEACHER_CONFIG.to_dict(), checkpoint='../a/epoch_100.pth')]


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
    assert digest(settings(), [TEACHER]) != base
    # Not by how the batch is split over processes, nor by logging.
    assert digest(settings(processes=2)) == base
    assert digest(settings(cfg_options=(('default_hooks.logger.interval', 1), ))) == base


DATA = DataFingerprint('cub', train='0' * 16, test='1' * 16, images=11788)


def test_the_digest_covers_the_training_data_by_content_not_by_folder():
    here = digest(settings(data_root='/data/cub', data_fingerprint=DATA))
    assert digest(settings(data_root='/elsewhere/CUB', data_fingerprint=DATA)) == here
    other_train = DataFingerprint('cub', train='2' * 16, test='1' * 16, images=11788)
    assert digest(settings(data_root='/data/cub', data_fingerprint=other_train)) != here
    # The test split does not change the weights, only the cached test outputs' key.
    other_test = DataFingerprint('cub', train='0' * 16, test='3' * 16, images=11788)
    assert digest(settings(data_root='/data/cub', data_fingerprint=other_test)) == here
    splits = [split_digest(portable_config(compose_stage_config(
        settings(data_root=root, data_fingerprint=data), [], WORK))[0])
        for root, data in (('/data/cub', DATA), ('/elsewhere', DATA), ('/data/cub', other_test))]
    assert splits[0] == splits[1] != splits[2]


def test_the_portable_config_names_no_folder_and_the_runtime_one_puts_them_back(tmp_path):
    weights = tmp_path / 'weights.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, weights)
    cfg = compose_stage_config(settings(data_root='/data/cub', data_fingerprint=DATA,
                                        pretrained=str(weights)), [], WORK)
    portable, inputs = portable_config(cfg)
    assert inputs == RunInputs('/data/cub', str(weights))
    assert inputs.arguments() == ['--data-root', '/data/cub', '--pretrained', str(weights)]
    assert 'work_dir' not in portable
    text = portable.pretty_text
    assert '/data/cub' not in text and str(tmp_path) not in text and str(WORK) not in text
    assert portable.test_dataloader.dataset.data_root == 'data/CUB_200_2011'
    assert portable.model.backbone.init_cfg.checkpoint.startswith('pretrained-file:')
    runtime = runtime_config(portable, inputs)
    cfg.pop('work_dir')
    assert runtime.to_dict() == cfg.to_dict()
    assert runtime.model.to_dict() == cfg.model.to_dict()
    assert runtime.train_dataloader.to_dict() == cfg.train_dataloader.to_dict()
    with pytest.raises(UserError, match='starts from a --pretrained file'):
        runtime_config(portable, RunInputs('/data/cub'))
    # The same weights anywhere are the same stage; other weights are another.
    copy = tmp_path / 'copy.pth'
    copy.write_bytes(weights.read_bytes())
    assert digest(settings(data_fingerprint=DATA, pretrained=str(copy))) == digest(
        settings(data_fingerprint=DATA, pretrained=str(weights)))
    torch.save({'conv1.weight': torch.ones(1)}, copy)
    assert digest(settings(data_fingerprint=DATA, pretrained=str(copy))) != digest(
        settings(data_fingerprint=DATA, pretrained=str(weights)))
    record = settings(data_fingerprint=DATA, pretrained=str(weights)).to_record()
    assert 'data_root' not in record and str(tmp_path) not in str(record)
    assert TrainSettings.from_record(record).data_fingerprint == DATA


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
    # Plain timm weights load into the timm model inside mmpretrain's TIMMBackbone.
    timm_cfg = compose_stage_config(settings(pretrained=str(bare), backbone='timm/resnet18'),
                                    [], WORK)
    assert timm_cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=str(bare),
                                                    submodule='timm_model')


def normalisation(cfg) -> tuple:
    """The mean/std (0..1 units) of the model that a composed stage config builds."""
    from registry_plugins import build_model_from_config, input_normalisation
    mean, std = input_normalisation(build_model_from_config(cfg))
    return tuple(round(v / 255, 3) for v in mean), tuple(round(v / 255, 3) for v in std)


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, ) * 3, (0.5, ) * 3)


def test_normalisation_comes_from_the_backbone_weights():
    def stage(**changes):
        return compose_stage_config(settings(dataset='demo', **changes), [], WORK)
    # ImageNet weights decide: Lite0's TF weights 0.5/0.5, ResNet-50's ImageNet's, timm's its own.
    assert normalisation(stage(backbone='efficientnet_lite0')) == HALF
    assert normalisation(stage(backbone='resnet50')) == IMAGENET
    assert normalisation(stage(backbone='timm/resnet18')) == IMAGENET
    assert normalisation(stage(backbone='timm/tf_efficientnet_lite0')) == HALF
    # From scratch, the dataset config's applies (CUB's ImageNet statistics).
    assert normalisation(compose_stage_config(
        settings(backbone='efficientnet_lite0', pretrained='none'), [], WORK)) == IMAGENET
    assert normalisation(stage(backbone='resnet50', pretrained='none')) == HALF
    assert digest(settings(backbone='efficientnet_lite0')) != digest(
        settings(backbone='efficientnet_lite0', pretrained='none'))


def test_timm_backbone_takes_its_channels_and_pretrained_weights_from_timm():
    cfg = compose_stage_config(settings(backbone='timm/resnet18'), [], WORK)
    assert cfg.model.backbone.model_name == 'resnet18' and cfg.model.head.in_channels == 512
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='timm://resnet18',
                                               submodule='timm_model')
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult == 0.1
    with pytest.raises(UserError, match="timm has no model 'resnet_nonexistent'"):
        compose_stage_config(settings(backbone='timm/resnet_nonexistent'), [], WORK)
    with pytest.raises(UserError, match='not a spatial map'):
        compose_stage_config(settings(backbone='timm/vit_tiny_patch16_224'), [], WORK)


def test_comma_separated_backbones_give_each_stage_its_own():
    mixed = settings(backbone='resnet18_tiny,efficientnet_lite0')
    assert [mixed.backbone_of(k) for k in (1, 2, 3)] == [
        'resnet18_tiny', 'efficientnet_lite0', 'efficientnet_lite0']
    types = [compose_stage_config(mixed, [], WORK, index=k).model.backbone.type for k in (1, 2)]
    assert types == ['ResNet', 'FreezableTIMMBackbone']


def test_frozen_stages_and_output_stride_reach_the_backbone():
    cfg = compose_stage_config(settings(backbone='efficientnet_lite0', frozen_stages=4,
                                        output_stride=16), [], WORK)
    assert cfg.model.backbone.frozen_stages == 4 and cfg.model.backbone.output_stride == 16
    from registry_plugins import build_model_from_config
    cfg.model.head.num_classes = 20
    attention = build_model_from_config(cfg).attention_map(torch.zeros(1, 3, 128, 128))
    assert attention.shape == (1, 8, 8)  # 4 x 4 at the default stride 32
    with pytest.raises(UserError, match='--output-stride works with timm backbones'):
        compose_stage_config(settings(output_stride=16), [], WORK)
    assert digest(settings(backbone='efficientnet_lite0', frozen_stages=4)) != digest(
        settings(backbone='efficientnet_lite0'))


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


def test_amp_selects_mmengine_amp_wrapper_and_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(UserError, match='--amp needs a GPU'):
        compose_stage_config(settings(amp=True), [], WORK)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = compose_stage_config(settings(amp=True), [], WORK)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert digest(settings(amp=True)) != digest(settings())


def test_the_demo_leaf_config_is_the_readme_demo_stage():
    from mmengine.config import Config
    leaf = Config.fromfile('configs/kt/efficientnet-lite0_kt_demo.py')
    stage = compose_stage_config(settings(
        dataset='demo', data_root='data/kt_demo', backbone='efficientnet_lite0', img_size=128,
        output_stride=16, frozen_stages=5, epochs=3, lr=0.1), [], WORK)
    assert leaf.model.to_dict() == stage.model.to_dict()
    for loader in ('train_dataloader', 'test_dataloader'):
        assert leaf[loader].dataset.pipeline == stage[loader].dataset.pipeline
    assert leaf.optim_wrapper.to_dict() == stage.optim_wrapper.to_dict()
    assert leaf.param_scheduler == stage.param_scheduler
    assert leaf.train_cfg.max_epochs == stage.train_cfg.max_epochs == 3


def test_without_a_validation_split_digests_are_the_previous_versions():
    # The figures of main at 50b5172, before validation splits existed: --val-split none
    # reuses every stage trained then.
    assert digest(settings()) == 'f6ffbe2c952ecc08'
    assert digest(settings(val_split='none')) == 'f6ffbe2c952ecc08'
    cfg = compose_stage_config(settings(), [], WORK)
    assert 'indices' not in cfg.train_dataloader.dataset and 'kt_validation' not in cfg


def test_a_validation_split_is_held_out_of_training_and_in_the_digest(demo_root):
    from ktcli.data.fingerprint import dataset_fingerprint
    data = dataset_fingerprint('demo', demo_root)

    def split(val_split):
        return settings(dataset='demo', data_root=str(demo_root), data_fingerprint=data,
                        val_split=val_split)

    cfg = compose_stage_config(split('1'), [], WORK)
    train, val = cfg.train_dataloader.dataset.indices, cfg.val_dataloader.dataset.indices
    # 20 species of 3 training images: one of each validates, two train.
    assert len(val) == 20 and len(train) == 40 and not set(train) & set(val)
    assert cfg.val_dataloader.dataset.split == 'train'
    assert cfg.val_dataloader.dataset.pipeline == cfg.test_dataloader.dataset.pipeline
    assert cfg.test_dataloader.dataset.split == 'test' and 'indices' not in (
        cfg.test_dataloader.dataset)
    assert cfg.train_cfg.val_interval == 1 and cfg.kt_validation == 'validation'
    digests = {text: digest(split(text)) for text in ('none', '1', '0.5')}
    assert len(set(digests.values())) == 3
    assert digest(split('1')) == digests['1']
    # The split's images are scored under the training split's fingerprint.
    view = validation_view(portable_config(cfg)[0])
    assert split_digest(view) != split_digest(portable_config(cfg)[0])
    with pytest.raises(UserError, match='class round-red-plain-forktail-paleleg has 3 training '
                       'images, too few'):
        compose_stage_config(split('3'), [], WORK)


def test_a_best_epoch_is_in_the_digest_and_best_test_covers_the_test_split(demo_root):
    from ktcli.data.fingerprint import dataset_fingerprint
    data = dataset_fingerprint('demo', demo_root)
    other_test = DataFingerprint('demo', train=data.train, test='3' * 16, images=data.images)

    def rule(checkpoint, val_split='none', fingerprint=data):
        return settings(dataset='demo', data_root=str(demo_root), data_fingerprint=fingerprint,
                        val_split=val_split, checkpoint=checkpoint)

    assert digest(rule('last')) == digest(settings(dataset='demo', data_root=str(demo_root),
                                                   data_fingerprint=data))
    assert digest(rule('best-test')) != digest(rule('last'))
    assert digest(rule('best-test', fingerprint=other_test)) != digest(rule('best-test'))
    assert digest(rule('best-val', '1')) != digest(rule('last', '1'))
    # A best epoch on validation does not depend on the test split.
    assert digest(rule('best-val', '1', other_test)) == digest(rule('best-val', '1'))
    cfg = compose_stage_config(rule('best-test'), [], WORK)
    assert checkpoint_name(cfg) == 'best.pth' and cfg.kt_validation == 'test'
    assert cfg.val_dataloader.to_dict() == cfg.test_dataloader.to_dict()
    assert cfg.val_dataloader.dataset is not cfg.test_dataloader.dataset
    assert [hook['type'] for hook in cfg.custom_hooks] == ['BestCheckpointHook']
    last = compose_stage_config(rule('last', '1'), [], WORK)
    assert checkpoint_name(last) == 'epoch_100.pth' and 'custom_hooks' not in last
    with pytest.raises(UserError, match='^--checkpoint best-val needs a validation split'):
        compose_stage_config(rule('best-val'), [], WORK)
    with pytest.raises(UserError, match='^--checkpoint best-test validates on the test set'):
        compose_stage_config(rule('best-test', '1'), [], WORK)


@pytest.mark.parametrize('field,value', [
    ('val_split', '0'), ('val_split', '1.5'), ('val_split', '-1'), ('val_split', '../test'),
    ('val_split', 'test'), ('val_split', '0.20'), ('val_split', 3), ('val_split', None),
    ('checkpoint', 'best'), ('checkpoint', '/tmp/x.pth'), ('checkpoint', 'epoch_3.pth'),
    ('checkpoint', None)])
def test_a_received_record_with_a_meaningless_split_or_checkpoint_rule_is_refused(field, value):
    from ktcli.stages.records import RecordError, check_settings
    record = settings(data_fingerprint=DATA).to_record()
    assert check_settings(dict(record), 'stage.json: settings')
    with pytest.raises(RecordError, match=f'^stage.json: settings: {field} must be'):
        check_settings(dict(record, **{field: value}), 'stage.json: settings')


def test_a_received_config_with_a_selection_kt_would_not_write_is_refused(demo_root):
    import json

    from ktcli.data.fingerprint import dataset_fingerprint
    from ktcli.stages.config_files import config_problem
    cfg = compose_stage_config(settings(dataset='demo', data_root=str(demo_root),
                                        data_fingerprint=dataset_fingerprint('demo', demo_root),
                                        val_split='1', checkpoint='best-val'), [], WORK)
    data = json.loads(json.dumps(portable_config(cfg)[0].to_dict(), default=str))
    assert config_problem(data) is None
    for key, value, message in (
            ('kt_checkpoint', 'epoch_1.pth', "has kt_checkpoint 'epoch_1.pth', not one of"),
            ('kt_checkpoint', ['best-val'], 'has kt_checkpoint'),
            ('kt_validation', 'train', "has kt_validation 'train', not validation or test"),
            ('val_dataloader', None, 'has a validation split but no val_dataloader.dataset')):
        assert config_problem(dict(data, **{key: value})).startswith(message)
