"""Train a sequence of stages, reusing finished ones and resuming unfinished ones."""
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from ..errors import UserError, first_line
from ..reports.ensemble_figures import ensemble_rows, topk_accuracy
from ..reports.test_outputs import cached_test_outputs
from .launcher import TrainProgress, failure_reason, run_stage, train_command, was_interrupted
from .manifest import STAGE_LINK, STAGES_DIR, Manifest
from .stage_config import Teacher, TrainSettings, compose_stage_config, stage_digest
from .stage_files import CONFIG_DATA, write_stage_config
from .work_dir import DISTILLED, STUDENT_INDEX


@dataclass
class PlannedStage:
    """One stage of a sequence: its config, identity and where it lives."""

    index: int
    digest: str
    cfg: object
    dir: Path
    config_path: Path
    checkpoint: Path


@dataclass
class StageResult:
    """What a finished stage scored, alone and with the stages before it."""

    index: int
    digest: str
    reused: bool
    top1: float
    ensemble_top1: float
    or_overlap: Optional[float]
    train_seconds: float


def check_overrides(cfg, overrides) -> None:
    """Build a stage's model and training data, so that ``--cfg-options`` that break
    the config fail before anything trains (no weights are loaded)."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    from registry_plugins import build_model_from_config
    try:
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        build_model_from_config(cfg)
        DATASETS.build(cfg.train_dataloader.dataset)
    except Exception as error:  # any failure to build means a bad override
        options = ' '.join(f'{key}={value}' for key, value in overrides)
        raise UserError(f'--cfg-options {options} break the config: '
                        f'{type(error).__name__}: {first_line(error)}') from None


class SequenceTrainer:
    """Trains stages 1..N of one sequence in a work directory.

    Stages live in ``WORK_DIR/stages/<digest>/`` (each an mmengine work
    dir with its config as ``config.json`` and ``config.py`` and its record
    ``stage.json``); ``WORK_DIR/stage_k`` links to the stage that is k-th in
    the sequence last trained. The manifest (``kt_manifest.json``) indexes
    every stage, so a stage whose digest is already done is reused and an
    unfinished one resumes. Every path kept in the work dir is relative to
    it, so a moved or copied work dir is reused the same way.

    Args:
        work_dir (Path): The sequence's work directory.
        settings (TrainSettings): The sequence's settings.
        launcher (str): ``'none'``, ``'pytorch'`` or ``'slurm'``.
        srun_args (str): Extra srun options for ``launcher='slurm'``.
        verbose (bool): Show the stages' full logs live.
        console (Console, optional): Where to print.
    """

    def __init__(self, work_dir: Path, settings: TrainSettings, launcher: str = 'none',
                 srun_args: str = '', verbose: bool = False,
                 console: Optional[Console] = None) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.settings = settings
        self.launcher = launcher
        self.srun_args = srun_args
        self.verbose = verbose
        self.console = console or Console()
        self.manifest = Manifest(self.work_dir)
        self.device = 'cuda' if torch.cuda.is_available() else 'cpu'

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
            stages.append(self._placed(cfg, index, [t.digest for t in teachers]))
        return stages

    def _placed(self, cfg, index: int, teacher_digests: List[str]) -> PlannedStage:
        """A composed stage with its digest and its place in the work dir."""
        digest = stage_digest(cfg, teacher_digests, self.settings.processes)
        stage_dir = self.work_dir / STAGES_DIR / digest
        cfg.work_dir = str(stage_dir)
        checkpoint = stage_dir / f'epoch_{cfg.train_cfg.max_epochs}.pth'
        return PlannedStage(index, digest, cfg, stage_dir, stage_dir / CONFIG_DATA, checkpoint)

    def count_to_train(self, stages: List[PlannedStage]) -> int:
        """How many distinct stages among ``stages`` are not trained yet."""
        return len({s.digest for s in stages if not self.manifest.is_done(s.digest)})

    def train(self, n: int, independent: bool = False) -> List[StageResult]:
        """Train (or reuse) stages 1..n and score each alone and as an ensemble.

        Args:
            n (int): Number of stages.
            independent (bool): No teachers (see :meth:`plan`). Defaults to
                False.
        """
        # Another trainer may have recorded stages in this work dir since.
        self.manifest = Manifest(self.work_dir)
        stages = self.plan(n, independent)
        to_train = self.count_to_train(stages)
        if self.settings.cfg_options:
            check_overrides(stages[-1].cfg, self.settings.cfg_options)
        self.console.print(
            f'[bold]{n} stage{"s" if n > 1 else ""}[/]: {n - to_train} reused, '
            f'{to_train} to train, in {self.work_dir}')
        if not independent:
            self.manifest.chain = [s.digest for s in stages]
            self.manifest.save()
        reused, outputs = [], []
        for stage in stages:
            reused.append(self.manifest.is_done(stage.digest))
            # Written afresh from the settings: kt never runs or trusts a config it finds.
            write_stage_config(stage.cfg, stage.dir)
            if reused[-1]:
                self.console.print(f'stage {stage.index}/{n} [dim]{stage.digest}[/]: reused')
            else:
                self._train_stage(stage, f'{stage.index}/{n}')
            if not independent:
                self._link(stage)
            outputs.append(cached_test_outputs(stage.dir, stage.digest, stage.config_path,
                                               stage.checkpoint, self.device))
        rows = ensemble_rows(outputs, [s.index for s in stages], [s.digest for s in stages])
        results = []
        for row, was_reused in zip(rows, reused):
            record = self.manifest.update(row.digest, top1=row.top1,
                                          settings=self.settings.to_record())
            results.append(StageResult(row.index, row.digest, was_reused, row.top1,
                                       row.ensemble_top1, row.or_overlap,
                                       record.get('train_seconds', 0.0)))
        self.manifest.results = [vars(result) for result in results]
        self.manifest.save()
        return results

    def distil(self, cfg, members: List[str]) -> StageResult:
        """Train (or reuse) a student distilled from the stages ``members`` and score it.

        Args:
            cfg (Config): The student's config (see
                :func:`~ktcli.stages.distillation.compose_student_config`).
            members (list[str]): The members' digests, in order.

        Returns:
            StageResult: The student's result (no ensemble figures).
        """
        self.manifest = Manifest(self.work_dir)
        stage = self._placed(cfg, STUDENT_INDEX, members)
        reused = self.manifest.is_done(stage.digest)
        write_stage_config(stage.cfg, stage.dir)
        self.manifest.update(stage.digest, kind=DISTILLED, members=list(members),
                             settings=self.settings.to_record())
        if reused:
            self.console.print(f'student [dim]{stage.digest}[/]: reused')
        else:
            self._train_stage(stage, 'student')
        outputs = cached_test_outputs(stage.dir, stage.digest, stage.config_path,
                                      stage.checkpoint, self.device)
        top1 = topk_accuracy(outputs['logits'], outputs['labels'])
        record = self.manifest.update(stage.digest, top1=top1)
        return StageResult(STUDENT_INDEX, stage.digest, reused, top1, top1, None,
                           record.get('train_seconds', 0.0))

    def _train_stage(self, stage: PlannedStage, label: str) -> None:
        # Time spent in earlier, interrupted sessions of this stage.
        earlier_seconds = (self.manifest.stage(stage.digest) or {}).get('train_seconds', 0.0)
        self.manifest.update(
            stage.digest, index=stage.index, status='running',
            dir=os.path.relpath(stage.dir, self.work_dir),
            config=os.path.relpath(stage.config_path, self.work_dir),
            checkpoint=os.path.relpath(stage.checkpoint, self.work_dir),
            train_seconds=earlier_seconds)
        command = train_command(stage.config_path, stage.dir, self.settings.processes,
                                self.launcher, self.srun_args)
        epochs = stage.cfg.train_cfg.max_epochs
        started = time.monotonic()

        def save_time() -> None:
            self.manifest.update(stage.digest,
                                 train_seconds=earlier_seconds + time.monotonic() - started)

        with self._progress() as progress:
            task = progress.add_task('', total=None, stage=label,
                                     status='starting', losses='')

            def show(update: TrainProgress) -> None:
                total = epochs * update.iters_per_epoch
                done = (update.epoch - 1) * update.iters_per_epoch + update.iter
                losses = f'loss_ce {update.loss_ce:.4f}'
                if update.loss_or is not None:
                    losses += f'  loss_or {update.loss_or:.4f}'
                progress.update(task, total=total, completed=done, losses=losses,
                                status=f'epoch {update.epoch}/{epochs} '
                                f'iter {update.iter}/{update.iters_per_epoch} ETA {update.eta}')
                # Saved with every log line, so a killed kt loses little of it.
                save_time()

            on_line = (lambda line: progress.console.print(line, markup=False, highlight=False)
                       ) if self.verbose else None
            try:
                code, tail = run_stage(command, show, on_line)
            finally:
                save_time()
        if was_interrupted(code):
            raise UserError(f'stage {label} was interrupted (exit code {code}); rerun the '
                            'same command to resume it from its last finished epoch')
        if code != 0 or not stage.checkpoint.is_file():
            self.manifest.update(stage.digest, status='failed')
            raise UserError(f'stage {label} failed: {failure_reason(tail)} '
                            f'(exit code {code}; logs in {stage.dir})')
        self.manifest.update(stage.digest, status='done')
        self.console.print(f'stage {label} [dim]{stage.digest}[/]: trained')

    def _progress(self) -> Progress:
        return Progress(SpinnerColumn(), TextColumn('[bold]stage {task.fields[stage]}'),
                        BarColumn(), TextColumn('{task.fields[status]}'),
                        TextColumn('{task.fields[losses]}'), console=self.console,
                        transient=True)

    def _link(self, stage: PlannedStage) -> None:
        """Point WORK_DIR/stage_k at the stage's directory."""
        link = self.work_dir / STAGE_LINK.format(stage.index)
        if link.exists() and not link.is_symlink():
            return
        temporary = link.with_name(f'.{link.name}.tmp')
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(os.path.relpath(stage.dir, self.work_dir))
        os.replace(temporary, link)
