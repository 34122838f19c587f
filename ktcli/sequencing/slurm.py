"""Everything kt asks of Slurm: submit stages as jobs whose dependencies follow the teachers,
ask what became of them, and remember which jobs are kt's.

Each stage not done becomes one ``sbatch`` job running
``python -m ktcli.sequencing.stage_job WORK_DIR DIGEST``; a stage whose teachers
are still to train depends on their jobs (``--dependency=afterok:...``), so
the cluster's scheduler runs the whole graph while kt is gone. The job keeps
the stage's record in the manifest (under its lock), which ``kt status``
shows and a rerun of the same command scores.

What became of a job: live jobs come from ``squeue``. Ended jobs come from ``sacct`` where
the cluster keeps accounting (slurmdbd), else from ``scontrol show job``, which knows a job
for ``MinJobAge`` seconds after it ended (300 by default); a job neither knows is left to
the stage's own record. :class:`JobReport` says which source answered when the first choice
could not.

Which jobs are kt's: a stage record's ``job_id`` travels with the work dir, so it says
nothing about who owns the job: an id copied from another work dir, or planted in a
received one, can name any job of this user's. kt therefore acts on a job (cancels it, or
waits for it as a stage's job) only when a file kept outside every work dir lists the id
with the stage's digest: a line ``JOB_ID DIGEST`` per job kt submitted, in
``$KT_STATE_DIR``, else ``$XDG_STATE_HOME/kt``, else ``~/.local/state/kt`` (0600 in a 0700
folder, so only this user adds to it).
"""
import contextlib
import fcntl
import getpass
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from rich.console import Console

from ..errors import UserError
from ..reading import read_capped
from ..stages.config_files import write_stage_config
from ..stages.manifest import Manifest
from ..stages.planned_stage import PlannedStage, unique_stages

# What kt calls a job in each of Slurm's states. A job stopped from outside (time limit,
# preemption, a failed node) is interrupted: a rerun resumes it from its last epoch.
JOB_STATES = {
    'PENDING': 'queued', 'CONFIGURING': 'queued', 'REQUEUED': 'queued', 'REQUEUE_HOLD': 'queued',
    'REQUEUE_FED': 'queued', 'RESIZING': 'queued', 'SUSPENDED': 'queued',
    'RUNNING': 'running', 'COMPLETING': 'running', 'SIGNALING': 'running',
    'STAGE_OUT': 'running', 'COMPLETED': 'done', 'CANCELLED': 'cancelled',
    'FAILED': 'failed', 'OUT_OF_MEMORY': 'failed', 'BOOT_FAIL': 'failed',
    'TIMEOUT': 'interrupted', 'PREEMPTED': 'interrupted', 'NODE_FAIL': 'interrupted',
    'DEADLINE': 'interrupted',
}
LIVE = ('queued', 'running')
# Slurm's reason for a job it cancelled because a job it depended on did not succeed.
DEPENDENCY_FAILED = 'DependencyNeverSatisfied'
ACCOUNTING_OFF = 'accounting storage is disabled'
SCONTROL_FIELD = re.compile(r'(?:^|\s)(JobState|Reason)=(\S+)')


@dataclass(frozen=True)
class SlurmJob:
    """One job as Slurm reports it.

    Args:
        state (str): kt's name for it (see ``JOB_STATES``).
        slurm_state (str): Slurm's own, e.g. ``'CANCELLED'``.
        reason (str): Slurm's reason, e.g. ``'DependencyNeverSatisfied'``
            ('' when it gives none).
        source (str): Which tool said so: squeue, sacct or scontrol.
    """

    state: str
    slurm_state: str
    reason: str
    source: str


@dataclass
class JobReport:
    """What Slurm knows about a set of jobs, and where the ended ones came from.

    Args:
        jobs (dict): Job id -> :class:`SlurmJob`, for the jobs Slurm knows.
        note (str, optional): Set when sacct could not answer for ended
            jobs, e.g. ``'ended jobs: from scontrol (Slurm accounting is
            off)'``, or when Slurm could not be asked at all.
        answered (bool): squeue answered, so a job it and the other
            sources do not know has ended.
    """

    jobs: Dict[str, SlurmJob] = field(default_factory=dict)
    note: Optional[str] = None
    answered: bool = False

    def state(self, job: Optional[str]) -> Optional[str]:
        """kt's state of ``job``, None when Slurm does not know it."""
        known = self.jobs.get(str(job)) if job else None
        return known.state if known else None


def _run(command: List[str]) -> Tuple[Optional[int], str, str]:
    """Exit code, stdout and stderr of a Slurm tool; code None when it is missing or hangs."""
    if shutil.which(command[0]) is None:
        return None, '', f'{command[0]} not found'
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, '', str(error)
    return result.returncode, result.stdout, result.stderr


