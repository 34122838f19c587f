"""``kt ensemble``: score every stage of a work dir alone, in ensemble, and for diversity."""
import csv
import io
import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ktbase.writing import write_atomically

from ..errors import exit_on_user_error
from .training_options import STAGE_DATA_ROOT


class Fusion(str, Enum):
    softmax = 'softmax'
    logits = 'logits'


def ensemble(
    work_dir: Path = typer.Argument(..., help='A work dir written by `kt train`.'),
    fusion: Fusion = typer.Option(Fusion.softmax, help="softmax: average the members' "
                                  "probabilities; logits: sum their logits (the authors')."),
    models: Optional[str] = typer.Option(None, help='Stages to ensemble, e.g. 1,3,5 '
                                         '(default: all finished ones).'),
    json_path: Optional[Path] = typer.Option(None, '--json', help='Also write the figures here '
                                             '(-: print them alone on stdout, the tables on '
                                             'stderr).'),
    csv_path: Optional[Path] = typer.Option(None, '--csv', help='Also write the figures here.'),
    batch_size: Optional[int] = typer.Option(None, min=1, help='Test batch size '
                                             "(default: the stage config's)."),
    device: Optional[str] = typer.Option(None, help='cpu, cuda, cuda:1, ... '
                                         '(default: cuda if available).'),
    data_root: Optional[Path] = STAGE_DATA_ROOT,
) -> None:
    """Score each stage on the test split: alone (top-1, top-5), in the ensemble of the
    stages up to it, and how much it differs from them (OR overlap of attention maps,
    prediction disagreement). Each model runs once; its outputs are cached in its stage
    directory for every later report."""
    json_to_stdout = json_path == Path('-')
    console = Console(stderr=json_to_stdout)
    with exit_on_user_error():
        import torch

        from ..scoring.ensemble_figures import ensemble_rows, error_structure
        from ..scoring.student_scores import student_records
        from ..scoring.test_outputs import cached_test_outputs, validation_rows
        from ..stages.config_files import read_stage_config
        from ..stages.validation_config import checkpoint_label, checkpoint_note, checkpoint_rule
        from ..stages.work_dir import StageData, parse_models, trained_stages
        stages = trained_stages(work_dir, parse_models(models))
        from ..devices import checked_device
        device = checked_device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        data = StageData(data_root)
        outputs = [cached_test_outputs(s.dir, s.digest, s.config, s.checkpoint, device,
                                       batch_size, data) for s in stages]
        rows = ensemble_rows(outputs, [s.index for s in stages], [s.digest for s in stages],
                             fusion.value)
        validation = validation_rows(stages, device, data, batch_size)
        images = len(outputs[0]['labels'])
        rule = checkpoint_rule(read_stage_config(Path(stages[0].config)))
        title = f'{work_dir}: {images} test images, {fusion.value} fusion{checkpoint_note(rule)}'
        columns = ['stage', 'top-1', 'top-5', 'ensemble top-1 (so far)',
                   'OR overlap with earlier', 'disagreement with earlier (%)']
        if validation:
            title += f'; validation split: {len(validation[0].correct)} training images'
            columns[1:2] = ['val top-1', 'val ensemble top-1 (so far)', 'test top-1']
        table = Table(title=title)
        for column in columns:
            table.add_column(column, justify='right')
        for position, row in enumerate(rows):
            held_out = [f'{validation[position].top1:.2f}',
                        f'{validation[position].ensemble_top1:.2f}'] if validation else []
            table.add_row(str(row.index), *held_out, f'{row.top1:.2f}', _figure(row.top5),
                          f'{row.ensemble_top1:.2f}', _figure(row.or_overlap, 4),
                          _figure(row.disagreement))
        console.print(table)
        against_best = ensemble_against_best_member(rows)
        errors = error_structure(outputs, [s.index for s in stages])
        if against_best:
            console.print(_errors_table(rows, errors, against_best))
        students = student_records(work_dir, stages, outputs, device, batch_size, data)
        if students:
            console.print(_students_table(students))
        records = [row.record() for row in rows]
        for record, held_out in zip(records, validation or ()):
            record.update(val_top1=held_out.top1, val_ensemble_top1=held_out.ensemble_top1)
        if json_path:
            from ..scoring.comparison_text import resolution
            compared = [against_best] + [s['against_ensemble'] for s in students]
            figures = json.dumps(dict(
                fusion=fusion.value, images=images, stages=records,
                checkpoint=dict(rule=rule, label=checkpoint_label(rule)),
                ensemble_against_best_member=against_best and against_best.to_dict(),
                error_structure=errors.record(),
                resolution=resolution([c for c in compared if c], images),
                students=[dict(s, against_ensemble=s['against_ensemble'].to_dict())
                          for s in students]), indent=2)
            if json_to_stdout:
                print(figures, flush=True)
            else:
                write_atomically(json_path, figures)
        if csv_path:
            table_text = io.StringIO(newline='')
            writer = csv.DictWriter(table_text, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
            write_atomically(csv_path, table_text.getvalue())


def ensemble_against_best_member(rows: list):
    """The ensemble of all the rows' stages against the best of them alone (None for one
    stage): a :class:`~ktcli.scoring.paired_statistics.PairedComparison`."""
    from ..scoring.paired_statistics import compare_paired
    if len(rows) < 2:
        return None
    best = max(rows, key=lambda row: row.top1)
    return compare_paired(rows[-1].ensemble_correct, best.correct, 'ensemble',
                          f'stage {best.index}')


def _errors_table(rows: list, errors, against_best) -> Table:
    """The ensemble against its best member, and how its members err together."""
    from ..scoring.comparison_text import comparison_text, resolution
    table = Table(title=f'ensemble of {len(rows)} against its best member ({against_best.second}'
                  f'): {comparison_text(against_best)}',
                  caption=f'oracle top-1 (any member right) {errors.oracle_top1:.2f}; '
                  f'Δ with 95% paired interval, McNemar p, '
                  f'{resolution([against_best], errors.images)}')
    for column in ('members', 'disagreement (%)', 'error correlation', 'OR overlap'):
        table.add_column(column, justify='right')
    for pair in errors.pairs:
        table.add_row(' & '.join(map(str, pair['stages'])), f'{pair["disagreement"]:.2f}',
                      _figure(pair['error_correlation'], 3), _figure(pair['or_overlap'], 4))
    if len(errors.pairs) > 1:
        table.add_row('mean', _figure(errors.mean_disagreement), _figure(
            errors.mean_error_correlation, 3), _figure(errors.mean_or_overlap, 4))
    return table


def _students_table(records: List[dict]) -> Table:
    from ..scoring.comparison_text import comparison_text, resolution
    from ..scoring.student_scores import gap_closed
    comparisons = [record['against_ensemble'] for record in records]
    table = Table(title='distilled students (kt distill)',
                  caption='Δ: student − ensemble, 95% paired interval, McNemar p; '
                  f'{resolution(comparisons, comparisons[0].images)}')
    for column in ('student', 'backbone', 'of stages', 'top-1', "members' ensemble",
                   'Δ', 'gap closed'):
        table.add_column(column, justify='right')
    for record in records:
        table.add_row(record['digest'], record['backbone'], ','.join(map(str, record['stages'])),
                      f'{record["top1"]:.2f}', f'{record["members_ensemble_top1"]:.2f}',
                      comparison_text(record['against_ensemble'], cell=True),
                      _figure(gap_closed(record['top1'], record['best_member_top1'],
                                         record['members_ensemble_top1']), 0, '%'))
    return table


def _figure(value: Optional[float], digits: int = 2, unit: str = '') -> str:
    return '—' if value is None else f'{value:.{digits}f}{unit}'
