"""The trained stages of a kt work directory, as the later commands use them."""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

from ..errors import UserError
from .manifest import MANIFEST_NAME, STAGES_DIR, Manifest
from .records import record_paths


@dataclass(frozen=True)
class TrainedStage:
    """A finished stage of the sequence last trained in a work directory."""

    index: int
    digest: str
    dir: Path
    config: Path
    checkpoint: Path


# ``--models distilled``: the newest student ``kt distill`` trained in the work dir.
DISTILLED = 'distilled'
# The stage index a distilled student carries (it is no position of the sequence).
STUDENT_INDEX = 0


def trained_stages(work_dir: Path,
                   models: Union[Sequence[int], str, None] = None) -> List[TrainedStage]:
    """The finished stages of ``work_dir``'s sequence, optionally a subset.

    Args:
        work_dir (Path): A work directory written by ``kt train``.
        models (Sequence[int] | str, optional): 1-based stage indices to
            keep, in the given order, or ``'distilled'`` for the newest
            distilled student alone. Defaults to None (every finished stage).

    Returns:
        list[TrainedStage]: The stages.

    Raises:
        UserError: No kt work dir there, or a requested stage is missing or
            unfinished.
    """
    work_dir = Path(work_dir)
    if not ((work_dir / MANIFEST_NAME).is_file() or (work_dir / STAGES_DIR).is_dir()):
        raise UserError(f'{work_dir} is not a kt work dir (no {MANIFEST_NAME}); '
                        'train one with `kt train`')
    if models == DISTILLED:
        from .distillation import distilled_students
        students = distilled_students(work_dir)
        if not students:
            raise UserError(f'{work_dir} has no distilled student; train one with `kt distill`')
        return students[-1:]
    manifest = Manifest(work_dir)
    stages = []
    for index, digest in enumerate(manifest.chain, start=1):
        paths = record_paths(digest, manifest.stage(digest))
        stages.append(TrainedStage(index, digest, work_dir / paths['dir'],
                                   work_dir / paths['config'], work_dir / paths['checkpoint']))
    finished = [stage.index for stage in stages if manifest.is_done(stage.digest)]
    if not models and not finished:
        raise UserError(f'{work_dir} has no finished stage yet; run `kt train` to train one')
    wanted = list(models) if models else finished
    for index in wanted:
        if not 1 <= index <= len(stages):
            raise UserError(f'{work_dir} has stages 1..{len(stages)}; there is no stage {index}')
        if not manifest.is_done(stages[index - 1].digest):
            raise UserError(f'stage {index} of {work_dir} has not finished training; '
                            'rerun `kt train` to complete it')
    return [stages[index - 1] for index in wanted]


def parse_models(text: Optional[str]) -> Union[List[int], str, None]:
    """Parse ``--models 1,3,5`` into ``[1, 3, 5]`` (None stays None, ``distilled`` too)."""
    if not text or text == DISTILLED:
        return text or None
    try:
        return [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise UserError(f'--models takes stage numbers like 1,3,5 or distilled, got {text!r}'
                        ) from None
