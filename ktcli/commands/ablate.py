"""``kt ablate alpha`` and ``kt ablate n``: the paper's Tables 2 and 3 from one command each."""
import json
import math
import statistics
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserError, exit_on_user_error
from ..reports.alpha_selection import choose_alpha, validation_ensembles
from ..stages.validation_config import checkpoint_label, checkpoint_note
from .training_options import TrainingOptions, finite_non_negative, with_training_options

if TYPE_CHECKING:
    import numpy as np


class SelectOn(str, Enum):
    val = 'val'
    test = 'test'


# The mark on the test row, and what the caption says it means: the test figures of a
# choice on validation were not used for it; those of a choice on test chose.
TEST_ROW_NOTES = {'val': 'not used for the choice', 'test': 'selected on the test set'}


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


def cell(values: Sequence[float], digits: int = 2) -> str:
    """``mean ± std`` over seeds, or the value for one seed."""
    mean, std = mean_std(values)
    return f'{mean:.{digits}f} ± {std:.{digits}f}' if len(values) > 1 else f'{mean:.{digits}f}'


@ablate_app.command('alpha')
@with_training_options
def ablate_alpha(
    options: TrainingOptions,
    values: str = typer.Option('0,0.05,0.1,0.5,1,5', help='The alpha values (Table 2); 0, '
                               'the reference every other alpha is compared with, is added '
                               'when missing.'),
    n: int = typer.Option(2, min=2, help='Models per sequence.'),
    seeds: str = typer.Option('0', help='Repeat over these seeds; cells show mean ± std.'),
    select_on: Optional[SelectOn] = typer.Option(
        None, help='Choose the alpha whose ensemble is best (mean over seeds) on: val, the '
        '--val-split images, then report its test accuracy against alpha 0 with the paired '
        'interval; test, the test set itself (labelled "selected on the test set"). '
        'Default: no choice.'),
) -> None:
    """Ensemble top-1 of an N-model sequence for each alpha, each compared with alpha 0
    (the cross-entropy-only sequence) on the same test images; stage 1 is shared by all.
    With --select-on, the alpha chosen on validation (or, labelled, on test)."""
    console = Console()
    with exit_on_user_error('rerun the same command to resume'):
        started = time.monotonic()
        if select_on == SelectOn.val and options.validation().none:
            raise UserError('--select-on val needs a validation split: add --val-split 0.2 '
                            '(or a number of images per class, or official for FGVC-Aircraft)')
        alphas = parse_numbers(values, float, '--values')
        if 0 not in alphas:
            alphas.insert(0, 0.0)
            console.print('alpha 0 (cross-entropy only) is trained too: every alpha is '
                          'compared with it')
        seed_list = parse_numbers(seeds, int, '--seeds')
        root = options.prepared_data_root(console)
        sequences = options.sequences(options.default_work_dir('ablate_'), console)
        runs = [(alpha, sequences.sequence(options.settings(root, alpha, seed),
                                           run_name(alpha=alpha if len(alphas) > 1 else None,
                                                    seed=seed if len(seed_list) > 1 else None),
                                           'ablate'))
                for alpha in alphas for seed in seed_list]
        trained = sequences.train([(trainer, n, False) for _, trainer in runs], options.dry_run)
        if trained is None:
            return
        last = {alpha: [] for alpha in alphas}
        for (alpha, _), results in zip(runs, trained):
            last[alpha].append(results[-1])

        from ..scoring.paired_statistics import compare_replicates, estimate_accuracy
        ensembles = {a: estimate_accuracy(correct_of(last[a], 'ensemble_correct'))
                     for a in alphas}
        singles = {a: estimate_accuracy(correct_of(last[a], 'correct')) for a in alphas}
        reference = correct_of(last[0.0], 'ensemble_correct')
        differences = {a: compare_replicates(correct_of(last[a], 'ensemble_correct'), reference,
                                             f'alpha {a:g}', 'alpha 0')
                       for a in alphas if a != 0}
        images = ensembles[0.0].images
        validated = last[0.0][0].validation is not None
        validation = validation_ensembles(last) if validated else None
        choice = select_on and choose_alpha(
            validation if select_on == SelectOn.val else
            {a: ensembles[a].per_seed for a in alphas}, select_on.value)
        table = Table(title=f'Ensemble top-1 of {n} models vs alpha ({options.backbone}, '
                      f'{options.spec().title}, {options.weighting.value} weighting, '
                      f'seeds {seeds}{checkpoint_note(options.checkpoint.value)})',
                      caption=caption(differences.values(), images, len(seed_list),
                                      marked_row_note(choice)
                                      + 'Δ: each alpha − alpha 0, 95% paired interval'))
        table.add_column('alpha', justify='right', no_wrap=True)
        for alpha in alphas:
            table.add_column(f'{alpha:g}', justify='right')
        if validated:
            table.add_row('Ensemble top-1 (val)', *[cell(validation[a]) for a in alphas])
        table.add_row('Ensemble top-1' + (' (test)*' if choice else ''),
                      *[cell(ensembles[a].per_seed) for a in alphas])
        table.add_row('Δ Ensemble (alpha − 0)', *[
            difference_cell(differences[a]) if a else 'reference' for a in alphas])
        table.add_row(f'Model {n} top-1', *[cell(singles[a].per_seed) for a in alphas])
        table.add_row(f'Model {n} OR overlap',
                      *[cell([r.or_overlap for r in last[a]], 4) for a in alphas])
        if choice:
            table.add_row(f'Chosen on {choice.on}' + ('*' if choice.on == 'test' else ''),
                          *['chosen' if a == choice.alpha else '' for a in alphas])
        console.print(table)
        if choice:
            console.print(choice_text(choice, differences, len(seed_list)), soft_wrap=True)

        from ..reports.ablation_plots import curve, plot_figure
        trainer_dir = sequences.work_dir
        figure = dict(x=alphas, xlabel='alpha', title=f'{n}-model ensemble vs alpha', symlog=True,
                      panels=[dict(ylabel='top-1 (%), 95% interval', curves={
                          'ensemble': curve([ensembles[a] for a in alphas])}),
                          dict(ylabel='Δ top-1 vs alpha 0 (points)', zero_line=True, curves={
                              'ensemble − alpha 0': curve([differences.get(a) for a in alphas],
                                                          'difference')})])
        write_json(trainer_dir / 'ablate_alpha.json', dict(
            n=n, seeds=seed_list, alphas=alphas, images=images,
            checkpoint=checkpoint_record(options.checkpoint.value),
            resolution=resolution_of(differences.values(), images, len(seed_list)),
            figures={alpha: dict(ensemble=ensembles[alpha].to_dict(),
                                 last_single=singles[alpha].to_dict(),
                                 or_overlap=[r.or_overlap for r in last[alpha]],
                                 ensemble_vs_alpha_0=differences[alpha].to_dict()
                                 if alpha else None,
                                 validation_ensemble=validation and validation[alpha])
                     for alpha in alphas},
            selection=choice and dict(choice.to_dict(), test_ensemble_vs_alpha_0=(
                differences[choice.alpha].to_dict() if choice.alpha else None)),
            figure=figure))
        plot_figure(trainer_dir / 'ablate_alpha.png', figure)
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
    OR-loss sequence ("Ours"), and Ours − Base at each N with its 95% paired interval,
    p and verdict. Every N comes from prefixes of the two runs, and they share model 1."""
    console = Console()
    with exit_on_user_error('rerun the same command to resume'):
        started = time.monotonic()
        seed_list = parse_numbers(seeds, int, '--seeds')
        root = options.prepared_data_root(console)
        sequences = options.sequences(options.default_work_dir('ablate_'), console)
        runs = [sequences.sequence(options.settings(root, alpha, seed),
                                   run_name(seed=seed if len(seed_list) > 1 else None), 'ablate')
                for seed in seed_list]
        # Ours first: the stage 1 both share is labelled as the chain's.
        specs = [(trainer, max_n, independent) for trainer in runs
                 for independent in (False, True)]
        trained = sequences.train(specs, options.dry_run)
        if trained is None:
            return
        by_name = dict(Base=[], Ours=[])
        for (_, _, independent), results in zip(specs, trained):
            by_name['Base' if independent else 'Ours'].append(results)

        from ..scoring.paired_statistics import compare_replicates, estimate_accuracy
        sizes = list(range(1, max_n + 1))
        rows, differences = {}, {}
        for kind, attribute in (('Single', 'correct'), ('Ensemble', 'ensemble_correct')):
            per_name = {name: [correct_of([r[k] for r in by_name[name]], attribute)
                               for k in range(max_n)] for name in ('Base', 'Ours')}
            for name in ('Base', 'Ours'):
                rows[f'{kind} ({name})'] = [estimate_accuracy(c) for c in per_name[name]]
            # N = 1 is model 1 in both: nothing to compare.
            differences[f'Δ {kind} (Ours − Base)'] = [None] + [
                compare_replicates(per_name['Ours'][k], per_name['Base'][k])
                for k in range(1, max_n)]
        overlaps = {name.lower(): [r.or_overlap for results in by_name[name] for r in results[1:]]
                    for name in ('Base', 'Ours')}
        compared = [c for per_n in differences.values() for c in per_n if c is not None]
        images = rows['Single (Base)'][0].images

        table = Table(title=f'Single and ensemble top-1 vs N ({options.backbone}, '
                      f'{options.spec().title}, alpha {alpha:g}, seeds {seeds}'
                      f'{checkpoint_note(options.checkpoint.value)})',
                      caption=caption(compared, images, len(seed_list),
                                      'Δ: Ours − Base, 95% paired interval'))
        table.add_column('N', justify='left', no_wrap=True)
        for size in sizes:
            table.add_column(str(size), justify='right')
        for label in ('Single (Base)', 'Ensemble (Base)', 'Single (Ours)', 'Ensemble (Ours)'):
            table.add_row(label, *[cell(estimate.per_seed) for estimate in rows[label]])
        for label, per_n in differences.items():
            table.add_row(label, *[difference_cell(c) if c else 'shared model 1'
                                   for c in per_n])
        console.print(table)
        if max_n > 1:
            console.print('mean OR overlap of models 2..N with the models before them: '
                          f'Base {statistics.mean(overlaps["base"]):.4f}, '
                          f'Ours {statistics.mean(overlaps["ours"]):.4f}')

        from ..reports.ablation_plots import curve, plot_figure
        trainer_dir = sequences.work_dir
        figure = dict(x=sizes, xlabel='N (models)', title=f'Base vs ours, alpha {alpha:g}',
                      panels=[dict(ylabel='top-1 (%), 95% interval', curves={
                          label: curve(estimates) for label, estimates in rows.items()}),
                          dict(ylabel='Ours − Base (points), 95% interval', zero_line=True,
                               curves={label: curve(per_n, 'difference')
                                       for label, per_n in differences.items()})])
        write_json(trainer_dir / 'ablate_n.json', dict(
            alpha=alpha, seeds=seed_list, images=images,
            checkpoint=checkpoint_record(options.checkpoint.value),
            resolution=resolution_of(compared, images, len(seed_list)),
            rows={label: [e.to_dict() for e in estimates] for label, estimates in rows.items()},
            differences={label: [c and c.to_dict() for c in per_n]
                         for label, per_n in differences.items()},
            or_overlap=overlaps, figure=figure))
        plot_figure(trainer_dir / 'ablate_n.png', figure)
        console.print(f'written: {trainer_dir / "ablate_n.json"}, '
                      f'{trainer_dir / "ablate_n.png"} ({time.monotonic() - started:.0f} s)')


def marked_row_note(choice) -> str:
    """The caption's note on the marked test row: ``'* not used for the choice; '`` for a
    choice on validation, ``'* selected on the test set; '`` for one on test, else ''."""
    return f'* {TEST_ROW_NOTES[choice.on]}; ' if choice else ''


def choice_text(choice, differences: dict, seeds: int) -> str:
    """The chosen alpha, the score it was chosen by, and its test accuracy against
    alpha 0 with the paired interval."""
    from ..scoring.comparison_text import comparison_text
    split = 'validation' if choice.on == 'val' else 'test'
    text = (f'{choice.label}: alpha {choice.alpha:g} (mean {split} ensemble top-1 '
            f'{choice.scores[choice.alpha]:.2f} over {seeds} seed{"s" if seeds > 1 else ""})')
    if not choice.alpha:
        return f'{text}; alpha 0 is the reference: the OR-loss is not chosen'
    return (f'{text}; its test ensemble vs alpha 0: '
            f'{comparison_text(differences[choice.alpha])}')


def checkpoint_record(rule: str) -> dict:
    """The checkpoint rule as an ablation's JSON keeps it, with its label."""
    return dict(rule=rule, label=checkpoint_label(rule))


