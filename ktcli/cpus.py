"""Count the CPUs kt may use (its affinity, and inside a Slurm job what Slurm allotted)."""
import os
from typing import Optional


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity, not the machine's count, and
    inside a Slurm job no more than Slurm allotted to it (see :func:`slurm_cpus`)."""
    if hasattr(os, 'sched_getaffinity'):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    allotted = slurm_cpus()
    return max(1, min(cpus, allotted)) if allotted else cpus


def slurm_cpus() -> Optional[int]:
    """The CPUs Slurm allotted to this process, or None outside a Slurm job.

    A task of an ``srun`` step gets ``SLURM_CPUS_PER_TASK`` (``--cpus-per-task``), else
    its share of the job's CPUs on its node; a job's batch script (no step) gets all of
    the job's CPUs on its node (``SLURM_CPUS_ON_NODE``). Without a task plugin that binds
    CPUs, this is the only place a job learns its size: the node's count is not its own.
    """
    env = os.environ
    try:
        on_node = int(env['SLURM_CPUS_ON_NODE'])
    except (KeyError, ValueError):
        return None
    if 'SLURM_STEP_ID' not in env:
        return on_node
    if env.get('SLURM_CPUS_PER_TASK', '').isdigit():
        return int(env['SLURM_CPUS_PER_TASK'])
    tasks = _tasks_on_node(env.get('SLURM_STEP_TASKS_PER_NODE', ''),
                           int(env.get('SLURM_NODEID', '0') or 0))
    return max(1, on_node // tasks)


def _tasks_on_node(tasks_per_node: str, node: int) -> int:
    """The tasks of node ``node`` in Slurm's compressed list, e.g. ``'2(x3),1'``."""
    counts = []
    for part in filter(None, tasks_per_node.split(',')):
        count, _, repeat = part.partition('(x')
        counts += [int(count)] * int(repeat.rstrip(')') or 1)
    return counts[node] if node < len(counts) and counts[node] > 0 else 1
