"""The process group of a stage's ``srun`` tasks, from Slurm's own variables.

mmengine's Slurm initialisation selects a CUDA device before it joins the
group, so on a node without GPUs every task dies ("Found no NVIDIA driver").
There, kt joins the gloo group itself: rank ``SLURM_PROCID`` of
``SLURM_NTASKS``, local rank ``SLURM_LOCALID``, the rendezvous on the first
host of the step's nodes, at a port derived from the job id so that two jobs
sharing a node do not meet at the same one. On GPU nodes mmengine's own path
runs, with the same port (:func:`job_port`).
"""
import os
import subprocess
from typing import Dict, Mapping, Optional

# Rendezvous ports kt derives from job ids: below Linux's ephemeral range (32768-60999).
PORT_BASE, PORT_SPAN = 15000, 15000


def job_port(job_id: Optional[str]) -> Optional[str]:
    """The rendezvous port of Slurm job ``job_id`` (None outside a job)."""
    return str(PORT_BASE + int(job_id) % PORT_SPAN) if job_id and job_id.isdigit() else None


def first_host(nodes: str) -> str:
    """The first host of a Slurm node list (``node[03-05],gpu1`` -> ``node03``)."""
    if not any(mark in nodes for mark in '[,'):
        return nodes
    hosts = subprocess.run(['scontrol', 'show', 'hostnames', nodes], capture_output=True,
                           text=True, check=True).stdout.split()
    return hosts[0]


def slurm_rendezvous(env: Mapping[str, str]) -> Dict[str, str]:
    """torch.distributed's environment (``env://``) for this srun task.

    Variables already set (``MASTER_ADDR``, ``MASTER_PORT``) are kept.

    Args:
        env (Mapping): The task's environment.

    Returns:
        dict: ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK`` and
        ``LOCAL_RANK``.
    """
    nodes = env.get('SLURM_STEP_NODELIST') or env.get('SLURM_JOB_NODELIST') or \
        env['SLURM_NODELIST']
    return dict(
        MASTER_ADDR=env.get('MASTER_ADDR') or first_host(nodes),
        MASTER_PORT=env.get('MASTER_PORT') or job_port(env.get('SLURM_JOB_ID')) or '29500',
        WORLD_SIZE=env.get('SLURM_STEP_NUM_TASKS') or env['SLURM_NTASKS'],
        RANK=env['SLURM_PROCID'],
        LOCAL_RANK=env.get('SLURM_LOCALID', '0'))


def join_slurm_group() -> None:
    """Join the gloo process group of this srun task (no CUDA call)."""
    import torch.distributed
    if torch.distributed.is_initialized():
        return
    os.environ.update(slurm_rendezvous(os.environ))
    torch.distributed.init_process_group(backend='gloo')
