"""``kt distill``: one deployable model that keeps most of the ensemble's accuracy."""
import statistics
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import exit_on_user_error
from .training_options import STAGE_DATA_ROOT, Launcher, finite_non_negative, make_scheduler


def distill(
    work_dir: Path = typer.Argument(..., help='A work dir written by `kt train`.'),
    models: Optional[str] = typer.Option(
        None, help='The stages whose ensemble is distilled, e.g. 1,2,3 (default: all finished '
        'ones).'),
    backbone: Optional[str] = typer.Option(
        None, help="The student's backbone, e.g. efficientnet_lite0 or resnet18_tiny "
        "(default: the first member's)."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs (default: the members')."),
    lr: Optional[float] = typer.Option(None, callback=finite_non_negative,
                                       help="Head learning rate (default: the members')."),
    pretrained: Optional[str] = typer.Option(
        None, help="The student backbone's initialisation, as for kt train (default: the "
        "members')."),
    temperature: float = typer.Option(4.0, callback=finite_non_negative,
                                      help='Softening temperature T of the soft targets.'),
    kd_weight: float = typer.Option(
        0.9, callback=finite_non_negative, help='Share W of the distillation term: loss = '
        '(1 - W) * CE + W * T^2 * KL(ensemble || student).'),
    attention_weight: float = typer.Option(
        0.0, callback=finite_non_negative, help="Weight of the attention term: the student's "
        "attention map against the members' combined map (0: off)."),
    seed: int = typer.Option(0, min=0, help='Random seed (the student uses 1000 * seed + 999).'),
    val_split: Optional[str] = typer.Option(
        None, help="Training images held out for validation, as for kt train (default: the "
        "members' split, so the student never trains on the images they were validated on)."),
    launcher: Launcher = typer.Option(Launcher.none, help='none, pytorch or slurm, as for '
                                      'kt train.'),
    slurm_args: str = typer.Option('', help='sbatch options for --launcher slurm, as for '
                                   'kt train.'),
    verbose: bool = typer.Option(False, '--verbose', '-v', help="Show the stage's full log."),
    data_root: Optional[Path] = STAGE_DATA_ROOT,
) -> None:
    """Train one student on the training split to reproduce the ensemble of the chosen
    stages (their averaged softened probabilities), then score it beside them.

    The student is a stage of the work dir: rerunning reuses it, an interrupted run resumes
    it, and `kt export --models distilled` / `kt predict --models distilled` use it alone.
    """
    console = Console()
    with exit_on_user_error('rerun the same command to resume'):
        started = time.monotonic()
        from ..data.validation_split import parse_val_split
        from ..scoring.ensemble_figures import ensemble_rows
        from ..scoring.test_outputs import cached_test_outputs
        from ..sequencing.sequence import WorkDirSequences
        from ..stages.settings import DistillSettings
        from ..stages.stage_config import compose_student_config, student_settings
        from ..stages.work_dir import members_settings, parse_models, trained_stages

        members = trained_stages(work_dir, parse_models(models))
        options = DistillSettings(backbone, epochs, lr, pretrained, temperature, kd_weight,
                                  attention_weight, seed,
                                  val_split and parse_val_split(val_split).text())
        settings = student_settings(members_settings(work_dir, members, data_root), members,
                                    options)
        cfg = compose_student_config(settings, members, Path(work_dir).resolve(), options)
        scheduler = make_scheduler(launcher, settings.processes,
                                   slurm_args=slurm_args, verbose=verbose, console=console)
        trainer = WorkDirSequences(work_dir, scheduler, console).sequence(settings)
        result = trainer.distil(cfg, [m.digest for m in members])
        if result is None:
            return
        rows = ensemble_rows([cached_test_outputs(m.dir, m.digest, m.config, m.checkpoint,
                                                  trainer.device, data=trainer.data)
                              for m in members],
                             [m.index for m in members], [m.digest for m in members])
        stages = ','.join(str(m.index) for m in members)
        print_student(console, rows, result, f'student of stages {stages} '
                      f'({time.monotonic() - started:.0f} s)')


def print_student(console: Console, rows: list, student, title: str) -> None:
    """The members, their ensemble and the student, the student against the ensemble (95%
    paired interval, McNemar p) and the share of the gap it closes.

    Args:
        console (Console): Where to print.
        rows (list[EnsembleRow]): The members' rows, the last with the whole ensemble.
        student (StageResult): The student's result.
        title (str): The table's title.
    """
    from ..scoring.comparison_text import comparison_text, resolution
    from ..scoring.paired_statistics import compare_paired
    from ..scoring.student_scores import gap_closed
    comparison = compare_paired(student.correct, rows[-1].ensemble_correct, 'student',
                                'ensemble')
    table = Table(title=title, caption=f'Δ: student − ensemble, 95% paired interval, McNemar p; '
                  f'{resolution([comparison], comparison.images)}')
    for column in ('model', 'top-1', 'Δ vs ensemble'):
        table.add_column(column, justify='right')
    for row in rows:
        table.add_row(f'stage {row.index}', f'{row.top1:.2f}', '')
    ensemble_top1 = rows[-1].ensemble_top1
    table.add_row(f'ensemble of {len(rows)}', f'{ensemble_top1:.2f}', '')
    table.add_row('student', f'{student.top1:.2f}', comparison_text(comparison))
    console.print(table)
    mean_single = statistics.mean(row.top1 for row in rows)
    best = max(row.top1 for row in rows)
    for name, single in (('mean member', mean_single), ('best member', best)):
        share = gap_closed(student.top1, single, ensemble_top1)
        # A negative share is a student below the single model it should beat: said in words.
        below = (f': the student is below the {name} itself'
                 if share is not None and share < 0 else '')
        console.print(f'the ensemble is not above the {name} ({single:.2f}): there is no gap '
                      'to close' if share is None else
                      f'the student closes {share:.0f}% of the gap between the {name} '
                      f'({single:.2f}) and the ensemble{below}')