def correct_of(results: Sequence, attribute: str) -> 'np.ndarray':
    """``(seeds, images)``: which test images each seed's result gets right (``correct``
    alone, or ``ensemble_correct`` with the stages before it)."""
    import numpy as np
    return np.stack([getattr(result, attribute) for result in results])


def difference_cell(comparison) -> str:
    """A Δ cell: difference [interval], p, sign count (several seeds), verdict."""
    from ..scoring.comparison_text import comparison_text
    return comparison_text(comparison, cell=True)


def resolution_of(comparisons, images: int, seeds: int) -> str:
    """See :func:`ktcli.scoring.paired_statistics.resolution`."""
    from ..scoring.comparison_text import resolution
    return resolution(list(comparisons), images, seeds)


def caption(comparisons, images: int, seeds: int, what: str) -> Optional[str]:
    """A table's caption: what its Δ rows are and what they can resolve (None without)."""
    comparisons = list(comparisons)
    return f'{what}; {resolution_of(comparisons, images, seeds)}' if comparisons else None


def run_name(alpha: Optional[float] = None, seed: Optional[int] = None) -> str:
    """How a sequence's stages are labelled among the others, e.g. ``alpha 0.5 seed 1``."""
    return ' '.join(part for part in (f'alpha {alpha:g}' if alpha is not None else '',
                                      f'seed {seed}' if seed is not None else '') if part)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON (replacing the file, never writing through it)."""
    from ktbase.writing import write_atomically
    write_atomically(path, json.dumps(data, indent=2))
