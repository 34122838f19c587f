"""``kt status``: where every stage of a work dir stands, while it trains here or on Slurm."""
import collections
import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ktbase.writing import write_atomically

from ..errors import exit_on_user_error

STATUS_STYLES = dict(done='green', running='cyan', queued='yellow', failed='red',
                     cancelled='red', interrupted='magenta')


def status(
    work_dir: Path = typer.Argument(..., help='A work dir written by `kt train`, `kt ablate` '
                                    'or `kt distill`.'),
    json_path: Optional[Path] = typer.Option(None, '--json', help='Also write the table as '
                                             'JSON to this file.'),
) -> None:
    """Show each stage of a work dir: queued, running, done, failed, cancelled or
    interrupted, its Slurm job, its epoch, its top-1, training time (m:ss) and why it
    failed or was cancelled.

    Slurm jobs are asked about with squeue, and once ended with sacct, or with scontrol
    where Slurm keeps no accounting. Once every stage is done, rerun the command that
    planned them to score them and print its tables.
    """
    console = Console()
    with exit_on_user_error():
        from ..sequencing.stage_status import stage_statuses
        from ..stages.records import check_work_dir
        check_work_dir(work_dir)
        report = stage_statuses(work_dir)
        statuses = report.stages
        table = Table(title=f'{len(statuses)} stages in {work_dir}')
        for column in ('stage', 'digest', 'teachers', 'status', 'job', 'epoch', 'top-1',
                       'time'):
            table.add_column(column, justify='left' if column in ('stage', 'digest') else 'right',
                             no_wrap=True)
        for stage in statuses:
            style = STATUS_STYLES.get(stage.status, '')
            epoch = '-' if stage.epoch is None else f'{stage.epoch}/{stage.epochs or "?"}'
            minutes, seconds = divmod(round(stage.train_seconds), 60)
            table.add_row(stage.label, stage.digest[:8], str(stage.teachers),
                          f'[{style}]{stage.status}[/]' if style else stage.status,
                          stage.job_id or '-', epoch,
                          '-' if stage.top1 is None else f'{stage.top1:.2f}',
                          f'{minutes}:{seconds:02d}')
        console.print(table)
        for stage in statuses:
            if stage.reason and stage.status != 'done':
                console.print(f'{stage.label} {stage.status}: {stage.reason}', markup=False,
                              highlight=False, soft_wrap=True)
        counts = collections.Counter(stage.status for stage in statuses)
        console.print(', '.join(f'{count} {name}' for name, count in sorted(counts.items())))
        if report.note:
            console.print(report.note, markup=False, highlight=False)
        if counts.keys() & {'failed', 'cancelled', 'interrupted'}:
            console.print('Rerun the command that planned them to resubmit (or resume) the '
                          'failed, cancelled and interrupted stages; fix the reason of a '
                          'failed one first.', markup=False, highlight=False)
        if json_path is not None:
            write_atomically(json_path, json.dumps([asdict(s) for s in statuses], indent=2))
