"""Attach the earlier stages of a sequence as frozen teachers."""
from pathlib import Path
from typing import Optional, Sequence

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from .checkpoint_loading import resolve_checkpoint
from .input_normalisation import input_normalisation
from .teacher_precision import teacher_precision_name
from .trained_model import load_trained_model


def _num_classes(model: nn.Module) -> Optional[int]:
    return getattr(getattr(model, 'head', None), 'num_classes', None)


@HOOKS.register_module()
class SequentialTeacherHook(Hook):
    """Before training, build, load, freeze and attach the teacher models.

    Each teacher is an earlier model of the sequence, given by the config it
    was trained with and its checkpoint. The hook acts once, in
    ``before_train`` (after a resumed student has been restored): it builds
    each teacher from ``cfg.model``, loads its weights (strictly), checks
    that it predicts the student's number of classes, and hands it to the
    student's ``add_teacher``, which freezes it, keeps it in eval mode and
    feeds it the student's batch in the normalisation the teacher expects
    (its channel order must be the student's). It logs one line per teacher
    and one on how they run (inference mode, the student's
    ``teacher_precision`` on its device, its memory format).

    Args:
        teachers (Sequence[dict]): One ``dict(config=..., checkpoint=...)``
            per teacher, in training order. ``config`` is a config file path
            or a config dict with a ``model`` entry (kt puts the teacher's
            model there, so that training reads no other config);
            ``checkpoint`` is a checkpoint file or a work directory holding
            mmengine's ``last_checkpoint`` record, relative to the student's
            work directory or absolute. Checkpoints are read weights-only
            (see ``registry_plugins.checkpoint_loading``).
    """

    priority = 'VERY_HIGH'

    def __init__(self, teachers: Sequence[dict]) -> None:
        for index, teacher in enumerate(teachers):
            missing = {'config', 'checkpoint'} - set(teacher)
            if missing:
                raise ValueError(f'teacher {index + 1} lacks {sorted(missing)}: '
                                 'give dict(config=..., checkpoint=...)')
        self.teachers = [dict(teacher) for teacher in teachers]
        self._attached = False

    def before_train(self, runner) -> None:
        """Attach every teacher to the (unwrapped) student."""
        if self._attached:
            return
        student = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(student, 'add_teacher'):
            raise TypeError(f'{type(student).__name__} cannot take teachers; '
                            "use model=dict(type='KTClassifier', ...)")
        for index, spec in enumerate(self.teachers, start=1):
            teacher, description = self._build_teacher(spec, Path(runner.work_dir),
                                                       runner.logger)
            if _num_classes(teacher) != _num_classes(student):
                raise ValueError(
                    f'teacher {index} ({description}) predicts {_num_classes(teacher)} '
                    f'classes but the student predicts {_num_classes(student)}; '
                    'teachers must be trained on the same dataset')
            try:
                student.add_teacher(teacher)
            except ValueError as error:
                raise ValueError(f'teacher {index} ({description}): {error}') from None
            num_params = sum(p.numel() for p in teacher.parameters())
            mean, std = input_normalisation(teacher)
            runner.logger.info(
                f'Teacher {index}/{len(self.teachers)}: {description}, '
                f'{type(teacher.backbone).__name__} backbone, '
                f'{num_params / 1e6:.2f}M parameters, frozen, eval mode, input mean '
                f'{[round(v, 3) for v in mean]} std {[round(v, 3) for v in std]}')
        device = next(student.parameters()).device
        runner.logger.info(
            f'Teachers run in inference mode, '
            f'{teacher_precision_name(student.teacher_precision, device)} on {device}, '
            f"{'channels_last' if student.channels_last else 'contiguous'} memory format")
        self._attached = True

    @staticmethod
    def _build_teacher(spec: dict, work_dir: Path, logger) -> tuple:
        config, checkpoint = spec['config'], resolve_checkpoint(work_dir / spec['checkpoint'])
        teacher = load_trained_model(config, checkpoint, logger=logger)
        name = Path(config).name if isinstance(config, (str, Path)) else 'config dict'
        return teacher, f'{name} @ {checkpoint}'
