"""Run one stage's training as a child process and follow its progress."""
import collections
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def train_command(config: Path, work_dir: Path, processes: int = 1,
                  launcher: str = 'none') -> List[str]:
    """The command line that trains (or resumes) one stage.

    One process: ``python tools/train.py``. Several processes on this node
    (or ``launcher='pytorch'``): torchrun. ``launcher='slurm'`` (inside a
    Slurm job, see :mod:`ktcli.stages.stage_job`): srun with one task per
    process over the job's allocation.

    Args:
        config (Path): The stage config.
        work_dir (Path): The stage's work directory.
        processes (int): Data-parallel processes. Defaults to 1.
        launcher (str): ``'none'``, ``'pytorch'`` or ``'slurm'``.
            Defaults to ``'none'``.

    Returns:
        list[str]: The command.
    """
    train = [str(TRAIN_SCRIPT), str(config), '--work-dir', str(work_dir), '--resume']
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
              on_start: Optional[Callable[[subprocess.Popen], None]] = None) -> tuple:
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
        tuple: The exit code and the last 40 output lines.
    """
    tail = collections.deque(maxlen=40)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1,
                               env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})))
    if on_start is not None:
        on_start(process)
    for line in process.stdout:
        line = line.rstrip('\n')
        tail.append(line)
        if on_line is not None:
            on_line(line)
        progress = parse_progress(line)
        if progress is not None:
            on_progress(progress)
    return process.wait(), list(tail)


def was_interrupted(code: int) -> bool:
    """Whether a stage's exit code means it was stopped (a signal, Ctrl-C), not that it failed.

    Only an interrupted stage is worth resuming as it is; one that failed
    (bad data, a bad value, out of memory) fails again until that is fixed.
    """
    return code < 0 or code in (EXIT_INTERRUPTED, 128 + signal.SIGKILL, 128 + signal.SIGTERM)
