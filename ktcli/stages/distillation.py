"""The distilled student of a work dir's ensemble: its config, digest and record.

A student is one more stage of the work dir (``stages/<digest>/``, same
manifest, reuse and resume), trained by :class:`registry_plugins.KTDistiller`
against the chosen finished stages as frozen teachers. Its record carries
``kind='distilled'`` and the digests of its members.
"""
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from mmengine.config import Config

from ..data.data_folders import locate_data
from ..errors import UserError
from .manifest import Manifest
from .records import record_paths
from .portable_config import PRETRAINED_FILE, PRETRAINED_URL
from .stage_config import (SEEDS_PER_SEQUENCE, Teacher, TrainSettings, compose_stage_config,
                           stage_seed)
from .stage_files import read_stage_config
from .work_dir import DISTILLED, STUDENT_INDEX, TrainedStage



@dataclass(frozen=True)
class DistilledStudent(TrainedStage):
    """A finished student, with the digests of the stages it was distilled from and the
    name of its backbone (``--backbone``, e.g. ``resnet18_tiny``)."""

    members: Tuple[str, ...] = ()
    backbone: str = ''


@dataclass(frozen=True)
class DistillSettings:
    """What ``kt distill`` sets; None keeps the members' value."""

    backbone: Optional[str] = None
    epochs: Optional[int] = None
    lr: Optional[float] = None
    pretrained: Optional[str] = None
    temperature: float = 4.0
    kd_weight: float = 0.9
    attention_weight: float = 0.0
    seed: int = 0
    val_split: Optional[str] = None


def members_settings(manifest: Manifest, members: Sequence[TrainedStage],
                     data_root: Optional[Path] = None) -> TrainSettings:
    """The training settings the members were trained with (from their records), with the
    folder of this machine that holds their data.

    Args:
        manifest (Manifest): The work dir's manifest.
        members (Sequence[TrainedStage]): The stages to distil.
        data_root (Path, optional): ``--data-root``; it must hold their data.
            Defaults to None (find a folder that does).

    Raises:
        UserError: The members were recorded by an older kt, or their data
            is not at hand.
    """
    record = manifest.stage(members[0].digest) or {}
    settings = record.get('settings', {})
    if not settings.get('data_fingerprint'):
        raise UserError(f'stage {members[0].index} of {manifest.work_dir} was recorded by an '
                        'older kt; train again in a new work dir')
    settings = TrainSettings.from_record(settings)
    root = locate_data(settings.data_fingerprint, data_root)
    return dataclasses.replace(settings, data_root=str(root))


def student_settings(settings: TrainSettings, members: Sequence[TrainedStage],
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


def compose_student_config(student: TrainSettings, members: Sequence[TrainedStage],
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


def distilled_students(work_dir: Path) -> List[DistilledStudent]:
    """The finished students of ``work_dir``, the newest last.

    Args:
        work_dir (Path): A work dir.

    Returns:
        list[DistilledStudent]: The students (stage index ``STUDENT_INDEX``).
    """
    manifest = Manifest(work_dir)
    records = sorted((r for r in manifest.stages.values()
                      if r.get('kind') == DISTILLED and manifest.is_done(r['digest'])),
                     key=lambda record: record.get('updated', ''))
    students = []
    for record in records:
        paths = record_paths(record['digest'], record)
        students.append(DistilledStudent(
            STUDENT_INDEX, record['digest'], *(Path(work_dir) / paths[name]
                                               for name in ('dir', 'config', 'checkpoint')),
            tuple(record.get('members', ())), record.get('settings', {}).get('backbone', '')))
    return students
