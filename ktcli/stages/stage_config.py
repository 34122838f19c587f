"""Compose the complete mmengine config of one stage of a kt sequence."""
import dataclasses
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from mmengine.config import Config

from ..data.fingerprint import DataFingerprint
from ..data.specs import dataset_spec
from ..data.validation_split import NONE
from ..errors import UserError
from ..resources import CONFIG_ROOT
from .backbones import backbone_config, configure_backbone
from .portable_config import FINGERPRINT_KEY, portable_pretrained, recorded_fingerprint
from .runner_config import require_gpu
from .validation_config import (BEST_TEST, CHECKPOINT_KEY, LAST, add_validation_split,
                                keep_best_checkpoint)

# The paper: the pretrained backbone learns at a tenth of the new head's rate.
PRETRAINED_BACKBONE_LR_MULT = 0.1
LOG_INTERVAL = 10
# Stage k of the sequence with --seed s is seeded with s * SEEDS_PER_SEQUENCE + k - 1, so
# that sequences with different --seed (the replicates of `kt ablate --seeds`) share no stage.
SEEDS_PER_SEQUENCE = 1000
VIS_BACKENDS = {
    'tensorboard': ('TensorboardVisBackend', 'tensorboard'),
    'wandb': ('WandbVisBackend', 'wandb'),
    'mlflow': ('MLflowVisBackend', 'mlflow'),
    'clearml': ('ClearMLVisBackend', 'clearml'),
    'neptune': ('NeptuneVisBackend', 'neptune'),
    'dvclive': ('DVCLiveVisBackend', 'dvclive'),
    'aim': ('AimVisBackend', 'aim'),
}


