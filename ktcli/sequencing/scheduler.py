"""Run the stages of one or more sequences on this machine, several at a time.

Only a chain is sequential (stage k learns from stages 1..k-1): the stages
of independent sequences (Base models, other alphas, other seeds) can train
side by side. :class:`LocalScheduler` starts every stage whose teachers are
done, up to ``parallel`` at once, longest remaining chain first; each gets
its own GPUs (``CUDA_VISIBLE_DEVICES``) or, on a CPU-only machine, its share
of the CPUs' threads: cores / the stages running once it starts (a stage
that starts alone, like the end of a chain, gets every core). Stages are not
pinned to CPUs: their data loaders keep the worker count a serial run has, so
a stage trains to the same weights either way.
"""
import concurrent.futures
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from ..cpus import available_cpus
from ..errors import UserError
from ..stages.config_files import write_stage_config
from ..stages.manifest import Manifest
from ..stages.planned_stage import PlannedStage, unique_stages
from ..stages.validation_config import validates
from .launcher import TrainProgress, train_command
from .stage_training import refuse_if_live, train_recorded_stage

# Seconds a stopped kt waits for its stages to stop on their own, then after a SIGINT.
STOP_GRACE = (5, 25)
# Off a terminal, a stage prints a plain progress line at every tenth of its iterations
# and at the end of each epoch.
PLAIN_PROGRESS_STEPS = 10


