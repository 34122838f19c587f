"""The child side of a stage's training or scoring: a kt config made ready for mmengine's
Runner in this process (``tools/train.py``, ``tools/test.py`` and kt's scoring use it).

A config is read (a stage's ``config.json`` as checked data), its work dir, launcher and
loader workers set for this machine, and the process joins its data-parallel group.

The process group of a stage's ``srun`` tasks comes from Slurm's own variables.
mmengine's Slurm initialisation selects a CUDA device before it joins the
group, so on a node without GPUs every task dies ("Found no NVIDIA driver").
There, kt joins the gloo group itself: rank ``SLURM_PROCID`` of
``SLURM_NTASKS``, local rank ``SLURM_LOCALID``, the rendezvous on the first
host of the step's nodes, at a port derived from the job id so that two jobs
sharing a node do not meet at the same one. On GPU nodes mmengine's own path
runs, with the same port (:func:`job_port`).
"""
import argparse
import os
import subprocess
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch
from mmengine.config import Config

from . import cpus
from .errors import UserError
from .stages.config_files import check_config, read_stage_config
from .stages.portable_config import dataloaders

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


def load_config(config: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Read a config and prepare it for a Runner.

    Applies ``cfg_options``, sets the work directory (``work_dir``, else the
    config's own, else ``work_dirs/<config name>``) and the launcher, and
    caps data loader workers at the CPUs available (inside a Slurm job, the
    CPUs Slurm gave it, which also set torch's threads). Without
    a GPU, distributed runs use the gloo backend and a DDP wrapper without
    device ids (mmengine would pass the local rank as a CUDA device), and a
    process launched by torchrun or srun joins its group here, since
    mmengine's own initialisation selects a CUDA device first.

    Args:
        config (str): Path of the config file.
        cfg_options (dict, optional): Overrides, ``{'a.b': value}``.
            Defaults to None.
        work_dir (str, optional): The run's work directory. Defaults to None.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
            Defaults to ``'none'``.

    Returns:
        Config: The ready config.
    """
    if not Path(config).is_file():
        raise UserError(f'config {config} does not exist; the shipped ones are under configs/kt/')
    import registry_plugins  # noqa: F401  (registers kt's modules, adapts checkpoint loading)
    # A stage's config.json (what kt trains) is read as data and checked, never executed.
    data_only = Path(config).suffix == '.json'
    cfg = (read_stage_config(Path(config)) if data_only
           else Config.fromfile(config, format_python_code=False))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        if data_only:
            check_config(cfg, f'{config} with --cfg-options')
    cfg.work_dir = work_dir or cfg.get('work_dir') or str(Path('work_dirs') / Path(config).stem)
    cfg.launcher = launcher
    fit_topk_to_classes(cfg)
    cap_loader_workers(cfg)
    allotted = cpus.available_cpus()
    if cpus.slurm_cpus() is not None and 'OMP_NUM_THREADS' not in os.environ:
        # Torch would take every core of the node, whatever the job was given.
        torch.set_num_threads(allotted)
        os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = str(allotted)
        print(f'kt: {allotted} CPU(s) of the Slurm job for this process: {allotted} torch '
              f'thread(s), at most {allotted} data loader worker(s)', flush=True)
    if launcher == 'slurm':
        # The tasks of a step meet at a port of their job's own: mmengine takes 29500,
        # which two jobs sharing a node would both take.
        os.environ.setdefault('MASTER_PORT', job_port(os.environ.get('SLURM_JOB_ID')) or '29500')
    if not torch.cuda.is_available():
        cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
        if launcher != 'none' and cfg.get('model_wrapper_cfg') is None:
            cfg.model_wrapper_cfg = dict(
                type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False)
        if launcher == 'pytorch' and not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend='gloo')
        elif launcher == 'slurm':
            join_slurm_group()
    return cfg


def cap_loader_workers(cfg: Config) -> None:
    """Give no data loader of ``cfg`` more worker processes than the CPUs kt may use (the
    paper's configs ask for 8)."""
    allotted = cpus.available_cpus()
    for loader in dataloaders(cfg):
        workers = loader.get('num_workers', 0)
        # A received config may ask for anything: at most one loader process per CPU.
        if not isinstance(workers, int) or workers > allotted:
            loader.num_workers = allotted


def fit_topk_to_classes(cfg: Config) -> None:
    """Drop the top-k accuracies that a dataset's class count makes meaningless.

    mmpretrain's ``Accuracy`` raises for a k above the number of classes (top-5 of a
    3-class dataset), after the first epoch has trained; the evaluators keep the k up
    to the head's ``num_classes``.

    Args:
        cfg (Config): A config whose ``model.head.num_classes`` is set.
    """
    classes = cfg.model.get('head', {}).get('num_classes')
    for name in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(name)
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            if not classes or not evaluator or evaluator.get('type') != 'Accuracy':
                continue
            topk = evaluator.get('topk', (1, ))
            topk = topk if isinstance(topk, (list, tuple)) else (topk, )
            evaluator.topk = tuple(k for k in topk if k <= classes) or (1, )


def parse_runner_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Add the options every Runner entry point shares, then parse the command line.

    Adds ``--cfg-options``, ``--launcher`` and the ``--local_rank`` that
    older launchers pass (exported as ``LOCAL_RANK``).

    Args:
        parser (ArgumentParser): The tool's parser with its own arguments.

    Returns:
        Namespace: The parsed arguments.
    """
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config settings, e.g. train_cfg.max_epochs=10')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher for distributed runs')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args
