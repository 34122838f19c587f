"""What a user sets for a sequence or a student: the settings every stage is composed from."""
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

from ..data.fingerprint import DataFingerprint
from ..errors import UserError
from .portable_config import portable_pretrained

if TYPE_CHECKING:
    from mmengine.config import Config

# Stage k of the sequence with --seed s is seeded with s * SEEDS_PER_SEQUENCE + k - 1, so
# that sequences with different --seed (the replicates of `kt ablate --seeds`) share no stage.
SEEDS_PER_SEQUENCE = 1000


VIS_BACKENDS = {
    'tensorboard': ('TensorboardVisBackend', 'tensorboard'),
    'wandb': ('WandbVisBackend', 'wandb'),
    'mlflow': ('MLflowVisBackend', 'mlflow'),
    'clearml': ('ClearMLVisBackend', 'clearml'),
    'neptune': ('NeptuneVisBackend', 'neptune'),
    'dvclive': ('DVCLiveVisBackend', 'dvclive'),
    'aim': ('AimVisBackend', 'aim'),
}


@dataclass(frozen=True)
class TrainSettings:
    """Everything a user sets for a sequence, shared by all its stages.

    ``data_root`` is where the data is on this machine (a run-time input, never recorded)
    and ``data_fingerprint`` what it is (recorded, and covered by the digests).
    ``val_split`` is ``--val-split``: ``none`` (the default) or the validation split the
    stages are scored on every epoch (covered by the digests through the training indices);
    ``checkpoint`` the epoch a stage hands on (``last``, the default, leaves digests as
    they were; a best epoch is in the digest).
    """

    dataset: str
    data_root: str = ''
    backbone: str = 'resnet50'
    alpha: float = 0.5
    weighting: str = 'fixed'
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.01
    img_size: Optional[int] = None
    seed: int = 0
    pretrained: str = 'default'
    frozen_stages: Optional[int] = None
    output_stride: Optional[int] = None
    amp: bool = False
    processes: int = 1
    num_classes: Optional[int] = None
    cfg_options: Tuple[Tuple[str, object], ...] = ()
    vis_backends: Tuple[str, ...] = ()
    data_fingerprint: Optional[DataFingerprint] = None
    # Images held out of the training split for validation (ktcli.data.validation_split).
    val_split: str = 'none'
    # Which epoch each stage hands on: last, best-val or best-test (validation_config).
    checkpoint: str = 'last'

    def to_record(self) -> dict:
        """The settings as JSON data (kept in each stage's record): no folder of this
        machine, the data by its fingerprint and a pretrained file by its content."""
        record = dict(vars(self), cfg_options=[list(item) for item in self.cfg_options],
                      vis_backends=list(self.vis_backends),
                      pretrained=portable_pretrained(self.pretrained),
                      data_fingerprint=self.data_fingerprint and self.data_fingerprint.to_record())
        record.pop('data_root')
        return record

    @classmethod
    def from_record(cls, record: dict) -> 'TrainSettings':
        """Settings read back from :meth:`to_record`'s data (unknown keys are refused)."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(record) - known
        if unknown:
            raise UserError(f'unknown training settings {sorted(unknown)}; the work dir was '
                            'written by another kt version')
        fingerprint = record.get('data_fingerprint')
        return cls(**dict(record, cfg_options=tuple(tuple(item) for item in
                                                    record.get('cfg_options', ())),
                          vis_backends=tuple(record.get('vis_backends', ())),
                          data_fingerprint=fingerprint and DataFingerprint.from_record(
                              fingerprint)))

    def backbone_of(self, index: int) -> str:
        """Stage ``index``'s backbone: the index-th of a comma-separated ``backbone``
        (``resnet50,efficientnet_lite0``), the last one repeating."""
        names = [name.strip() for name in self.backbone.split(',') if name.strip()]
        if not names:
            raise UserError('--backbone names no backbone')
        return names[min(index, len(names)) - 1]


@dataclass(frozen=True)
class Teacher:
    """A finished earlier stage: its digest, its config and its checkpoint (a path
    relative to the student's work directory, or absolute)."""

    digest: str
    config: 'Config'
    checkpoint: Path


def stage_seed(seed: int, index: int) -> int:
    """The random seed of stage ``index`` (1-based) of the sequence with ``seed``.

    ``seed * SEEDS_PER_SEQUENCE + index - 1``: consecutive within a sequence,
    disjoint between sequences of different ``seed`` (up to
    ``SEEDS_PER_SEQUENCE`` stages), so no two seed replicates share a model.
    """
    if seed < 0:
        raise UserError(f'seeds are non-negative integers, got {seed}')
    if not 1 <= index <= SEEDS_PER_SEQUENCE:
        raise UserError(f'a sequence has at most {SEEDS_PER_SEQUENCE} stages, not {index}')
    return seed * SEEDS_PER_SEQUENCE + index - 1


def parse_cfg_options(options: Sequence[str]) -> Dict[str, object]:
    """Parse ``KEY=VALUE`` strings as mmengine's ``--cfg-options`` does."""
    from mmengine.config import DictAction
    parsed = {}
    for option in options:
        key, sep, value = option.partition('=')
        if not sep or not key:
            raise UserError(f'--cfg-options takes KEY=VALUE, got {option!r}')
        parsed[key] = DictAction._parse_iterable(value)
    return parsed


@dataclass(frozen=True)
class DistillSettings:
    """What ``kt distill`` sets; None keeps the members' value."""

    backbone: Optional[str] = None
    epochs: Optional[int] = None
    lr: Optional[float] = None
    pretrained: Optional[str] = None
    temperature: float = 4.0
    kd_weight: float = 0.9
    attention_weight: float = 0.0
    seed: int = 0
    val_split: Optional[str] = None
