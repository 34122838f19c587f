"""Train one stage in a child process while its record in the manifest follows it."""
import os
import socket
import subprocess
import time
from typing import Callable, Dict, List, Optional

from ..errors import UserError
from .launcher import TrainProgress, run_stage
from .manifest import Manifest
from .planned_stage import PlannedStage
from .stage_claim import claim_stage
from .submitted_jobs import remember_job


def train_recorded_stage(manifest: Manifest, stage: PlannedStage, command: List[str],
                         on_progress: Callable[[TrainProgress], None],
                         on_line: Optional[Callable[[str], None]] = None,
                         env: Optional[Dict[str, str]] = None,
                         on_start: Optional[Callable[[subprocess.Popen], None]] = None,
                         ) -> None:
    """Run ``command`` (from :func:`~ktcli.stages.launcher.train_command`) and keep the
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
