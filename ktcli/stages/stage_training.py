"""Train one stage in a child process while its record in the manifest follows it."""
import os
import socket
import subprocess
import time
from typing import Callable, Dict, List, Optional

from ..errors import UserError
from .launcher import TrainProgress, failure_reason, run_stage, was_interrupted
from .manifest import Manifest
from .planned_stage import PlannedStage
from .stage_claim import claim_stage


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
        UserError: The stage was interrupted (rerun to resume) or failed
            (the reason and where its logs are).
    """
    # Time spent in earlier, interrupted sessions of this stage.
    earlier_seconds = (manifest.stage(stage.digest) or {}).get('train_seconds', 0.0)
    claim_stage(manifest, stage, **stage.placement(manifest.work_dir),
                train_seconds=earlier_seconds, host=socket.gethostname(), pid=None,
                job_id=os.environ.get('SLURM_JOB_ID'))
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
        code, tail = run_stage(command, progressed, on_line, env, started_process)
    finally:
        save_time()
    if was_interrupted(code):
        manifest.update(stage.digest, status='interrupted', pid=None)
        raise UserError(f'stage {stage.label} was interrupted (exit code {code}); rerun the '
                        'same command to resume it from its last finished epoch')
    if code != 0 or not stage.checkpoint.is_file():
        manifest.update(stage.digest, status='failed', pid=None)
        raise UserError(f'stage {stage.label} failed: {failure_reason(tail)} '
                        f'(exit code {code}; logs in {stage.dir})')
    manifest.update(stage.digest, status='done', pid=None)