@dataclass
class Slot:
    """Where one stage runs: its own GPUs, or (``gpus`` None) a share of the CPUs.

    Args:
        gpus (str, optional): Its ``CUDA_VISIBLE_DEVICES``, e.g. ``'2,3'``.
    """

    gpus: Optional[str] = None

    def env(self, sharing: int, processes: int) -> Dict[str, str]:
        """The environment variables of a stage started here while ``sharing`` stages
        (itself included) run: its GPUs, or cores / ``sharing`` threads per process. A
        stage alone keeps the environment as it is (the user's own thread settings)."""
        if self.gpus is not None:
            return dict(CUDA_VISIBLE_DEVICES=self.gpus)
        if sharing <= 1:
            return {}
        threads = str(max(1, available_cpus() // sharing // processes))
        return dict(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)


def machine_slots(parallel: int, processes: int) -> List[Slot]:
    """At most ``parallel`` slots of ``processes`` GPUs each or, without GPUs, ``parallel``
    slots that share the CPUs."""
    import torch
    gpus = torch.cuda.device_count()
    if not gpus:
        return [Slot() for _ in range(max(1, parallel))]
    parallel = max(1, min(parallel, gpus // processes))
    if parallel == 1:
        return [Slot()]
    return [Slot(','.join(str(gpu) for gpu in range(slot * processes, (slot + 1) * processes)))
            for slot in range(parallel)]


def describe_slots(slots: Sequence[Slot]) -> str:
    """E.g. ``2 stages at a time: GPU 0; GPU 1`` or ``... sharing 8 CPU cores``."""
    where = ('; '.join(f'GPU {slot.gpus}' for slot in slots) if slots[0].gpus is not None
             else f'sharing {available_cpus()} CPU cores (cores / running stages threads each)')
    return f'{len(slots)} stages at a time: {where}'


def chain_lengths(stages: Sequence[PlannedStage]) -> Dict[str, int]:
    """For each stage, the longest chain of stages that must train after it."""
    students: Dict[str, List[str]] = {stage.digest: [] for stage in stages}
    for stage in stages:
        for teacher in stage.teachers:
            if teacher in students:
                students[teacher].append(stage.digest)
    lengths: Dict[str, int] = {}

    def length(digest: str) -> int:
        if digest not in lengths:
            lengths[digest] = max((1 + length(s) for s in students[digest]), default=0)
        return lengths[digest]

    return {digest: length(digest) for digest in students}


class LocalScheduler:
    """Train planned stages on this machine, up to ``parallel`` at a time.

    Args:
        processes (int): Data-parallel processes per stage.
        launcher (str): ``'none'`` or ``'pytorch'`` (torchrun).
        parallel (int): Stages at once. Defaults to 1.
        verbose (bool): Show the stages' full logs live.
        console (Console, optional): Where to print.
    """

    def __init__(self, processes: int = 1, launcher: str = 'none', parallel: int = 1,
                 verbose: bool = False, console: Optional[Console] = None) -> None:
        self.processes = processes
        self.launcher = launcher
        self.parallel = parallel
        self.verbose = verbose
        self.console = console or Console()
        self._children: List[subprocess.Popen] = []

    def run(self, manifest: Manifest, stages: Sequence[PlannedStage]) -> bool:
        """Train every stage among ``stages`` that is not done, each once its teachers are,
        several at a time where ``parallel`` allows (the arguments and the return value:
        :class:`~ktcli.sequencing.sequence.StageScheduler`).

        Raises:
            UserError: A stage failed or was interrupted (after the stages
                already running have finished), or another process is
                training one of them.
        """
        stages = unique_stages(stages)
        # Teachers planned elsewhere (a student's members) count once they are done.
        known = {stage.digest for stage in stages}.union(*(s.teachers for s in stages))
        done = {digest for digest in known if manifest.is_done(digest)}
        waiting = [stage for stage in stages if stage.digest not in done]
        for stage in waiting:
            refuse_if_live(stage, manifest.stage(stage.digest))
        if not waiting:
            return True
        lengths = chain_lengths(stages)
        free = machine_slots(min(self.parallel, len(waiting)), self.processes)
        if len(free) > 1:
            self.console.print(describe_slots(free))
        failures: List[UserError] = []
        running: Dict[concurrent.futures.Future, tuple] = {}
        with self._progress() as progress, \
                concurrent.futures.ThreadPoolExecutor(len(free)) as pool:
            try:
                while waiting or running:
                    ready = sorted((s for s in waiting if done.issuperset(s.teachers)),
                                   key=lambda s: -lengths[s.digest])
                    # The stages that will run once these start share the CPUs.
                    sharing = len(running) + min(len(ready), len(free))
                    while ready and free and not failures:
                        stage, slot = ready.pop(0), free.pop(0)
                        waiting.remove(stage)
                        future = pool.submit(self._train, manifest, stage,
                                             slot.env(sharing, self.processes), progress)
                        running[future] = (stage, slot)
                    if not running:
                        break
                    finished, _ = concurrent.futures.wait(
                        running, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in finished:
                        stage, slot = running.pop(future)
                        free.append(slot)
                        try:
                            future.result()
                        except UserError as error:
                            failures.append(error)
                            continue
                        done.add(stage.digest)
                        progress.console.print(f'stage {stage.label} [dim]{stage.digest}[/]: '
                                               'trained')
            except KeyboardInterrupt:
                self._stop_children()
                raise
        if failures:
            raise failures[0]
        return True

    def _train(self, manifest: Manifest, stage: PlannedStage, env: Dict[str, str],
               progress: Progress) -> None:
        """Train one stage with ``env`` set (runs in a worker thread)."""
        write_stage_config(stage.cfg, stage.dir)
        where = (f' on GPU {env["CUDA_VISIBLE_DEVICES"]}' if 'CUDA_VISIBLE_DEVICES' in env
                 else f' with {env["OMP_NUM_THREADS"]} thread(s)' if env else '')
        task = progress.add_task('', total=None, stage=stage.label, status=f'starting{where}',
                                 losses='')

        # The last tenth of the stage a plain progress line was printed for.
        printed = [-1]

        def show(update: TrainProgress) -> None:
            total = stage.epochs * update.iters_per_epoch
            done = (update.epoch - 1) * update.iters_per_epoch + update.iter
            losses = f'loss_ce {update.loss_ce:.4f}'
            if update.loss_or is not None:
                losses += f'  loss_or {update.loss_or:.4f}'
            status = (f'epoch {update.epoch}/{stage.epochs} '
                      f'iter {update.iter}/{update.iters_per_epoch} ETA {update.eta}')
            progress.update(task, total=total, completed=done, losses=losses, status=status)
            tenth = PLAIN_PROGRESS_STEPS * done // total
            if not progress.console.is_terminal and (
                    tenth > printed[0] or update.iter == update.iters_per_epoch):
                # No live bar off a terminal (a log file, nohup, CI): a plain line instead.
                printed[0] = tenth
                progress.console.print(f'stage {stage.label}: {status} ({100 * done // total}%) '
                                       f'{losses}', markup=False, highlight=False, soft_wrap=True)

        def print_line(line: str) -> None:
            prefix = f'[{stage.label}] ' if self.parallel > 1 else ''
            progress.console.print(prefix + line, markup=False, highlight=False)

        command = (train_command(stage.config_path, stage.dir, self.processes, self.launcher,
                                  validates(stage.cfg))
                   + stage.inputs.arguments())
        try:
            train_recorded_stage(manifest, stage, command, show,
                                 print_line if self.verbose else None, env,
                                 self._children.append)
        finally:
            progress.remove_task(task)

    def _stop_children(self) -> None:
        """After Ctrl-C: give the stages time to stop (they got it too from a terminal),
        then send them SIGINT, then kill what is left."""
        for grace, stop in zip(STOP_GRACE, (lambda p: p.send_signal(signal.SIGINT),
                                            lambda p: p.kill())):
            deadline = time.monotonic() + grace
            for process in self._children:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    stop(process)

    def _progress(self) -> Progress:
        return Progress(SpinnerColumn(), TextColumn('[bold]stage {task.fields[stage]}'),
                        BarColumn(), TextColumn('{task.fields[status]}'),
                        TextColumn('{task.fields[losses]}'), console=self.console,
                        transient=True)
