"""The distilled students of an ensemble's stages, scored against their members' ensemble."""
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from ..stages.config_files import read_stage_config
from ..stages.work_dir import distilled_students
from .ensemble_figures import ensemble_rows, topk_hits
from .paired_statistics import compare_paired, percent
from .test_outputs import cached_test_outputs

if TYPE_CHECKING:
    from ..stages.work_dir import StageData


def student_records(work_dir: Path, stages: list, outputs: list, device: str,
                    batch_size: Optional[int], data: 'StageData') -> List[dict]:
    """The distilled students of the ensembled stages: their top-1, their members' ensemble
    top-1 and their best member's top-1 (``kt distill``), and the student against that
    ensemble (``against_ensemble``, a PairedComparison); their test split is read from
    ``data`` when their outputs are not cached."""
    by_digest = {stage.digest: (stage, output) for stage, output in zip(stages, outputs)}
    records = []
    for student in distilled_students(work_dir):
        if not student.members or not set(student.members) <= set(by_digest):
            continue
        member_stages, member_outputs = zip(*(by_digest[d] for d in student.members))
        output = cached_test_outputs(student.dir, student.digest, student.config,
                                     student.checkpoint, device, batch_size, data)
        member_rows = ensemble_rows(list(member_outputs), [s.index for s in member_stages],
                                    list(student.members))
        correct = topk_hits(output['logits'], output['labels'])
        records.append(dict(
            digest=student.digest, backbone=student.backbone or _backbone_type(student.config),
            stages=[s.index for s in member_stages], images=len(correct),
            top1_correct=int(correct.sum()), top1=percent(correct.sum(), len(correct)),
            members_ensemble_top1=member_rows[-1].ensemble_top1,
            best_member_top1=max(row.top1 for row in member_rows),
            against_ensemble=compare_paired(correct, member_rows[-1].ensemble_correct,
                                            'student', 'ensemble')))
    return records


def _backbone_type(config: Path) -> str:
    """The backbone a student's config builds (students recorded before kt kept the name)."""
    backbone = read_stage_config(config).model.backbone
    return backbone.get('model_name', backbone.type)


def gap_closed(student: float, single: float, ensemble: float) -> Optional[float]:
    """``100 * (student - single) / (ensemble - single)``; None when the ensemble is not
    above ``single`` (no gap)."""
    if ensemble <= single:
        return None
    return 100 * (student - single) / (ensemble - single)
