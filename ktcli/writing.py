"""Write kt's files so that a kill, a full disk or a read-only folder loses nothing, and
count the CPUs kt may use."""
import contextlib
import os
import threading
from pathlib import Path
from typing import Optional, Union

from .errors import UserError, describe, storage_fix


def write_atomically(path: Path, content: Union[str, bytes]) -> None:
    """Replace ``path`` by a file holding ``content``, all at once.

    The content goes to a temporary file beside ``path``, which is synced and
    renamed over it: a reader finds the old or the new complete file, never a
    part. If writing fails, the temporary file is removed and ``path`` is
    left as it was.

    Args:
        path (Path): The file to write.
        content (str | bytes): Its new content.

    Raises:
        UserError: The file cannot be written (disk full, read-only, no
            permission); the message names the path and the fix.
    """
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, 'wb' if isinstance(content, bytes) else 'w') as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        error.filename = str(path)
        raise UserError(describe(error) if storage_fix(error)
                        else f'cannot write {path}: {error.strerror or error}') from None


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