@dataclass(frozen=True)
class TrainSettings:
    """Everything a user sets for a sequence, shared by all its stages.

    ``data_root`` is where the data is on this machine (a run-time input, never recorded)
    and ``data_fingerprint`` what it is (recorded, and covered by the digests).
    ``val_split`` is ``--val-split``: ``none`` (the default) or the validation split the
    stages are scored on every epoch (covered by the digests through the training indices);
    ``checkpoint`` the epoch a stage hands on (``last``, the default, leaves digests as
    they were; a best epoch is in the digest).
    """

    dataset: str
    data_root: str = ''
    backbone: str = 'resnet50'
    alpha: float = 0.5
    weighting: str = 'fixed'
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.01
    img_size: Optional[int] = None
    seed: int = 0
    pretrained: str = 'default'
    frozen_stages: Optional[int] = None
    output_stride: Optional[int] = None
    amp: bool = False
    processes: int = 1
    num_classes: Optional[int] = None
    cfg_options: Tuple[Tuple[str, object], ...] = ()
    vis_backends: Tuple[str, ...] = ()
    data_fingerprint: Optional[DataFingerprint] = None
    # Images held out of the training split for validation (ktcli.data.validation_split).
    val_split: str = 'none'
    # Which epoch each stage hands on: last, best-val or best-test (validation_config).
    checkpoint: str = 'last'

    def to_record(self) -> dict:
        """The settings as JSON data (kept in each stage's record): no folder of this
        machine, the data by its fingerprint and a pretrained file by its content."""
        record = dict(vars(self), cfg_options=[list(item) for item in self.cfg_options],
                      vis_backends=list(self.vis_backends),
                      pretrained=portable_pretrained(self.pretrained),
                      data_fingerprint=self.data_fingerprint and self.data_fingerprint.to_record())
        record.pop('data_root')
        return record

    @classmethod
    def from_record(cls, record: dict) -> 'TrainSettings':
        """Settings read back from :meth:`to_record`'s data (unknown keys are refused)."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(record) - known
        if unknown:
            raise UserError(f'unknown training settings {sorted(unknown)}; the work dir was '
                            'written by another kt version')
        fingerprint = record.get('data_fingerprint')
        return cls(**dict(record, cfg_options=tuple(tuple(item) for item in
                                                    record.get('cfg_options', ())),
                          vis_backends=tuple(record.get('vis_backends', ())),
                          data_fingerprint=fingerprint and DataFingerprint.from_record(
                              fingerprint)))

    def backbone_of(self, index: int) -> str:
        """Stage ``index``'s backbone: the index-th of a comma-separated ``backbone``
        (``resnet50,efficientnet_lite0``), the last one repeating."""
        names = [name.strip() for name in self.backbone.split(',') if name.strip()]
        if not names:
            raise UserError('--backbone names no backbone')
        return names[min(index, len(names)) - 1]


@dataclass(frozen=True)
class Teacher:
    """A finished earlier stage: its digest, its config and its checkpoint (a path
    relative to the student's work directory, or absolute)."""

    digest: str
    config: Config
    checkpoint: Path


def compose_stage_config(settings: TrainSettings, teachers: Sequence[Teacher],
                         work_dir: Path, index: int = 1) -> Config:
    """Build the full config of a stage trained against ``teachers``.

    Stage k is seeded with :func:`stage_seed`, so that models of a sequence
    differ in initialisation and data order as independently trained models
    would, and the OR-loss is the only other difference.

    Args:
        settings (TrainSettings): The sequence's settings.
        teachers (Sequence[Teacher]): The stages before this one, in order.
        work_dir (Path): The stage's work directory.
        index (int): The stage's 1-based position. Defaults to 1.

    Returns:
        Config: A config that ``tools/train.py`` runs on its own.
    """
    spec = dataset_spec(settings.dataset)
    backbone = settings.backbone_of(index)
    bases = [backbone_config(backbone),
             CONFIG_ROOT / '_base_' / 'datasets' / spec.base_config,
             CONFIG_ROOT / '_base_' / 'schedules' / 'sgd_cosine_100e.py',
             CONFIG_ROOT / '_base_' / 'default_runtime.py']
    cfg = Config.fromstring(f'_base_ = {[str(path) for path in bases]!r}\n', '.py')

    num_classes = settings.num_classes or spec.num_classes
    cfg.model.head.num_classes = num_classes
    cfg.data_preprocessor.num_classes = num_classes
    for loader in _dataloaders(cfg):
        loader.dataset.data_root = settings.data_root
    if settings.img_size:
        resize_pipelines(cfg, settings.img_size)
    if settings.batch_size % settings.processes:
        raise UserError(f'--batch-size {settings.batch_size} does not split evenly over '
                        f'{settings.processes} processes; pick a multiple')
    cfg.train_dataloader.batch_size = settings.batch_size // settings.processes

    if settings.amp:
        require_gpu('--amp')
        cfg.optim_wrapper.update(type='AmpOptimWrapper', loss_scale='dynamic')
    pretrained = configure_backbone(cfg, backbone, settings.pretrained, settings.frozen_stages,
                                    settings.output_stride)
    cfg.optim_wrapper.optimizer.lr = settings.lr
    cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult = (
        PRETRAINED_BACKBONE_LR_MULT if pretrained else 1.0)
    cfg.train_cfg.max_epochs = settings.epochs
    cfg.train_cfg.val_interval = settings.epochs
    cfg.param_scheduler.T_max = cfg.param_scheduler.end = settings.epochs
    cfg.randomness.seed = stage_seed(settings.seed, index)
    cfg.model.or_loss.loss_weight = settings.alpha
    cfg.model.or_loss.weighting = settings.weighting

    cfg.default_hooks.logger.interval = LOG_INTERVAL
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')] + [
        dict(type=_vis_backend(name)) for name in settings.vis_backends]
    if teachers:
        # Each teacher's model travels inside the student's config, so training
        # reads no other config file.
        cfg.custom_hooks = [dict(
            type='SequentialTeacherHook',
            teachers=[dict(config=dict(model=t.config.model,
                                       data_preprocessor=t.config.get('data_preprocessor')),
                           checkpoint=str(t.checkpoint))
                      for t in teachers])]
    if settings.val_split != NONE:
        add_validation_split(cfg, settings.dataset, settings.data_root, settings.val_split,
                             settings.data_fingerprint and settings.data_fingerprint.train)
    if settings.checkpoint != LAST:
        keep_best_checkpoint(cfg, settings.checkpoint)
    cfg.merge_from_dict(dict(settings.cfg_options))
    if settings.data_fingerprint is not None:
        cfg[FINGERPRINT_KEY] = settings.data_fingerprint.to_record()
    cfg.work_dir = str(work_dir)
    return cfg


def stage_seed(seed: int, index: int) -> int:
    """The random seed of stage ``index`` (1-based) of the sequence with ``seed``.

    ``seed * SEEDS_PER_SEQUENCE + index - 1``: consecutive within a sequence,
    disjoint between sequences of different ``seed`` (up to
    ``SEEDS_PER_SEQUENCE`` stages), so no two seed replicates share a model.
    """
    if seed < 0:
        raise UserError(f'seeds are non-negative integers, got {seed}')
    if not 1 <= index <= SEEDS_PER_SEQUENCE:
        raise UserError(f'a sequence has at most {SEEDS_PER_SEQUENCE} stages, not {index}')
    return seed * SEEDS_PER_SEQUENCE + index - 1