def _job(slurm_state: str, reason: str, source: str) -> SlurmJob:
    # sacct says 'CANCELLED by 1234' (who cancelled it); the state is the first word.
    state = slurm_state.split()[0] if slurm_state.strip() else 'FAILED'
    reason = '' if reason.strip() in ('None', '(null)') else reason.strip()
    return SlurmJob(JOB_STATES.get(state, 'failed'), state, reason, source)


def _job_table(command: List[str], wanted: set, source: str
               ) -> Tuple[Optional[Dict[str, SlurmJob]], str]:
    """The jobs among ``wanted`` in the ``ID|STATE|REASON`` lines of a Slurm query, or None
    and the last line of what the tool said instead."""
    code, out, err = _run(command)
    if code != 0:
        return None, (err.strip().splitlines() or [f'exit code {code}'])[-1]
    jobs = {}
    for line in out.splitlines():
        job, _, rest = line.strip().partition('|')
        state, _, reason = rest.partition('|')
        # sacct's job steps (1234.batch, 1234.0) are not wanted.
        if job in wanted:
            jobs[job] = _job(state, reason, source)
    return jobs, ''


def _controller_job(job: str) -> Optional[SlurmJob]:
    """The job as slurmctld still remembers it (for MinJobAge seconds after it ended)."""
    code, out, _ = _run(['scontrol', '--oneliner', 'show', 'job', job])
    fields = dict(SCONTROL_FIELD.findall(out)) if code == 0 else {}
    if 'JobState' not in fields:
        return None
    return _job(fields['JobState'], fields.get('Reason', ''), 'scontrol')


def job_states(job_ids: Iterable[Optional[str]]) -> JobReport:
    """What Slurm knows of ``job_ids``: squeue for queued and running jobs, then sacct
    for ended ones, else scontrol. Jobs no source knows are left out."""
    wanted = {str(job) for job in job_ids if job}
    report = JobReport()
    if not wanted:
        return report
    live, why = _job_table(['squeue', '--noheader', '--format=%i|%T|%r',
                            f'--user={getpass.getuser()}'], wanted, 'squeue')
    if live is None:
        report.note = f'Slurm did not answer (squeue: {why}): stages as their jobs last recorded'
        return report
    report.jobs, report.answered = live, True
    ended = sorted(wanted - set(report.jobs), key=lambda job: (len(job), job))
    if not ended:
        return report
    accounted, why = _job_table(['sacct', '--noheader', '--parsable2',
                                 '--format=JobID,State,Reason', f'--jobs={",".join(ended)}'],
                                set(ended), 'sacct')
    if accounted is not None:
        report.jobs.update(accounted)
        return report
    if ACCOUNTING_OFF in why.lower():
        why = 'Slurm accounting is off'
    for job in ended:
        known = _controller_job(job)
        if known is not None:
            report.jobs[job] = known
    forgotten = [job for job in ended if job not in report.jobs]
    notes = [f'ended jobs: from scontrol ({why})'] if len(forgotten) < len(ended) else []
    if forgotten:
        notes.append(f'job{"s" if len(forgotten) > 1 else ""} {", ".join(forgotten)}: '
                     f'unknown to sacct ({why}) and to scontrol (ended over MinJobAge ago), '
                     'shown as last recorded by the job')
    report.note = '; '.join(notes) or None
    return report


JOBS_NAME = 'slurm_jobs'
# The file keeps the newest ids only: more than any cluster's queue holds for one user.
MAX_JOBS = 100000


def state_dir() -> Optional[Path]:
    """kt's per-user state folder, or None without a home."""
    if os.environ.get('KT_STATE_DIR'):
        return Path(os.environ['KT_STATE_DIR'])
    xdg = os.environ.get('XDG_STATE_HOME', '')
    try:
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / '.local' / 'state'
    except RuntimeError:
        return None
    return base / 'kt'


