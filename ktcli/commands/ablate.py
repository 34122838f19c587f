"""``kt ablate alpha`` and ``kt ablate n``: the paper's Tables 2 and 3 from one command each."""
import json
import math
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserError, exit_on_user_error
from .training_options import TrainingOptions, finite_non_negative, with_training_options

ablate_app = typer.Typer(help="The paper's ablations: alpha (Table 2) and N (Table 3).",
                         no_args_is_help=True)


def parse_numbers(text: str, kind: type, name: str) -> list:
    """Parse ``'0,0.5,1'`` into numbers of ``kind``."""
    try:
        values = [kind(part) for part in text.split(',') if part.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(value) for value in values):
        raise UserError(f'{name} takes comma-separated finite numbers, got {text!r}')
    return values


def mean_std(values: Sequence[float]) -> tuple:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def cell(values: Sequence[float]) -> str:
    """``mean ± std`` over seeds, or the value for one seed."""
    mean, std = mean_std(values)
    return f'{mean:.2f} ± {std:.2f}' if len(values) > 1 else f'{mean:.2f}'


@ablate_app.command('alpha')
@with_training_options
def ablate_alpha(
    options: TrainingOptions,
    values: str = typer.Option('0,0.05,0.1,0.5,1,5', help='The alpha values (Table 2).'),
    n: int = typer.Option(2, min=2, help='Models per sequence.'),
    seeds: str = typer.Option('0', help='Repeat over these seeds; cells show mean ± std.'),
) -> None:
    """Ensemble top-1 of an N-model sequence for each alpha; stage 1 is shared by all."""
    console = Console()
    with exit_on_user_error('rerun the same command to resume'):
        started = time.monotonic()
        alphas = parse_numbers(values, float, '--values')
        seed_list = parse_numbers(seeds, int, '--seeds')
        root = options.prepared_data_root(console)
        work_dir = options.default_work_dir('ablate_')
        runs = [(alpha, options.trainer(work_dir, options.settings(root, alpha, seed), console,
                                        run_name(alpha=alpha if len(alphas) > 1 else None,
                                                 seed=seed if len(seed_list) > 1 else None),
                                        'ablate'))
                for alpha in alphas for seed in seed_list]
        from ..stages.sequence import train_sequences
        trained = train_sequences([(trainer, n, False) for _, trainer in runs], console,
                                  options.dry_run)
        if trained is None:
            return
        figures: Dict[float, Dict[str, List[float]]] = {
            alpha: dict(ensemble=[], last_single=[], or_overlap=[]) for alpha in alphas}
        for (alpha, _), results in zip(runs, trained):
            last = results[-1]
            figures[alpha]['ensemble'].append(last.ensemble_top1)
            figures[alpha]['last_single'].append(last.top1)
            figures[alpha]['or_overlap'].append(last.or_overlap)

        table = Table(title=f'Ensemble top-1 of {n} models vs alpha ({options.backbone}, '
                      f'{options.spec().title}, {options.weighting.value} weighting, '
                      f'seeds {seeds})')
        table.add_column('alpha', justify='right')
        for alpha in alphas:
            table.add_column(f'{alpha:g}', justify='right')
        for label, key in (('Ensemble top-1', 'ensemble'), (f'Model {n} top-1', 'last_single'),
                           (f'Model {n} OR overlap', 'or_overlap')):
            table.add_row(label, *[cell(figures[alpha][key]) for alpha in alphas])
        console.print(table)

        from ..reports.ablation_plots import plot_curves
        trainer_dir = runs[0][1].work_dir
        write_json(trainer_dir / 'ablate_alpha.json', dict(n=n, seeds=seed_list, alphas=alphas,
                                                           figures=figures))
        plot_curves(trainer_dir / 'ablate_alpha.png', alphas,
                    {'ensemble': [mean_std(figures[a]['ensemble'])[0] for a in alphas]},
                    {'ensemble': [mean_std(figures[a]['ensemble'])[1] for a in alphas]},
                    'alpha', f'{n}-model ensemble vs alpha', symlog=True)
        console.print(f'written: {trainer_dir / "ablate_alpha.json"}, '
                      f'{trainer_dir / "ablate_alpha.png"} ({time.monotonic() - started:.0f} s)')


