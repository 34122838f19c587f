"""A stage config's validation split (mmengine's val loop on images held out of training) and
which epoch's weights the stage hands on (``--checkpoint``).

With ``--val-split`` other than ``none`` the training dataset keeps only its training
indices and ``val_dataloader`` reads the held-out ones of the same split with the test
pipeline; mmengine validates every epoch (its ``accuracy/top1`` lands in the stage's
scalars) and kt scores the final model on it as on the test split. The indices are part
of the training dataset, so a stage's digest covers the split; with ``none`` the config
is exactly what it was before validation splits existed, so are the digests.
"""
import copy
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

from ..errors import UserError

if TYPE_CHECKING:
    from mmengine.config import Config

# The config key that says which split mmengine's val loop scores each epoch.
VALIDATION_KEY = 'kt_validation'
VALIDATION_SPLIT = 'validation'
TEST_SPLIT = 'test'
# The config key of ``--checkpoint``: which epoch's weights a stage hands on (absent: last).
CHECKPOINT_KEY = 'kt_checkpoint'
LAST, BEST_VAL, BEST_TEST = 'last', 'best-val', 'best-test'
CHECKPOINT_RULES = (LAST, BEST_VAL, BEST_TEST)
SELECTED_ON_TEST = 'selected on the test set'
CHECKPOINT_LABELS = {LAST: 'last epoch', BEST_VAL: 'best epoch on validation',
                     BEST_TEST: f'best epoch on test ({SELECTED_ON_TEST})'}


def validates(cfg: 'Config') -> bool:
    """Whether a stage runs mmengine's val loop while it trains."""
    return cfg.get(VALIDATION_KEY) in (VALIDATION_SPLIT, TEST_SPLIT)


def has_validation_split(cfg: 'Config') -> bool:
    """Whether a stage holds images of its training split out for validation."""
    return cfg.get(VALIDATION_KEY) == VALIDATION_SPLIT


def add_validation_split(cfg: 'Config', dataset: str, data_root: str, val_split: str,
                         train_fingerprint: Optional[str]) -> None:
    """Split ``cfg``'s training dataset and validate on the held-out part every epoch.

    Args:
        cfg (Config): A composed stage config (data root and pipelines set).
        dataset (str): The dataset's name.
        data_root (str): Its folder on this machine.
        val_split (str): ``--val-split`` (not ``none``).
        train_fingerprint (str, optional): The training split's fingerprint
            (the split's seed).

    Raises:
        UserError: No fingerprint, or a split that cannot be made.
    """
    from mmengine.config import ConfigDict
    if train_fingerprint is None:
        raise UserError('--val-split needs the data\'s fingerprint; rerun `kt train` with '
                        '--data-root at the data')
    train, val = _split(dataset, data_root, val_split, train_fingerprint)
    train_set = cfg.train_dataloader.dataset
    val_set = ConfigDict(train_set.to_dict(), pipeline=cfg.test_dataloader.dataset.pipeline,
                         indices=list(val))
    train_set.indices = list(train)
    cfg.val_dataloader = ConfigDict(cfg.test_dataloader.to_dict(), dataset=val_set)
    validate_every_epoch(cfg, VALIDATION_SPLIT)


def validate_every_epoch(cfg: 'Config', split: str) -> None:
    """Run mmengine's val loop (top-1) after every epoch on the config's val loader."""
    cfg.val_evaluator = dict(type='Accuracy', topk=(1, ))
    cfg.val_cfg = dict()
    cfg.train_cfg.val_interval = 1
    cfg[VALIDATION_KEY] = split


def validation_view(cfg: 'Config') -> 'Config':
    """A copy of ``cfg`` whose test loader reads its validation split (what kt's scoring
    runs to score a stage on validation images)."""
    if not has_validation_split(cfg):
        raise UserError('this stage has no validation split; train with --val-split')
    view = cfg.copy()
    view.test_dataloader = view.val_dataloader
    return view


@functools.lru_cache(maxsize=8)
def _split(dataset: str, data_root: str, val_split: str,
           train_fingerprint: str) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    # Every stage of every sequence of a command composes the same split: read the
    # training split's labels once.
    from ..data.validation_split import NONE, parse_val_split, split_training_set
    choice = parse_val_split(val_split)
    if choice.none:
        raise ValueError(f'no validation split for --val-split {NONE}')
    train, val = split_training_set(dataset, Path(data_root), choice, train_fingerprint)
    return tuple(train), tuple(val)


def keep_best_checkpoint(cfg: 'Config', rule: str) -> None:
    """Make a stage hand on the weights of its best epoch (``best.pth``) rather than its
    last: by validation top-1 (``best-val``) or, the authors' protocol, by test top-1
    (``best-test``, the val loop then scoring the test split every epoch).

    Raises:
        UserError: ``best-val`` without a validation split, ``best-test`` with
            one, or an unknown rule.
    """
    if rule not in CHECKPOINT_RULES:
        raise UserError(f'--checkpoint takes {", ".join(CHECKPOINT_RULES)}, not {rule!r}')
    if rule == BEST_VAL and not has_validation_split(cfg):
        raise UserError('--checkpoint best-val needs a validation split: add --val-split 0.2 '
                        '(or a number of images per class, or official for FGVC-Aircraft)')
    if rule == BEST_TEST:
        if has_validation_split(cfg):
            raise UserError('--checkpoint best-test validates on the test set every epoch, not '
                            'on the validation split: drop --val-split, or pick best-val')
        cfg.val_dataloader = copy.deepcopy(cfg.test_dataloader)
        validate_every_epoch(cfg, TEST_SPLIT)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='BestCheckpointHook')]
    cfg[CHECKPOINT_KEY] = rule


def checkpoint_rule(cfg: 'Config') -> str:
    """Which epoch a stage hands on: ``last``, ``best-val`` or ``best-test``."""
    return cfg.get(CHECKPOINT_KEY, LAST)


def checkpoint_name(cfg: 'Config') -> str:
    """The file of a stage's final weights: ``epoch_<last>.pth`` or ``best.pth``."""
    if checkpoint_rule(cfg) == LAST:
        return f'epoch_{cfg.train_cfg.max_epochs}.pth'
    # The hook that writes it names it (the plugins never import the CLI; loaded on use).
    from registry_plugins.best_checkpoint_hook import BEST_CHECKPOINT
    return BEST_CHECKPOINT


def checkpoint_label(rule: str) -> str:
    """How a rule is named next to the figures of its models; ``best-test`` always says
    that the test set chose them."""
    return CHECKPOINT_LABELS[rule]


def checkpoint_note(rule: str) -> str:
    """What a title adds about the checkpoint rule: nothing for ``last``, else e.g.
    ``'; checkpoint: best epoch on test (selected on the test set)'``."""
    return '' if rule == LAST else f'; checkpoint: {checkpoint_label(rule)}'