def remember_job(job_id: str, digest: str) -> None:
    """Add the job kt just submitted for stage ``digest`` (a file that cannot be written
    only means kt will not act on that job later)."""
    folder = state_dir()
    if folder is None:
        return
    with contextlib.suppress(OSError):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _owned(os.lstat(folder), stat.S_ISDIR):
            return
        os.chmod(folder, 0o700)
        descriptor = os.open(folder / JOBS_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                             | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(descriptor, 'a') as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            if _owned(os.fstat(descriptor), stat.S_ISREG):
                file.write(f'{job_id} {digest}\n')


def submitted_jobs() -> Set[Tuple[str, str]]:
    """The ``(job id, stage digest)`` pairs kt submitted from this account."""
    folder = state_dir()
    if folder is None:
        return set()
    try:
        if not _owned(os.lstat(folder), stat.S_ISDIR):
            return set()
        content = read_capped(folder / JOBS_NAME, 64 * MAX_JOBS)
    except (OSError, ValueError):
        return set()
    pairs = set()
    for line in content.decode(errors='replace').splitlines()[-MAX_JOBS:]:
        job, _, digest = line.partition(' ')
        pairs.add((job, digest))
    return pairs


def _owned(status: os.stat_result, kind) -> bool:
    """This user's, of ``kind``, writable by no one else."""
    return (kind(status.st_mode) and status.st_uid == os.getuid()
            and not stat.S_IMODE(status.st_mode) & 0o022)


def _sbatch_path(path: Path) -> str:
    """A path as sbatch's --output takes it: a '%' of the folder's name doubled (sbatch
    reads %j, %x and the like as its own fields)."""
    return str(path).replace('%', '%%')


class SlurmScheduler:
    """Submit the stages that are not done as Slurm jobs linked by their teachers.

    The work dir (the manifest's) must be on storage every node sees.

    Args:
        processes (int): Processes (tasks, one per GPU) per stage.
        slurm_args (str): sbatch options for every job (partition, GPUs,
            time, ...).
        console (Console, optional): Where to print.
    """

    def __init__(self, processes: int = 1, slurm_args: str = '',
                 console: Optional[Console] = None) -> None:
        self.processes = processes
        self.slurm_args = slurm_args
        self.console = console or Console()

    def run(self, manifest: Manifest, stages: Sequence[PlannedStage]) -> bool:
        """Submit every stage that is not done and not already queued or running, each job
        after its teachers' (the arguments: :class:`~ktcli.sequencing.sequence.StageScheduler`);
        True only when every stage is done and nothing was submitted.

        Raises:
            UserError: ``sbatch`` is missing or refuses a job.
        """
        stages = [stage for stage in unique_stages(stages) if not manifest.is_done(stage.digest)]
        if not stages:
            return True
        if shutil.which('sbatch') is None:
            raise UserError('--launcher slurm needs sbatch on PATH: run kt on a Slurm login '
                            'node, or train here with --launcher none')
        # Only a job kt submitted for the stage is the stage's: a record's job id travels with
        # the work dir and could name any job of this user's (see submitted_jobs).
        ours = submitted_jobs()
        jobs_of = {stage.digest: (manifest.stage(stage.digest) or {}).get('job_id')
                   for stage in stages}
        jobs_of = {digest: job if (str(job), digest) in ours else None
                   for digest, job in jobs_of.items()}
        report = job_states(jobs_of.values())
        jobs: Dict[str, str] = {}
        submitted = []
        # Stages come teachers first, so a teacher's job id is known before its students'.
        for stage in stages:
            job = jobs_of[stage.digest]
            if report.state(job) in LIVE:
                # A job still pending on a teacher that failed never runs (Slurm keeps it
                # without --kill-on-invalid-dep), nor does one on a teacher resubmitted now.
                resubmitted = {s.digest for s in submitted}
                if report.jobs[str(job)].reason != DEPENDENCY_FAILED and \
                        resubmitted.isdisjoint(stage.teachers):
                    jobs[stage.digest] = str(job)
                    continue
                if shutil.which('scancel'):
                    subprocess.run(['scancel', str(job)], capture_output=True)
            write_stage_config(stage.cfg, stage.dir)
            after = [jobs[teacher] for teacher in stage.teachers if teacher in jobs]
            # Queued before sbatch: a job that starts at once records itself after this.
            manifest.update(stage.digest, **stage.placement(manifest.work_dir), status='queued',
                            job_id=None, after=after, pid=None, reason=None)
            jobs[stage.digest] = self._submit(manifest.work_dir, stage, after)
            remember_job(jobs[stage.digest], stage.digest)
            manifest.update(stage.digest, job_id=jobs[stage.digest])
            submitted.append(stage)
        self.console.print(f'submitted {len(submitted)} Slurm job'
                           f'{"s" if len(submitted) != 1 else ""}'
                           + (f' ({", ".join(jobs[s.digest] for s in submitted)})'
                              if submitted else '')
                           + f'; {len(stages) - len(submitted)} already queued or running. '
                           f'Follow them with `kt status {manifest.work_dir}`; once they have '
                           'finished, rerun this command to score them and print the tables.')
        return False

    def _submit(self, work_dir: Path, stage: PlannedStage, after: List[str]) -> str:
        """sbatch one stage of ``work_dir``; its job id."""
        job = [sys.executable, '-m', 'ktcli.sequencing.stage_job', *stage.inputs.arguments(),
               str(work_dir), stage.digest, '--processes', str(self.processes)]
        command = ['sbatch', '--parsable', f'--job-name=kt-{stage.digest[:8]}',
                   f'--output={_sbatch_path(stage.dir)}/slurm-%j.out', f'--ntasks={self.processes}']
        if after:
            command += [f'--dependency=afterok:{":".join(after)}', '--kill-on-invalid-dep=yes']
        command += [*shlex.split(self.slurm_args), f'--wrap={shlex.join(job)}']
        result = subprocess.run(command, capture_output=True, text=True)
        job_id = result.stdout.strip().split(';')[0]
        if result.returncode != 0 or not job_id.isdigit():
            reason = (result.stderr.strip() or result.stdout.strip() or 'no output').splitlines()
            raise UserError(f'sbatch refused stage {stage.label}: {reason[-1]} '
                            f'(exit code {result.returncode}); check --slurm-args')
        return job_id
