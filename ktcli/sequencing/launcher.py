"""Run one stage's training as a child process and follow its progress."""
import collections
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..errors import EXIT_INTERRUPTED
from ..resources import TRAIN_SCRIPT

LAUNCHERS = ('none', 'pytorch', 'slurm')

TRAIN_LINE = re.compile(
    r'Epoch\(train\)\s+\[(?P<epoch>\d+)\]\[\s*(?P<iter>\d+)/(?P<iters>\d+)\]'
    r'.*?eta: (?P<eta>(?:\d+ days?, )?[\d:]+)'
    r'.*?loss_ce: (?P<loss_ce>[-+\d.eE]+)'
    r'(?:.*?loss_or: (?P<loss_or>[-+\d.eE]+))?')


EXCEPTION_LINE = re.compile(r'^\w*(Error|Exception|Interrupt)\b.*')
# The last line of a traceback: the exception (module path allowed), at the line's start.
RAISED = re.compile(r'^(?:[A-Za-z_]\w*\.)*(?P<name>[A-Za-z_]\w*(?:Error|Exception|Interrupt))'
                    r'\b(?::|$)')
TRACEBACK = 'Traceback (most recent call last):'
# What torch (``[rank1]: ``) or ``srun --label`` (``1: ``) put before a process's lines.
PROCESS_PREFIX = re.compile(r'^(?:\[rank\d+\]|\d+): ')
# Exceptions that report a signal from outside, not a fault: Ctrl-C, torchrun's SIGTERM.
SIGNAL_EXCEPTIONS = ('KeyboardInterrupt', 'SignalException')


@dataclass
class TrainProgress:
    """What one mmengine log line says about a running stage."""

    epoch: int
    iter: int
    iters_per_epoch: int
    eta: str
    loss_ce: float
    loss_or: Optional[float]


def parse_progress(line: str) -> Optional[TrainProgress]:
    """Read epoch, iteration, ETA and losses from an mmengine training log line."""
    match = TRAIN_LINE.search(line)
    if match is None:
        return None
    loss_or = match.group('loss_or')
    return TrainProgress(int(match.group('epoch')), int(match.group('iter')),
                         int(match.group('iters')), match.group('eta'),
                         float(match.group('loss_ce')), float(loss_or) if loss_or else None)


def failure_reason(tail: List[str]) -> str:
    """The most telling line of a failed stage's last output lines.

    kt's own one-line ``error: ...`` if there is one, else the last exception
    line of a traceback, else the last non-empty line.
    """
    lines = [line.strip() for line in tail if line.strip()]
    for prefix_match in (lambda line: line.startswith('error: '), EXCEPTION_LINE.match):
        found = [line for line in lines if prefix_match(line)]
        if found:
            return found[-1].removeprefix('error: ')
    return lines[-1] if lines else 'no output'