def stage_digest(cfg: Config, teacher_digests: Sequence[str], processes: int = 1) -> str:
    """A digest of everything that determines a stage's trained weights.

    Covers the model (the OR-loss only when there are teachers, so alpha
    does not touch stage 1), input normalisation, the training data (the
    fingerprint of the training split, not its folder) and pipeline, total
    batch size, optimizer, schedule, epochs, seed and how it is applied per
    epoch, and the teachers' own digests; not logging, evaluation or paths
    of outputs.

    Args:
        cfg (Config): The stage's portable config (see
            :mod:`~ktcli.stages.portable_config`).
        teacher_digests (Sequence[str]): The digests of its teachers, in order.
        processes (int): Data-parallel processes (the total batch is
            ``batch_size * processes``). Defaults to 1.

    Returns:
        str: 16 hex digits.
    """
    dataset = cfg.train_dataloader.dataset.to_dict()
    fingerprint = recorded_fingerprint(cfg)
    if fingerprint is not None:
        dataset.pop('data_root', None)
        dataset['fingerprint'] = fingerprint.train
    model = cfg.model.to_dict()
    if not teacher_digests:
        model.pop('or_loss', None)
    train_loader = cfg.train_dataloader
    payload = dict(
        model=model,
        data_preprocessor=cfg.get('data_preprocessor'),
        train_dataset=dataset,
        sampler=train_loader.sampler,
        total_batch_size=train_loader.batch_size * processes,
        optim_wrapper=cfg.optim_wrapper,
        param_scheduler=cfg.param_scheduler,
        max_epochs=cfg.train_cfg.max_epochs,
        randomness=cfg.randomness,
        epoch_seeding=cfg.default_hooks.get('epoch_seed'),
        teachers=list(teacher_digests),
    )
    if cfg.get(CHECKPOINT_KEY, LAST) != LAST:
        # A best epoch is chosen by the val loop's split: its rule and, for best-test, the
        # test split (by fingerprint) decide the weights handed on.
        fingerprint = recorded_fingerprint(cfg)
        payload['checkpoint'] = dict(rule=cfg[CHECKPOINT_KEY], test=(
            fingerprint and fingerprint.test if cfg[CHECKPOINT_KEY] == BEST_TEST else None))
    text = json.dumps(payload, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_cfg_options(options: Sequence[str]) -> Dict[str, object]:
    """Parse ``KEY=VALUE`` strings as mmengine's ``--cfg-options`` does."""
    from mmengine.config import DictAction
    parsed = {}
    for option in options:
        key, sep, value = option.partition('=')
        if not sep or not key:
            raise UserError(f'--cfg-options takes KEY=VALUE, got {option!r}')
        parsed[key] = DictAction._parse_iterable(value)
    return parsed


def _jsonable(value: object) -> object:
    if hasattr(value, 'to_dict'):
        return value.to_dict()
    return str(value)


def _dataloaders(cfg: Config) -> list:
    return [cfg[name] for name in ('train_dataloader', 'val_dataloader', 'test_dataloader')
            if cfg.get(name)]


def resize_pipelines(cfg: Config, img_size: int) -> None:
    """Scale the Resize/crop steps so that the crop is ``img_size`` pixels."""
    for loader in _dataloaders(cfg):
        pipeline = loader.dataset.pipeline
        crop = next(step for step in pipeline if step.type in ('RandomCrop', 'CenterCrop'))
        base = crop.crop_size
        for step in pipeline:
            if step.type == 'Resize':
                step.scale = tuple(round(side * img_size / base) for side in step.scale)
            elif step.type == 'RandomCrop':
                step.padding = max(1, round(step.padding * img_size / base))
                step.crop_size = img_size
            elif step.type == 'CenterCrop':
                step.crop_size = img_size


def _vis_backend(name: str) -> str:
    if name not in VIS_BACKENDS:
        raise UserError(f'unknown --vis-backend {name!r}; choose one of {", ".join(VIS_BACKENDS)}')
    backend, package = VIS_BACKENDS[name]
    if importlib.util.find_spec(package) is None:
        raise UserError(f'--vis-backend {name} needs the {package} package: pip install {package}')
    return backend