@ablate_app.command('n')
@with_training_options
def ablate_n(
    options: TrainingOptions,
    max_n: int = typer.Option(6, min=1, help='Largest number of models (Table 3: 6).'),
    alpha: float = typer.Option(0.5, callback=finite_non_negative,
                                help='Weight of the OR-loss for "Ours".'),
    seeds: str = typer.Option('0', help='Repeat over these seeds; cells show mean ± std.'),
) -> None:
    """Single and ensemble top-1 for N = 1..max, for models trained independently
    ("Base": cross-entropy only, seeded like the stages of a sequence) and for one
    OR-loss sequence ("Ours"). Every N comes from prefixes of the two runs, and they
    share model 1."""
    console = Console()
    with exit_on_user_error('rerun the same command to resume'):
        started = time.monotonic()
        seed_list = parse_numbers(seeds, int, '--seeds')
        root = options.prepared_data_root(console)
        work_dir = options.default_work_dir('ablate_')
        runs = [options.trainer(work_dir, options.settings(root, alpha, seed), console,
                                run_name(seed=seed if len(seed_list) > 1 else None), 'ablate')
                for seed in seed_list]
        # Ours first: the stage 1 both share is labelled as the chain's.
        sequences = [(trainer, max_n, independent) for trainer in runs
                     for independent in (False, True)]
        from ..stages.sequence import train_sequences
        trained = train_sequences(sequences, console, options.dry_run)
        if trained is None:
            return
        rows = {label: [[] for _ in range(max_n)] for label in (
            'Single (Base)', 'Ensemble (Base)', 'Single (Ours)', 'Ensemble (Ours)')}
        overlaps = dict(base=[], ours=[])
        for (_, _, independent), results in zip(sequences, trained):
            name = 'Base' if independent else 'Ours'
            for position, result in enumerate(results):
                rows[f'Single ({name})'][position].append(result.top1)
                rows[f'Ensemble ({name})'][position].append(result.ensemble_top1)
            overlaps[name.lower()] += [r.or_overlap for r in results[1:]]

        table = Table(title=f'Single and ensemble top-1 vs N ({options.backbone}, '
                      f'{options.spec().title}, alpha {alpha:g}, seeds {seeds})')
        table.add_column('N', justify='left')
        for size in range(1, max_n + 1):
            table.add_column(str(size), justify='right')
        for label, per_n in rows.items():
            table.add_row(label, *[cell(values) for values in per_n])
        console.print(table)
        if max_n > 1:
            console.print('mean OR overlap of models 2..N with the models before them: '
                          f'Base {statistics.mean(overlaps["base"]):.4f}, '
                          f'Ours {statistics.mean(overlaps["ours"]):.4f}')

        from ..reports.ablation_plots import plot_curves
        trainer_dir = runs[0].work_dir
        write_json(trainer_dir / 'ablate_n.json', dict(alpha=alpha, seeds=seed_list,
                                                       rows=rows, or_overlap=overlaps))
        sizes = list(range(1, max_n + 1))
        plot_curves(trainer_dir / 'ablate_n.png', sizes,
                    {label: [mean_std(v)[0] for v in per_n] for label, per_n in rows.items()},
                    {label: [mean_std(v)[1] for v in per_n] for label, per_n in rows.items()},
                    'N (models)', f'Base vs ours, alpha {alpha:g}')
        console.print(f'written: {trainer_dir / "ablate_n.json"}, '
                      f'{trainer_dir / "ablate_n.png"} ({time.monotonic() - started:.0f} s)')


def run_name(alpha: Optional[float] = None, seed: Optional[int] = None) -> str:
    """How a sequence's stages are labelled among the others, e.g. ``alpha 0.5 seed 1``."""
    return ' '.join(part for part in (f'alpha {alpha:g}' if alpha is not None else '',
                                      f'seed {seed}' if seed is not None else '') if part)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON."""
    path.write_text(json.dumps(data, indent=2))