@dataclass
class StageRun:
    """How a stage's training process (and every process it started) ended.

    Args:
        code (int): Its exit code (negative: the signal that ended it).
        tail (list[str]): Its last output lines.
        kt_error (str, optional): kt's first one-line ``error: ...`` (which
            names the fix) from any of its processes.
        raised (str, optional): The exception line of the first traceback any
            of them printed.
        signalled (bool): A process reported a signal from outside (Ctrl-C:
            kt's ``interrupted`` line or a KeyboardInterrupt).
    """

    code: int
    tail: List[str]
    kt_error: Optional[str] = None
    raised: Optional[str] = None
    signalled: bool = False
    traceback: bool = field(default=False, repr=False)

    def read(self, line: str) -> None:
        """Note what one output line says about how the run ends."""
        line = PROCESS_PREFIX.sub('', line, count=1)
        raised = RAISED.match(line) if self.traceback else None
        if line.startswith('error: '):
            self.kt_error = self.kt_error or line.removeprefix('error: ').strip()
        elif line == 'interrupted' or line.startswith('interrupted: '):
            self.signalled = True
        elif line == TRACEBACK:
            self.traceback = True
        elif raised and raised.group('name') in SIGNAL_EXCEPTIONS:
            self.signalled = True
        elif raised:
            self.raised = self.raised or line.strip()

    @property
    def error(self) -> Optional[str]:
        """The error its processes reported: kt's own line, else the first exception."""
        return self.kt_error or self.raised

    @property
    def outcome(self) -> str:
        """``'done'`` (exit 0), ``'failed'`` or ``'interrupted'``.

        A process that raised an error makes the run failed whatever the exit
        code: under srun the other tasks are then terminated (exit 143), and
        a rerun would fail again. Only a signal from outside with no error
        (Ctrl-C, kill, scancel) is an interruption, which a rerun resumes.
        """
        if self.code == 0:
            return 'done'
        if self.signalled or (self.error is None and was_interrupted(self.code)):
            return 'interrupted'
        return 'failed'

    @property
    def reason(self) -> str:
        """Why it failed: the first error reported, else the tail's telling line."""
        return self.error or failure_reason(self.tail)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def train_command(config: Path, work_dir: Path, processes: int = 1,
                  launcher: str = 'none', validate: bool = False) -> List[str]:
    """The command line that trains (or resumes) one stage.

    One process: ``python tools/train.py`` (with mmengine's validation only when
    ``validate``). Several
    processes on this node
    (or ``launcher='pytorch'``): torchrun. ``launcher='slurm'`` (inside a
    Slurm job, see :mod:`ktcli.sequencing.stage_job`): srun with one task per
    process over the job's allocation.

    Args:
        config (Path): The stage config.
        work_dir (Path): The stage's work directory.
        processes (int): Data-parallel processes. Defaults to 1.
        launcher (str): ``'none'``, ``'pytorch'`` or ``'slurm'``.
            Defaults to ``'none'``.
        validate (bool): Run mmengine's val loop every epoch (a stage with a
            validation split, see :mod:`~ktcli.stages.validation_config`).
            Defaults to False.

    Returns:
        list[str]: The command.
    """
    # kt scores every stage itself once it is trained (its cached test outputs, alone and in
    # the ensemble), so without a validation split mmengine's validation would only run the
    # same test split again.
    train = [str(TRAIN_SCRIPT), str(config), '--work-dir', str(work_dir), '--resume',
             *([] if validate else ['--no-validate'])]
    if launcher == 'slurm':
        return ['srun', f'--ntasks={processes}', '--kill-on-bad-exit=1',
                sys.executable, '-u', *train, '--launcher', 'slurm']
    if launcher == 'pytorch' or processes > 1:
        return [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={processes}',
                f'--master_port={_free_port()}', *train, '--launcher', 'pytorch']
    return [sys.executable, *train]


def run_stage(command: List[str], on_progress: Callable[[TrainProgress], None],
              on_line: Optional[Callable[[str], None]] = None,
              env: Optional[Dict[str, str]] = None,
              on_start: Optional[Callable[[subprocess.Popen], None]] = None) -> StageRun:
    """Run ``command``, reporting progress as its log lines arrive.

    Args:
        command (list[str]): From :func:`train_command`.
        on_progress (callable): Called with each parsed progress line.
        on_line (callable, optional): Called with every output line
            (``--verbose``). Defaults to None.
        env (dict, optional): Environment variables to set for the child.
            Defaults to None.
        on_start (callable, optional): Called with the child process once
            it has started. Defaults to None.

    Returns:
        StageRun: Its exit code, last 40 output lines and first error.
    """
    tail = collections.deque(maxlen=40)
    run = StageRun(0, [])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1,
                               env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})))
    if on_start is not None:
        on_start(process)
    for line in process.stdout:
        line = line.rstrip('\n')
        tail.append(line)
        run.read(line)
        if on_line is not None:
            on_line(line)
        progress = parse_progress(line)
        if progress is not None:
            on_progress(progress)
    run.code, run.tail = process.wait(), list(tail)
    return run


def was_interrupted(code: int) -> bool:
    """Whether a stage's exit code means it was stopped (a signal, Ctrl-C), not that it failed.

    Only an interrupted stage is worth resuming as it is; one that failed
    (bad data, a bad value, out of memory) fails again until that is fixed.
    """
    return code < 0 or code in (EXIT_INTERRUPTED, 128 + signal.SIGKILL, 128 + signal.SIGTERM)
