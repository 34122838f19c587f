"""``kt train``: the whole sequence of N models in one command."""
import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ktbase.writing import write_atomically

from ..errors import exit_on_user_error
from .training_options import (SEQUENCE_PANEL, TrainingOptions, finite_non_negative,
                               with_training_options)


@with_training_options
def train(
    options: TrainingOptions,
    n: int = typer.Option(5, min=1, help='Number of models in the sequence.',
                          rich_help_panel=SEQUENCE_PANEL),
    alpha: float = typer.Option(0.5, callback=finite_non_negative, help='Weight of the OR-loss.',
                                rich_help_panel=SEQUENCE_PANEL),
    seed: int = typer.Option(0, min=0, help='Random seed of the sequence (model k uses '
                             '1000 * seed + k - 1).', rich_help_panel=SEQUENCE_PANEL),
) -> None:
    """Train model 1 with cross-entropy, then models 2..N with the OR-loss against all
    earlier ones; report each model's and the ensemble's top-1.

    Finished stages are reused (same settings, same teachers) and an interrupted stage
    resumes from its last checkpoint: rerun the same command.
    """
    console = Console()
    with exit_on_user_error('rerun the same command to resume'):
        started = time.monotonic()
        settings = options.settings(options.prepared_data_root(console), alpha, seed)
        sequences = options.sequences(options.default_work_dir(), console)
        trainer = sequences.sequence(settings)
        trained = sequences.train([(trainer, n, False)], options.dry_run)
        if trained is None:
            return
        results = trained[0]
        from ..stages.validation_config import checkpoint_note
        print_results(console, results, f'{options.backbone} on {options.spec().title}, '
                      f'alpha {alpha} ({options.weighting.value}), {options.epochs} '
                      f'epoch{"s" if options.epochs != 1 else ""}'
                      f'{checkpoint_note(settings.checkpoint)}')
        written = write_results(trainer.work_dir, settings, results)
        console.print(f'results: {written} ({time.monotonic() - started:.0f} s)')


def print_results(console: Console, results: list, title: str) -> None:
    """The per-stage table: single and ensemble top-1 (on the validation split too, for
    stages trained with one), training time."""
    validated = results[0].validation is not None
    table = Table(title=title)
    columns = ['stage', 'top-1 (single)', 'top-1 (ensemble 1..k)']
    if validated:
        columns = ['stage', 'val top-1 (single)', 'val top-1 (ensemble 1..k)',
                   'test top-1 (single)', 'test top-1 (ensemble 1..k)']
    for column in columns + ['training time']:
        table.add_column(column, justify='right')
    for result in results:
        minutes, seconds = divmod(round(result.train_seconds), 60)
        figures = [result.top1, result.ensemble_top1]
        if validated:
            figures = [result.validation.top1, result.validation.ensemble_top1] + figures
        table.add_row(f'{result.index}', *[f'{figure:.2f}' for figure in figures],
                      f'{minutes}:{seconds:02d}' + (' (reused)' if result.reused else ''))
    console.print(table)


def write_results(work_dir: Path, settings, results: list) -> Path:
    """Write results.json: the settings exactly as each stage's record holds them (no
    folder of this machine), per stage the figures of the table, and a best-epoch
    checkpoint rule with its label; its path. The manifest keeps no figures: this file and
    ``ablate_*.json`` are where a command's results live."""
    from ..stages.records import RESULTS_NAME
    from ..stages.validation_config import LAST, checkpoint_label
    data = dict(settings=settings.to_record(), stages=[result.record() for result in results])
    if settings.checkpoint != LAST:
        data['checkpoint'] = dict(rule=settings.checkpoint,
                                  label=checkpoint_label(settings.checkpoint))
    write_atomically(work_dir / RESULTS_NAME, json.dumps(data, indent=2, default=str))
    return work_dir / RESULTS_NAME
