"""Claim one stage and train it in a child process while its record in the manifest follows it.

A stage is claimed in one locked step that no other kt can interleave with. Under the
manifest's lock, it is refused when another live process on this machine trains it (its
training process, or the kt that claimed it and has not started that process yet), when
its directory holds a symbolic link or anything but folders and regular files (mmengine
writes its checkpoints, ``last_checkpoint`` and logs there with plain ``open()``, which
would follow a link out of the work dir), and when it holds checkpoints although no kt run
of it is recorded, i.e. its record has no status (a received work dir's planted
``epoch_N.pth`` would otherwise be resumed, or adopted as trained). Otherwise it is recorded
as running, with this process as its owner, in the same step.
"""
import os
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..errors import UserError
from ..reading import UnsafeFileError, no_links_below
from ..stages.manifest import Manifest
from ..stages.planned_stage import PlannedStage
from .launcher import TrainProgress, run_stage
from .slurm import remember_job


def train_recorded_stage(manifest: Manifest, stage: PlannedStage, command: List[str],
                         on_progress: Callable[[TrainProgress], None],
                         on_line: Optional[Callable[[str], None]] = None,
                         env: Optional[Dict[str, str]] = None,
                         on_start: Optional[Callable[[subprocess.Popen], None]] = None,
                         ) -> None:
    """Run ``command`` (from :func:`~ktcli.sequencing.launcher.train_command`) and keep the
    stage's record: running (with host, process and Slurm job), its training time over
    every session (saved with each progress line, so a killed kt loses little of it),
    then done or failed.

    Args:
        manifest (Manifest): The work dir's manifest.
        stage (PlannedStage): The stage.
        command (list[str]): The command that trains it.
        on_progress (callable): Called with each parsed progress line.
        on_line (callable, optional): Called with every output line.
        env (dict, optional): Environment variables to set for the child.
        on_start (callable, optional): Called with the child process once
            it has started.

    Raises:
        UserError: The stage was interrupted by a signal from outside (rerun
            to resume) or failed: a process reported an error (whatever the
            exit code), or it ended without its checkpoint (the reason and
            where its logs are).
    """
    # Time spent in earlier, interrupted sessions of this stage.
    earlier_seconds = (manifest.stage(stage.digest) or {}).get('train_seconds', 0.0)
    if os.environ.get('SLURM_JOB_ID'):
        # The job this stage trains in is this user's own (kt runs inside it), whoever
        # submitted it: kt status may ask Slurm about it.
        remember_job(os.environ['SLURM_JOB_ID'], stage.digest)
    claim_stage(manifest, stage, **stage.placement(manifest.work_dir),
                train_seconds=earlier_seconds, host=socket.gethostname(), pid=None,
                job_id=os.environ.get('SLURM_JOB_ID'), reason=None)
    started = time.monotonic()

    def save_time() -> None:
        manifest.update(stage.digest, train_seconds=earlier_seconds + time.monotonic() - started)

    def started_process(process: subprocess.Popen) -> None:
        manifest.update(stage.digest, pid=process.pid)
        if on_start is not None:
            on_start(process)

    def progressed(update: TrainProgress) -> None:
        on_progress(update)
        save_time()

    try:
        run = run_stage(command, progressed, on_line, env, started_process)
    finally:
        save_time()
    if run.outcome == 'interrupted':
        manifest.update(stage.digest, status='interrupted', reason=None, pid=None)
        raise UserError(f'stage {stage.label} was interrupted (exit code {run.code}); rerun the '
                        'same command to resume it from its last finished epoch')
    if run.outcome == 'failed' or not stage.checkpoint.is_file():
        reason = run.reason if run.outcome == 'failed' else 'it ended without its checkpoint'
        manifest.update(stage.digest, status='failed', reason=reason, pid=None)
        raise UserError(f'stage {stage.label} failed: {reason} (exit code {run.code}; logs in '
                        f'{stage.dir}); a rerun fails the same way until that is fixed')
    manifest.update(stage.digest, status='done', reason=None, pid=None)


def process_alive(pid: Optional[int], stage_dir: Path) -> bool:
    """Whether process ``pid`` of this machine is alive and training ``stage_dir``."""
    if not pid:
        return False
    try:
        command_line = Path(f'/proc/{pid}/cmdline').read_bytes()
    except OSError:
        return False
    return str(stage_dir).encode() in command_line


# What mmengine leaves in a stage directory that a resume would take up.
RESUMABLE = ('epoch_*.pth', 'last_checkpoint')


def process_start(pid: int) -> Optional[int]:
    """When process ``pid`` of this machine started (clock ticks since boot), or None."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()
    except OSError:
        return None
    return int(fields[19]) if len(fields) > 19 else None


def this_process() -> List[int]:
    """This process as a record's ``owner``: its pid and start time (pids are reused)."""
    return [os.getpid(), process_start(os.getpid()) or 0]


def refuse_if_live(stage: PlannedStage, record: Optional[dict]) -> None:
    """Refuse a stage that another live process on this machine is training.

    Raises:
        UserError: Its training process, or the kt that claimed it, is alive.
    """
    record = record or {}
    if record.get('status') != 'running' or record.get('host') not in (None,
                                                                        socket.gethostname()):
        return
    owner = record.get('owner') or [0, 0]
    pid = record.get('pid')
    if process_alive(pid, stage.dir):
        who = f'process {pid}'
    elif owner[0] != os.getpid() and process_start(owner[0]) == owner[1]:
        who = f'kt process {owner[0]}'
    else:
        return
    raise UserError(f'stage {stage.label} is being trained by {who} (another kt); wait for it '
                    'to finish, or stop it, then rerun')


def check_stage_dir(work_dir: Path, stage: PlannedStage, started: bool) -> None:
    """Refuse a stage directory that training would write out of, or resume from files
    no kt run of it left.

    Raises:
        UnsafeFileError: A link, FIFO, device or socket in the directory.
        UserError: Checkpoints in the directory of a stage never started.
    """
    folder = no_links_below(work_dir, Path(stage.dir).relative_to(work_dir))
    if not folder.is_dir():
        return
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            mode = os.lstat(os.path.join(root, name)).st_mode
            if stat.S_ISLNK(mode):
                raise UnsafeFileError(f'{os.path.join(root, name)} is a symbolic link; kt never '
                                      'writes through links in a work dir: remove it and rerun')
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UnsafeFileError(f'{os.path.join(root, name)} is not a regular file: '
                                      'remove it and rerun')
    planted = sorted(path.name for pattern in RESUMABLE for path in folder.glob(pattern))
    if planted and not started:
        raise UserError(f'{folder} holds {", ".join(planted)}, but no kt run of this stage is '
                        'recorded, so kt neither resumes nor adopts them: move them out of the '
                        'folder (nothing is deleted) and rerun')


def claim_stage(manifest: Manifest, stage: PlannedStage, **fields) -> dict:
    """Record ``stage`` as running (with ``fields``) after the checks above, in one step.

    Args:
        manifest (Manifest): The work dir's manifest.
        stage (PlannedStage): The stage to train.
        **fields: The record fields to set with ``status='running'``.

    Returns:
        dict: The record.

    Raises:
        UserError: See :func:`refuse_if_live` and :func:`check_stage_dir`.
    """
    def check(record: Optional[dict]) -> None:
        refuse_if_live(stage, record)
        # A status is what kt records once it queues or starts a stage (a received
        # stage directory that no record names, like a planted next stage, has none).
        check_stage_dir(manifest.work_dir, stage, bool((record or {}).get('status')))

    return manifest.update(stage.digest, check=check, **fields, status='running',
                           owner=this_process())
