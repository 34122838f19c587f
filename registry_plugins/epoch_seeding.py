"""Randomness that depends on the epoch alone, so a resumed run repeats an uninterrupted one."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import FUNCTIONS
from mmengine.runner import set_random_seed
from mmpretrain.registry import HOOKS


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed every random generator starts ``epoch`` (0-based) of a run with ``seed`` from.

    Args:
        seed (int): The run's seed (``randomness.seed``).
        epoch (int): The epoch about to start.

    Returns:
        int: A 31-bit seed, a fixed function of ``(seed, epoch)``.
    """
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint32)
    return int(state[0]) & 0x7FFFFFFF


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Before each training epoch, seed python, numpy and torch from (seed, epoch).

    An uninterrupted run and one resumed from the checkpoint of epoch k then
    draw the same random numbers in epoch k + 1: the data order (mmengine's
    sampler already shuffles by ``seed + epoch``), the augmentation in the
    main process, the seeds the data loader hands its workers (see
    :func:`seed_loader_worker`) and any dropout. Nothing random has to be
    saved in checkpoints, and what ran between epochs (validation) cannot
    shift the streams.

    Args:
        seed (int, optional): The base seed. Defaults to None (the runner's
            ``randomness.seed``).
    """

    priority = 'VERY_HIGH'

    def __init__(self, seed: int = None) -> None:
        self.seed = seed

    def before_train_epoch(self, runner) -> None:
        """Seed every generator for the epoch about to start."""
        seed = self.seed if self.seed is not None else runner.seed
        set_random_seed(epoch_seed(seed, runner.epoch),
                        deterministic=runner._randomness_cfg.get('deterministic', False))


@FUNCTIONS.register_module()
def seed_loader_worker(worker_id: int) -> None:
    """A data loader worker's ``worker_init_fn``: seed python and numpy like torch.

    torch seeds each worker with the loader's base seed (drawn from the main
    process's torch generator, which :class:`EpochSeedHook` seeds every
    epoch) plus the worker id; python's and numpy's generators get the same
    value, so augmentation differs between epochs and workers yet repeats
    exactly when the run is resumed. Use with ``persistent_workers=False``.

    Args:
        worker_id (int): The worker's index (unused: torch's seed includes it).
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
