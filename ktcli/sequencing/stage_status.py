"""Where each stage of a work dir stands: from the manifest, the stages' logs and Slurm."""
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..reading import is_regular_file, no_links_below, read_tail
from ..stages.manifest import Manifest
from ..stages.records import stage_paths
from .launcher import failure_reason, parse_progress
from .slurm import DEPENDENCY_FAILED, LIVE, JobReport, SlurmJob, job_states, submitted_jobs
from .stage_training import process_alive

# Bytes read from the end of a stage's log to find its last progress line.
LOG_TAIL_BYTES = 65536


@dataclass
class StageStatus:
    """One stage as ``kt status`` shows it.

    ``status`` is queued, running, done, failed, cancelled or interrupted
    (stopped from outside: Ctrl-C, a kill, a time limit; a rerun resumes
    it). ``reason`` says why a stage failed (the first line of its error),
    was cancelled (``teacher 1/3 failed``) or interrupted.
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
    reason: Optional[str] = None


@dataclass
class StatusReport:
    """Every stage of a work dir, and where Slurm's answers came from when its first
    choice (sacct for ended jobs) could not answer (``note``)."""

    stages: List[StageStatus] = field(default_factory=list)
    note: Optional[str] = None


# The recorded statuses Slurm may know more about: what a job was doing, or that it was
# stopped by a signal (scancel, a time limit).
ASK_SLURM = (*LIVE, 'interrupted')
# kt's reason for a job that Slurm stopped from outside.
SLURM_STOPS = dict(TIMEOUT='time limit reached', PREEMPTED='preempted',
                   NODE_FAIL='its node failed', DEADLINE='deadline reached')


def log_tail(path: Path) -> List[str]:
    """The lines of the last ``LOG_TAIL_BYTES`` of a log (a regular file, never a link)."""
    return read_tail(path, LOG_TAIL_BYTES).decode(errors='replace').splitlines()


def last_epoch(stage_dir: Path) -> Optional[int]:
    """The epoch of the last progress line in the stage's newest mmengine log."""
    # Logs of the stage's own runs: regular files in real folders, never links out.
    logs = sorted((path for path in stage_dir.glob('*/*.log')
                   if not path.parent.is_symlink() and is_regular_file(path)),
                  key=lambda path: path.lstat().st_mtime)
    if not logs:
        return None
    for line in reversed(log_tail(logs[-1])):
        progress = parse_progress(line)
        if progress is not None:
            return progress.epoch
    return None


def stage_statuses(work_dir: Path) -> StatusReport:
    """Every stage the manifest of ``work_dir`` knows, in the order it was recorded.

    A stage with a Slurm job takes the job's state while the job is queued
    or running, or when it ended without the stage being done: failed,
    cancelled (by scancel, or by Slurm because a teacher's job did not
    succeed) or interrupted (time limit, preemption). A job Slurm no longer
    knows leaves the stage as its job recorded it. A stage recorded as
    running on this machine whose process is gone is ``interrupted``.
    """
    manifest = Manifest(work_dir, writable=False)
    records = list(manifest.stages.values())
    # A job's own record says queued, running or (stopped by a signal) interrupted; Slurm
    # can say more. A failed stage recorded its reason itself.
    # Only a job kt submitted for the stage is asked about (see submitted_jobs): an id in
    # a record could name any job of this user's.
    ours = submitted_jobs()
    asked = [record for record in records
             if (str(record.get('job_id')), record['digest']) in ours
             and record.get('status') in ASK_SLURM and not manifest.is_done(record['digest'])]
    report = job_states(record['job_id'] for record in asked) if asked else JobReport()
    host = socket.gethostname()
    statuses: Dict[str, StageStatus] = {}
    # Cancelled stages whose teachers may say why (Slurm cancelled them, or they never ran).
    teachers_to_blame: List[str] = []
    for record in records:
        digest = record['digest']
        stage_dir = no_links_below(manifest.work_dir, stage_paths(digest)['dir'])
        status, reason = record.get('status', 'queued'), record.get('reason')
        job = record.get('job_id') if (str(record.get('job_id')), digest) in ours else None
        if manifest.is_done(digest):
            status, reason = 'done', None
        elif job and str(job) in report.jobs and status in ASK_SLURM:
            status, reason = _job_status(report.jobs[str(job)], stage_dir, str(job))
        elif job and report.answered and status in LIVE:
            # Slurm answered but knows no such job: it ended long ago, before it could say
            # so (never started, or killed outright).
            status = 'cancelled' if status == 'queued' else 'interrupted'
            reason = f'Slurm no longer knows job {job}'
        if status == 'cancelled' and (reason is None or reason == DEPENDENCY_FAILED
                                      or record.get('status') == 'queued'):
            teachers_to_blame.append(digest)
        elif (status == 'running' and not job and record.get('host') == host
              and not process_alive(record.get('pid'), stage_dir)):
            status = 'interrupted'
        epochs = record.get('epochs')
        epoch = epochs if status == 'done' else last_epoch(stage_dir)
        label = record.get('label') or (
            'student' if record.get('kind') else f'{record.get("index", "?")}')
        statuses[digest] = StageStatus(digest, label, status, job, epoch, epochs,
                                       record.get('top1'), record.get('train_seconds', 0.0),
                                       len(record.get('teachers', [])), reason)
    for digest in teachers_to_blame:
        stage = statuses[digest]
        stage.reason = _failed_teacher(manifest.stages[digest].get('teachers', []),
                                       statuses) or stage.reason
    return StatusReport(list(statuses.values()), report.note)


def _job_status(job: SlurmJob, stage_dir: Path, job_id: str) -> tuple:
    """The status and reason of a stage whose record is queued or running, from its job."""
    if job.state in LIVE:
        # A job left pending on a teacher that failed never runs: Slurm keeps it only
        # when it was submitted without --kill-on-invalid-dep.
        return ('cancelled', DEPENDENCY_FAILED) if job.reason == DEPENDENCY_FAILED else (
            job.state, None)
    if job.state == 'cancelled':
        return 'cancelled', job.reason if job.reason == DEPENDENCY_FAILED else None
    if job.state == 'interrupted':
        return 'interrupted', SLURM_STOPS.get(job.slurm_state, job.slurm_state)
    # Failed, or ended without the stage being done, before kt could say why: its log may.
    log = stage_dir / f'slurm-{job_id}.out'
    reason = failure_reason(log_tail(log)) if is_regular_file(log) else 'no output'
    return 'failed', f'{reason} (Slurm: {job.slurm_state})'


def _failed_teacher(teachers: List[str], statuses: Dict[str, StageStatus]) -> Optional[str]:
    """``teacher 1/3 failed``: the first teacher that ended without being done, preferring
    one that stopped on its own over one cancelled because of its own teachers."""
    ended = [statuses[teacher] for teacher in teachers if teacher in statuses
             and statuses[teacher].status in ('failed', 'cancelled', 'interrupted')]
    ended.sort(key=lambda teacher: (teacher.reason or '').startswith('teacher '))
    return f'teacher {ended[0].label} {ended[0].status}' if ended else None
