"""``kt ensemble``: score every stage of a work dir alone, in ensemble, and for diversity."""
import csv
import json
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import exit_on_user_error


class Fusion(str, Enum):
    softmax = 'softmax'
    logits = 'logits'


def ensemble(
    work_dir: Path = typer.Argument(..., help='A work dir written by `kt train`.'),
    fusion: Fusion = typer.Option(Fusion.softmax, help="softmax: average the members' "
                                  "probabilities; logits: sum their logits (the authors')."),
    models: Optional[str] = typer.Option(None, help='Stages to ensemble, e.g. 1,3,5 '
                                         '(default: all finished ones).'),
    json_path: Optional[Path] = typer.Option(None, '--json', help='Also write the figures here.'),
    csv_path: Optional[Path] = typer.Option(None, '--csv', help='Also write the figures here.'),
    batch_size: Optional[int] = typer.Option(None, min=1, help='Test batch size '
                                             "(default: the stage config's)."),
    device: Optional[str] = typer.Option(None, help='cpu, cuda, cuda:1, ... '
                                         '(default: cuda if available).'),
) -> None:
    """Score each stage on the test split: alone (top-1, top-5), in the ensemble of the
    stages up to it, and how much it differs from them (OR overlap of attention maps,
    prediction disagreement). Each model runs once; its outputs are cached in its stage
    directory for every later report."""
    console = Console()
    with exit_on_user_error():
        import torch

        from ..reports.ensemble_figures import ensemble_rows
        from ..reports.test_outputs import cached_test_outputs
        from ..stages.work_dir import parse_models, trained_stages
        stages = trained_stages(work_dir, parse_models(models))
        device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        outputs = [cached_test_outputs(s.dir, s.digest, s.config, s.checkpoint, device,
                                       batch_size) for s in stages]
        rows = ensemble_rows(outputs, [s.index for s in stages], [s.digest for s in stages],
                             fusion.value)
        table = Table(title=f'{work_dir}: {len(outputs[0]["labels"])} test images, '
                      f'{fusion.value} fusion')
        for column in ('stage', 'top-1', 'top-5', 'ensemble top-1 (so far)',
                       'OR overlap with earlier', 'disagreement with earlier (%)'):
            table.add_column(column, justify='right')
        for row in rows:
            table.add_row(str(row.index), f'{row.top1:.2f}', _figure(row.top5),
                          f'{row.ensemble_top1:.2f}', _figure(row.or_overlap, 4),
                          _figure(row.disagreement))
        console.print(table)
        students = student_records(work_dir, stages, outputs, device, batch_size)
        if students:
            console.print(_students_table(students))
        records = [asdict(row) for row in rows]
        if json_path:
            json_path.write_text(json.dumps(dict(fusion=fusion.value, stages=records,
                                                 students=students), indent=2))
        if csv_path:
            with open(csv_path, 'w', newline='') as file:
                writer = csv.DictWriter(file, fieldnames=list(records[0]))
                writer.writeheader()
                writer.writerows(records)


def student_records(work_dir: Path, stages: list, outputs: list, device: str,
                    batch_size: Optional[int]) -> List[dict]:
    """The distilled students of the ensembled stages: their top-1, their members' ensemble
    top-1 and their best member's top-1 (``kt distill``)."""
    from ..reports.ensemble_figures import ensemble_rows, topk_accuracy
    from ..reports.test_outputs import cached_test_outputs
    from ..stages.distillation import distilled_students

    by_digest = {stage.digest: (stage, output) for stage, output in zip(stages, outputs)}
    records = []
    for student in distilled_students(work_dir):
        if not student.members or not set(student.members) <= set(by_digest):
            continue
        member_stages, member_outputs = zip(*(by_digest[d] for d in student.members))
        output = cached_test_outputs(student.dir, student.digest, student.config,
                                     student.checkpoint, device, batch_size)
        records.append(dict(
            digest=student.digest, backbone=student.backbone or _backbone_type(student.config),
            stages=[s.index for s in member_stages],
            top1=topk_accuracy(output['logits'], output['labels']),
            members_ensemble_top1=ensemble_rows(list(member_outputs),
                                                [s.index for s in member_stages],
                                                list(student.members))[-1].ensemble_top1,
            best_member_top1=max(topk_accuracy(o['logits'], o['labels'])
                                 for o in member_outputs)))
    return records


def _backbone_type(config: Path) -> str:
    """The backbone a student's config builds (students recorded before kt kept the name)."""
    from ..stages.stage_files import read_stage_config
    backbone = read_stage_config(config).model.backbone
    return backbone.get('model_name', backbone.type)


def _students_table(records: List[dict]) -> Table:
    from .distill import gap_closed
    table = Table(title='distilled students (kt distill)')
    for column in ('student', 'backbone', 'of stages', 'top-1', "members' ensemble",
                   'gap closed'):
        table.add_column(column, justify='right')
    for record in records:
        table.add_row(record['digest'], record['backbone'], ','.join(map(str, record['stages'])),
                      f'{record["top1"]:.2f}', f'{record["members_ensemble_top1"]:.2f}',
                      _figure(gap_closed(record['top1'], record['best_member_top1'],
                                         record['members_ensemble_top1']), 0, '%'))
    return table


def _figure(value: Optional[float], digits: int = 2, unit: str = '') -> str:
    return '—' if value is None else f'{value:.{digits}f}{unit}'
