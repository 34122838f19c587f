"""Ask the Slurm that is there what became of kt's jobs.

Live jobs come from ``squeue``. Ended jobs come from ``sacct`` where the
cluster keeps accounting (slurmdbd), else from ``scontrol show job``, which
knows a job for ``MinJobAge`` seconds after it ended (300 by default); a job
neither knows is left to the stage's own record. :class:`JobReport` says which
source answered when the first choice could not.
"""
import getpass
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

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
