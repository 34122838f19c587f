"""Where each stage of a work dir stands: from the manifest, the stages' logs and Slurm."""
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..reading import is_regular_file, no_links_below, read_tail
from .launcher import parse_progress
from .manifest import Manifest
from .scheduler import process_alive
from .slurm import LIVE, job_states

# Bytes read from the end of a stage's log to find its last progress line.
LOG_TAIL_BYTES = 65536


@dataclass
class StageStatus:
    """One stage as ``kt status`` shows it.

    ``status`` is queued, running, done, failed, cancelled or interrupted
    (a local run that stopped without saying so, e.g. killed).
    """

    digest: str
    label: str
    status: str
    job_id: Optional[str]
    epoch: Optional[int]
    epochs: Optional[int]
    top1: Optional[float]
    train_seconds: float
    teachers: int


def last_epoch(stage_dir: Path) -> Optional[int]:
    """The epoch of the last progress line in the stage's newest mmengine log."""
    # Logs of the stage's own runs: regular files in real folders, never links out.
    logs = sorted((path for path in stage_dir.glob('*/*.log')
                   if not path.parent.is_symlink() and is_regular_file(path)),
                  key=lambda path: path.lstat().st_mtime)
    if not logs:
        return None
    lines = read_tail(logs[-1], LOG_TAIL_BYTES).decode(errors='replace').splitlines()
    for line in reversed(lines):
        progress = parse_progress(line)
        if progress is not None:
            return progress.epoch
    return None


def stage_statuses(work_dir: Path) -> List[StageStatus]:
    """Every stage the manifest of ``work_dir`` knows, in the order it was recorded.

    A stage with a Slurm job takes the job's state while the job is queued
    or running, or when it ended without the stage being done (failed,
    cancelled); a stage recorded as running on this machine whose process
    is gone is ``interrupted``.
    """
    manifest = Manifest(work_dir)
    records = list(manifest.stages.values())
    jobs = job_states(record.get('job_id') for record in records
                      if record.get('status') in LIVE)
    host = socket.gethostname()
    statuses = []
    for record in records:
        digest = record['digest']
        stage_dir = no_links_below(manifest.work_dir, f'stages/{digest}')
        status = 'done' if manifest.is_done(digest) else record.get('status', 'queued')
        job = record.get('job_id')
        job_state = jobs.get(str(job)) if job else None
        if status != 'done' and job_state is not None and (
                job_state in LIVE or status in LIVE):
            status = job_state if job_state != 'done' else 'failed'
        elif (status == 'running' and job_state is None and record.get('host') == host
              and not process_alive(record.get('pid'), stage_dir)):
            status = 'interrupted'
        epochs = record.get('epochs')
        epoch = epochs if status == 'done' else last_epoch(stage_dir)
        label = record.get('label') or (
            'student' if record.get('kind') else f'{record.get("index", "?")}')
        statuses.append(StageStatus(digest, label, status, job, epoch, epochs,
                                    record.get('top1'), record.get('train_seconds', 0.0),
                                    len(record.get('teachers', []))))
    return statuses
