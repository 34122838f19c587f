"""Plan, train and score the sequences of stages one command trains in a work dir, reusing
finished stages and resuming others."""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Protocol, Sequence, Tuple

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

from ..errors import UserError, first_line
from ..scoring.ensemble_figures import ensemble_rows, topk_hits
from ..scoring.paired_statistics import percent
from ..scoring.test_outputs import cached_test_outputs
from ..stages.config_files import check_config, write_stage_config
from ..stages.manifest import Manifest
from ..stages.planned_stage import PlannedStage, unique_stages
from ..stages.portable_config import portable_config, runtime_config
from ..stages.records import DISTILLED, STAGE_LINK, STUDENT_INDEX, located, stage_paths
from ..stages.settings import Teacher, TrainSettings
from ..stages.stage_config import compose_stage_config, stage_digest
from ..stages.validation_config import VALIDATION_SPLIT, checkpoint_name, has_validation_split
from ..stages.work_dir import StageData


@dataclass
class StageResult:
    """What a finished stage scored, alone and with the stages before it; ``correct`` and
    ``ensemble_correct`` say which test images it (and that ensemble) gets right."""

    index: int
    digest: str
    reused: bool
    top1: float
    ensemble_top1: float
    or_overlap: Optional[float]
    train_seconds: float
    correct: np.ndarray = field(repr=False)
    ensemble_correct: np.ndarray = field(repr=False)
    # The same on the validation split, for stages trained with one (else None).
    validation: Optional['SplitScores'] = None

    def record(self) -> dict:
        """The figures, JSON-ready, with the counts the accuracies come from (and the
        validation split's, for stages trained with one)."""
        record = dict(index=self.index, digest=self.digest, reused=self.reused,
                      images=len(self.correct), top1_correct=int(self.correct.sum()),
                      top1=self.top1, ensemble_top1_correct=int(self.ensemble_correct.sum()),
                      ensemble_top1=self.ensemble_top1, or_overlap=self.or_overlap,
                      train_seconds=self.train_seconds)
        if self.validation is not None:
            record.update(self.validation.record())
        return record


@dataclass
class SplitScores:
    """A stage's top-1 alone and in the ensemble with the stages before it on the
    validation split, and which validation images each gets right."""

    top1: float
    ensemble_top1: float
    correct: np.ndarray = field(repr=False)
    ensemble_correct: np.ndarray = field(repr=False)

    def record(self) -> dict:
        """The figures as ``results.json`` keeps them (``val_`` fields)."""
        return dict(val_images=len(self.correct), val_top1_correct=int(self.correct.sum()),
                    val_top1=self.top1,
                    val_ensemble_top1_correct=int(self.ensemble_correct.sum()),
                    val_ensemble_top1=self.ensemble_top1)


