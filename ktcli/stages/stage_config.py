"""Compose and digest the complete mmengine config of one stage of a sequence, or of a
distilled student."""
import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from mmengine.config import Config

from ..data.specs import dataset_spec
from ..data.validation_split import NONE
from ..devices import require_gpu
from ..errors import UserError
from ..resources import CONFIG_ROOT
from .backbones import backbone_config, configure_backbone
from .config_files import read_stage_config
from .portable_config import (FINGERPRINT_KEY, PRETRAINED_FILE, PRETRAINED_URL, dataloaders,
                              recorded_fingerprint)
from .settings import (SEEDS_PER_SEQUENCE, VIS_BACKENDS, DistillSettings, Teacher, TrainSettings,
                       stage_seed)
from .validation_config import (BEST_TEST, CHECKPOINT_KEY, LAST, add_validation_split,
                                keep_best_checkpoint)

if TYPE_CHECKING:
    from .work_dir import TrainedStage

# The paper: the pretrained backbone learns at a tenth of the new head's rate.
PRETRAINED_BACKBONE_LR_MULT = 0.1
LOG_INTERVAL = 10


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
    for loader in dataloaders(cfg):
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


def _jsonable(value: object) -> object:
    if hasattr(value, 'to_dict'):
        return value.to_dict()
    return str(value)


def resize_pipelines(cfg: Config, img_size: int) -> None:
    """Scale the Resize/crop steps so that the crop is ``img_size`` pixels."""
    for loader in dataloaders(cfg):
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


def student_settings(settings: TrainSettings, members: Sequence['TrainedStage'],
                     distill: DistillSettings) -> TrainSettings:
    """The training settings of a student: the members' data, pipeline, schedule and batch,
    with the student's backbone (the first member's by default), epochs, lr, initialisation,
    seed and validation split (the members' by default). The members' ``--cfg-options`` and
    ``--vis-backend`` are not applied: they were a command line of whoever trained them, and
    kt acts on this command's options only.

    Args:
        settings (TrainSettings): The members' settings.
        members (Sequence[TrainedStage]): The stages whose ensemble is distilled.
        distill (DistillSettings): What ``kt distill`` sets.
    """
    return dataclasses.replace(
        settings, backbone=distill.backbone or settings.backbone_of(members[0].index),
        epochs=distill.epochs or settings.epochs,
        lr=settings.lr if distill.lr is None else distill.lr,
        pretrained=distill.pretrained or settings.pretrained, seed=distill.seed,
        val_split=distill.val_split or settings.val_split, cfg_options=(), vis_backends=())


def compose_student_config(student: TrainSettings, members: Sequence['TrainedStage'],
                           work_dir: Path, distill: DistillSettings) -> Config:
    """The full config of a student distilled from ``members``.

    The student's settings (:func:`student_settings`); model ``KTDistiller``
    with cross-entropy weighted ``1 - kd_weight`` and
    :class:`~registry_plugins.distillation_loss.EnsembleDistillationLoss`;
    the members as teachers; seed ``1000 * seed + 999`` (never a member's).

    Args:
        student (TrainSettings): The student's settings.
        members (Sequence[TrainedStage]): The stages whose ensemble is distilled.
        work_dir (Path): The work directory.
        distill (DistillSettings): What ``kt distill`` sets.

    Returns:
        Config: A config that ``tools/train.py`` runs on its own.
    """
    if not 0.0 <= distill.kd_weight <= 1.0:
        raise UserError(f'--kd-weight is the share of the distillation term, between 0 and 1; '
                        f'got {distill.kd_weight}')
    if distill.temperature <= 0:
        raise UserError(f'--temperature must be positive, got {distill.temperature}')
    if student.pretrained.startswith((PRETRAINED_FILE, PRETRAINED_URL)):
        raise UserError(f'the members started from a --pretrained file or URL '
                        f'({student.pretrained}); pass it to kt distill with --pretrained, or '
                        '--pretrained default or none')
    teachers = [Teacher(m.digest, read_stage_config(m.config), Path('..') / m.digest /
                        m.checkpoint.name) for m in members]
    cfg = compose_stage_config(student, teachers, work_dir, index=1)
    cfg.randomness.seed = stage_seed(distill.seed, SEEDS_PER_SEQUENCE)
    cfg.model.type = 'KTDistiller'
    cfg.model.pop('or_loss', None)
    cfg.model.distill_loss = dict(type='EnsembleDistillationLoss',
                                  temperature=distill.temperature,
                                  loss_weight=distill.kd_weight,
                                  attention_weight=distill.attention_weight)
    cfg.model.head.loss.loss_weight = 1.0 - distill.kd_weight
    return cfg
