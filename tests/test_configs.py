"""Every shipped config loads, builds its model and states the paper's recipe."""
import pytest
import torch
from mmengine.config import Config

from registry_plugins import build_model_from_config

from .conftest import REPO

LEAF_CONFIGS = sorted((REPO / 'configs' / 'kt').glob('*.py'))
NUM_CLASSES = {'cub': 200, 'car': 196, 'air': 100, 'demo': 20}
DATASET_TYPES = {'cub': 'CUB', 'car': 'StanfordCars', 'air': 'FGVCAircraft',
                 'demo': 'CUB', 'custom': 'CustomDataset'}
PAPER_CONFIGS = [path for path in LEAF_CONFIGS if path.stem.split('_')[0].startswith(
    ('resnet50', 'vgg16bn'))]


def dataset_of(path) -> str:
    return path.stem.split('_')[2]


def test_every_dataset_and_backbone_has_a_leaf_config():
    names = {path.name for path in LEAF_CONFIGS}
    for backbone in ('resnet50', 'vgg16bn'):
        for dataset in ('cub', 'car', 'air'):
            assert f'{backbone}_kt_{dataset}.py' in names


@pytest.mark.parametrize('path', LEAF_CONFIGS, ids=lambda p: p.stem)
def test_leaf_config_builds_a_model_that_runs(path):
    cfg = Config.fromfile(str(path))
    dataset = dataset_of(path)
    assert cfg.model.type == 'KTClassifier'
    assert cfg.train_dataloader.dataset.type == DATASET_TYPES[dataset]
    if dataset in NUM_CLASSES:
        assert cfg.model.head.num_classes == NUM_CLASSES[dataset]
        assert cfg.data_preprocessor.num_classes == NUM_CLASSES[dataset]
    model = build_model_from_config(cfg).eval()  # no init_weights: nothing is downloaded
    inputs = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        scores = model(inputs, mode='tensor')
        attention = model.attention_map(inputs)
    assert scores.shape == (1, cfg.model.head.num_classes)
    assert attention.dim() == 3 and torch.isfinite(attention).all()


@pytest.mark.parametrize('path', PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_configs_follow_the_paper_recipe(path):
    cfg = Config.fromfile(str(path))
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum, optimizer.weight_decay) == (
        'SGD', 0.01, 0.9, 5e-4)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['backbone'].lr_mult == 0.1
    assert cfg.param_scheduler.type == 'CosineAnnealingLR' and cfg.param_scheduler.by_epoch
    assert cfg.param_scheduler.T_max == cfg.train_cfg.max_epochs == 100
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.model.or_loss == dict(type='OrthogonalLoss', loss_weight=0.5, weighting='fixed')
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    train_steps = [step.type for step in cfg.train_dataloader.dataset.pipeline]
    assert train_steps == ['LoadImageFromFile', 'Resize', 'RandomCrop', 'RandomFlip', 'PackInputs']
    resize, crop = cfg.train_dataloader.dataset.pipeline[1:3]
    assert resize.scale == (600, 600) and (crop.crop_size, crop.padding) == (448, 8)
    test_crop = cfg.test_dataloader.dataset.pipeline[2]
    assert (test_crop.type, test_crop.crop_size) == ('CenterCrop', 448)


@pytest.mark.parametrize('path', LEAF_CONFIGS, ids=lambda p: p.stem)
def test_evaluation_scores_everything_and_keeps_the_last_checkpoint(path):
    cfg = Config.fromfile(str(path))
    assert not cfg.test_dataloader.get('drop_last', False)
    assert not cfg.test_dataloader.sampler.shuffle
    dataset = cfg.test_dataloader.dataset
    assert dataset.get('split', dataset.get('data_prefix')) == 'test'
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.save_last and checkpoint.get('save_best') is None


MODEL_CONFIGS = sorted((REPO / 'configs' / '_base_' / 'models').glob('*_kt.py'))


@pytest.mark.parametrize('path', MODEL_CONFIGS, ids=lambda p: p.stem)
def test_pretrained_backbones_carry_the_normalisation_of_their_weights(path):
    model = Config.fromfile(str(path)).model
    init_cfg = model.backbone.get('init_cfg') or {}
    if init_cfg.get('type') == 'Pretrained':
        preprocessor = model.data_preprocessor
        assert len(preprocessor.mean) == len(preprocessor.std) == 3 and preprocessor.to_rgb
    else:
        # From scratch (or filled in by kt for timm/<name>): the dataset config decides.
        assert 'data_preprocessor' not in model