def check_overrides(cfg, overrides) -> None:
    """Build a stage's model and training data, so that ``--cfg-options`` that break
    the config fail before anything trains (no weights are loaded)."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    from registry_plugins import build_model_from_config
    options = ' '.join(f'{key}={value}' for key, value in overrides)
    # Checked before anything is built: building imports the scopes a config names.
    check_config(cfg, f'the config with --cfg-options {options}')
    try:
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        build_model_from_config(cfg)
        DATASETS.build(cfg.train_dataloader.dataset)
    except Exception as error:  # any failure to build means a bad override
        raise UserError(f'--cfg-options {options} break the config: '
                        f'{type(error).__name__}: {first_line(error)}') from None


# A sequence to train: its trainer, its number of stages, whether they are independent.
SequenceSpec = Tuple['SequenceTrainer', int, bool]


class StageScheduler(Protocol):
    """What trains a command's stages: :class:`~ktcli.sequencing.scheduler.LocalScheduler`
    on this machine, :class:`~ktcli.sequencing.slurm.SlurmScheduler` as Slurm jobs."""

    def run(self, manifest: Manifest, stages: Sequence[PlannedStage]) -> bool:
        """Train every stage among ``stages`` that is not done, each after its teachers.

        Args:
            manifest (Manifest): The work dir's manifest, the one
                :class:`WorkDirSequences` owns.
            stages (Sequence[PlannedStage]): The stages, teachers first.

        Returns:
            bool: True: every stage is done; False: some were handed to Slurm.
        """


class WorkDirSequences:
    """The sequences one command trains in one work dir: one manifest, one scheduler.

    Stages live in ``WORK_DIR/stages/<digest>/`` (each an mmengine work
    dir with its config as ``config.json`` and ``config.py`` and its record
    ``stage.json``); ``WORK_DIR/stage_k`` links to the stage that is k-th in
    the sequence last trained. The manifest (``kt_manifest.json``) indexes
    every stage, so a stage whose digest is already done is reused and an
    unfinished one resumes. Every path kept in the work dir is relative to
    it, and its data is recorded by its fingerprint, not its folder, so a
    moved or copied work dir is reused the same way with its data in any
    folder. The scheduler trains what is missing: here, several at a time,
    or as Slurm jobs.

    Args:
        work_dir (Path): The work directory.
        scheduler (StageScheduler): What trains the stages.
        console (Console, optional): Where to print.
    """

    def __init__(self, work_dir: Path, scheduler: StageScheduler,
                 console: Optional[Console] = None) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.scheduler = scheduler
        self.console = console or Console()
        self.manifest = Manifest(self.work_dir)
        self.device = 'cuda' if torch.cuda.is_available() else 'cpu'

    def sequence(self, settings: TrainSettings, name: str = '',
                 command: str = 'train') -> 'SequenceTrainer':
        """A sequence of stages trained with ``settings``.

        Args:
            settings (TrainSettings): The sequence's settings.
            name (str): Prefix of the stages' labels, e.g. ``'seed 1'`` when a
                command trains several sequences. Defaults to ''.
            command (str): The command training it: ``'train'`` makes its
                sequence the work dir's current one (the one ``kt ensemble``,
                ``export`` and ``predict`` use); another command's becomes
                current only where ``kt train`` made none. Defaults to
                ``'train'``.
        """
        return SequenceTrainer(self, settings, name, command)

    def train(self, sequences: Sequence[SequenceSpec],
              dry_run: bool = False) -> Optional[List[List[StageResult]]]:
        """Train the stages of several sequences together, then score each.

        Stages shared by several sequences train once, and the scheduler runs
        every stage once its teachers are done: side by side on this machine,
        or as Slurm jobs.

        Args:
            sequences (list[tuple]): ``(trainer, n, independent)`` per sequence.
            dry_run (bool): Only say which stages are reused and which to train.
                Defaults to False.

        Returns:
            list[list[StageResult]] | None: Each sequence's results; None for a
            dry run, or while Slurm jobs are still to train some stages.
        """
        self.manifest.reload()
        plans = [trainer.plan(n, independent) for trainer, n, independent in sequences]
        stages = [stage for plan in plans for stage in plan]
        distinct = {stage.digest for stage in stages}
        to_train = {digest for digest in distinct if not self.manifest.is_done(digest)}
        self.console.print(f'[bold]{len(distinct)} distinct stage'
                           f'{"s" if len(distinct) > 1 else ""}[/]: '
                           f'{len(distinct) - len(to_train)} reused, {len(to_train)} to train, '
                           f'in {escape(str(self.work_dir))}', soft_wrap=True)
        if dry_run:
            for stage in unique_stages(stages):
                self.console.print(f'stage {stage.label} [dim]{stage.digest}[/]: '
                                   + ('to train' if stage.digest in to_train else 'reused'))
        first = sequences[0][0]
        if first.settings.cfg_options:
            check_overrides(runtime_config(stages[-1].cfg, stages[-1].inputs),
                            first.settings.cfg_options)
        if dry_run or not self.scheduler.run(self.manifest, stages):
            return None
        results = [trainer.score(plan, independent, [s.digest not in to_train for s in plan])
                   for (trainer, _, independent), plan in zip(sequences, plans)]
        chained = [trainer for trainer, _, independent in sequences if not independent]
        if chained and not any(trainer.made_current for trainer in chained):
            self.console.print(f'{self.work_dir} keeps the sequence `kt train` trained there as '
                               'the one kt ensemble, export and predict use; this command\'s '
                               'sequences are in its tables only')
        return results


class SequenceTrainer:
    """Plans and scores stages 1..N of one sequence of a :class:`WorkDirSequences`, and
    distils students from its stages.

    Args:
        owner (WorkDirSequences): The work dir's sequences (manifest, scheduler).
        settings (TrainSettings): The sequence's settings.
        name (str): Prefix of the stages' labels. Defaults to ''.
        command (str): The command training it (see
            :meth:`WorkDirSequences.sequence`). Defaults to ``'train'``.
    """

    def __init__(self, owner: WorkDirSequences, settings: TrainSettings, name: str = '',
                 command: str = 'train') -> None:
        self.owner = owner
        self.work_dir = owner.work_dir
        self.manifest = owner.manifest
        self.console = owner.console
        self.device = owner.device
        self.settings = settings
        self.name = name
        self.command = command
        # Whether the last sequence :meth:`score` scored became the current one.
        self.made_current = False
        self.data = StageData.at(settings.data_root, settings.data_fingerprint)

    def plan(self, n: int, independent: bool = False) -> List[PlannedStage]:
        """Compose the configs and digests of stages 1..n (nothing runs).

        Args:
            n (int): Number of stages.
            independent (bool): Train every stage with cross-entropy only,
                without teachers (the paper's "Base" ensemble). Defaults to
                False.
        """
        stages: List[PlannedStage] = []
        for index in range(1, n + 1):
            # A teacher's checkpoint, relative to the student's directory (a sibling's file).
            teachers = [] if independent else [
                Teacher(s.digest, s.cfg, Path('..') / s.digest / s.checkpoint.name)
                for s in stages]
            cfg = compose_stage_config(self.settings, teachers, self.work_dir, index)
            label = ' '.join(part for part in (
                self.name, 'Base' if independent and index > 1 else '', f'{index}/{n}') if part)
            stages.append(self._placed(cfg, index, [t.digest for t in teachers], label))
        return stages

    def _placed(self, cfg, index: int, teachers: List[str], label: str) -> PlannedStage:
        """A composed stage in its portable form, with its digest and its place in the
        work dir."""
        portable, inputs = portable_config(cfg)
        digest = stage_digest(portable, teachers, self.settings.processes)
        return PlannedStage(index, digest, portable,
                            *located(self.work_dir, stage_paths(digest, checkpoint_name(cfg))),
                            teachers, label, inputs)

    def score(self, stages: List[PlannedStage], independent: bool = False,
              reused: Sequence[bool] = ()) -> List[StageResult]:
        """Score trained stages alone and as growing ensembles; a sequence with teachers
        becomes the work dir's current one (``stage_k`` links, manifest chain) as
        :meth:`Manifest.set_sequence` allows.

        Args:
            stages (list[PlannedStage]): From :meth:`plan`, all done.
            independent (bool): They have no teachers. Defaults to False.
            reused (list[bool], optional): Which were trained before this
                command (default: all).
        """
        self.manifest.reload()
        reused = list(reused) or [True] * len(stages)
        outputs = []
        for stage, was_reused in zip(stages, reused):
            # Written afresh from the settings: kt never runs or trusts a config it finds.
            write_stage_config(stage.cfg, stage.dir)
            if was_reused:
                self.console.print(f'stage {stage.label} [dim]{stage.digest}[/]: reused')
            outputs.append(self._outputs(stage))
        rows = ensemble_rows(outputs, [s.index for s in stages], [s.digest for s in stages])
        validation = self._validation_scores(stages)
        results = []
        for position, (row, was_reused) in enumerate(zip(rows, reused)):
            record = self.manifest.update(row.digest, top1=row.top1,
                                          settings=self.settings.to_record())
            results.append(StageResult(row.index, row.digest, was_reused, row.top1,
                                       row.ensemble_top1, row.or_overlap,
                                       record.get('train_seconds', 0.0), row.correct,
                                       row.ensemble_correct,
                                       validation and validation[position]))
        if not independent:
            self.made_current = self.manifest.set_sequence([s.digest for s in stages],
                                                           self.command)
            if self.made_current:
                for stage in stages:
                    self._link(stage)
        return results

    def _outputs(self, stage: PlannedStage, split: str = 'test') -> dict:
        """A trained stage's outputs on its test (or validation) split, cached in its folder."""
        return cached_test_outputs(stage.dir, stage.digest, stage.config_path, stage.checkpoint,
                                   self.device, data=self.data, split=split)

    def _validation_scores(self, stages: List[PlannedStage]) -> Optional[List[SplitScores]]:
        """Each stage's scores on the validation split, alone and with those before it
        (None for stages trained without one)."""
        if not has_validation_split(stages[0].cfg):
            return None
        outputs = [self._outputs(stage, VALIDATION_SPLIT) for stage in stages]
        rows = ensemble_rows(outputs, [s.index for s in stages], [s.digest for s in stages])
        return [SplitScores(row.top1, row.ensemble_top1, row.correct, row.ensemble_correct)
                for row in rows]

    def distil(self, cfg, members: List[str]) -> Optional[StageResult]:
        """Train (or reuse) a student distilled from the stages ``members`` and score it.

        Args:
            cfg (Config): The student's config (see
                :func:`~ktcli.stages.stage_config.compose_student_config`).
            members (list[str]): The members' digests, in order.

        Returns:
            StageResult | None: The student's result (no ensemble figures);
            None while a Slurm job is still to train it.
        """
        self.manifest.reload()
        stage = self._placed(cfg, STUDENT_INDEX, members, 'student')
        reused = self.manifest.is_done(stage.digest)
        write_stage_config(stage.cfg, stage.dir)
        self.manifest.update(stage.digest, kind=DISTILLED, members=list(members),
                             settings=self.settings.to_record())
        if reused:
            self.console.print(f'student [dim]{stage.digest}[/]: reused')
        if not self.owner.scheduler.run(self.manifest, [stage]):
            return None
        outputs = self._outputs(stage)
        correct = topk_hits(outputs['logits'], outputs['labels'])
        top1 = percent(correct.sum(), len(correct))
        record = self.manifest.update(stage.digest, top1=top1)
        return StageResult(STUDENT_INDEX, stage.digest, reused, top1, top1, None,
                           record.get('train_seconds', 0.0), correct, correct)

    def _link(self, stage: PlannedStage) -> None:
        """Point WORK_DIR/stage_k at the stage's directory."""
        link = self.work_dir / STAGE_LINK.format(stage.index)
        if link.exists() and not link.is_symlink():
            return
        temporary = link.with_name(f'.{link.name}.tmp')
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(os.path.relpath(stage.dir, self.work_dir))
        os.replace(temporary, link)
