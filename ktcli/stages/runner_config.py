"""Load a kt config for mmengine's Runner, as tools/train.py and tools/test.py do."""
import argparse
import os
from pathlib import Path
from typing import Optional

import torch
from mmengine.config import Config

from .. import writing
from ..errors import UserError
from .slurm_process_group import job_port, join_slurm_group


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
    from .stage_files import check_config, read_stage_config
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
    cpus = writing.available_cpus()
    if writing.slurm_cpus() is not None and 'OMP_NUM_THREADS' not in os.environ:
        # Torch would take every core of the node, whatever the job was given.
        torch.set_num_threads(cpus)
        os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = str(cpus)
        print(f'kt: {cpus} CPU(s) of the Slurm job for this process: {cpus} torch thread(s), '
              f'at most {cpus} data loader worker(s)', flush=True)
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
    cpus = writing.available_cpus()
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        workers = cfg[name].get('num_workers', 0) if cfg.get(name) else 0
        # A received config may ask for anything: at most one loader process per CPU.
        if not isinstance(workers, int) or workers > cpus:
            cfg[name].num_workers = cpus


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


def require_gpu(option: str) -> None:
    """Refuse ``option`` (mixed precision) on a machine without CUDA."""
    if not torch.cuda.is_available():
        raise UserError(f'{option} needs a GPU (mixed precision runs on CUDA); drop it here')
