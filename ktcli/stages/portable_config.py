"""A stage config as a work dir keeps it: what the stage is, none of the machine's folders.

The config kt composes for a stage names folders of this machine: the data folder (every
dataloader's ``data_root``), a ``--pretrained`` file (the backbone's ``init_cfg``) and the
stage's own directory (``work_dir``). Work dirs travel, so what a work dir keeps
(``config.json``, ``config.py``, the config in a checkpoint's meta) and what a stage's
digest covers is the config's portable form:

- ``data_root`` is the dataset's usual folder (``data/CUB_200_2011``, as in the dataset
  configs) and ``data_fingerprint`` says what the data is
  (:class:`~ktcli.data.fingerprint.DataFingerprint`);
- a pretrained file is ``pretrained-file:<sha256 of its bytes>``;
- there is no ``work_dir``.

The folders are run-time inputs (:class:`RunInputs`): ``tools/train.py --data-root DIR
--pretrained FILE --work-dir DIR`` puts them back (:func:`runtime_config`).
"""
import copy
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from mmengine.config import Config

from ..data.fingerprint import DIGITS, DataFingerprint, cached_file_digest
from ..data.specs import dataset_spec
from ..errors import UserError

# The config key that records what a stage's data is.
FINGERPRINT_KEY = 'data_fingerprint'
# How a portable config names a pretrained file: by the sha256 of its bytes.
PRETRAINED_FILE = 'pretrained-file:'
# How a stage record names a pretrained URL: by the sha256 of the URL (a record never holds
# something kt would fetch).
PRETRAINED_URL = 'pretrained-url:'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


@dataclass(frozen=True)
class RunInputs:
    """The folders of this machine a stage's training reads.

    Args:
        data_root (str, optional): The dataset folder.
        pretrained (str, optional): The ``--pretrained`` file the backbone
            starts from, if any.
    """

    data_root: Optional[str] = None
    pretrained: Optional[str] = None

    def arguments(self) -> List[str]:
        """The ``tools/train.py`` (and stage job) options that pass them."""
        return [argument for option, value in (('--data-root', self.data_root),
                                               ('--pretrained', self.pretrained))
                if value is not None for argument in (option, value)]


def recorded_fingerprint(cfg: Config) -> Optional[DataFingerprint]:
    """The fingerprint of the data a stage config was composed for (None: a config of an
    older kt, which names its data folder instead)."""
    record = cfg.get(FINGERPRINT_KEY)
    if record is None:
        return None
    return DataFingerprint.from_record(record.to_dict() if hasattr(record, 'to_dict')
                                       else record)


def dataloaders(cfg: Config) -> list:
    """The train, val and test dataloaders ``cfg`` has (as its own entries, to change)."""
    return [cfg[name] for name in LOADERS if cfg.get(name)]


def _backbone_init(cfg: Config) -> Optional[dict]:
    backbone = cfg.get('model', {}).get('backbone', {})
    init_cfg = backbone.get('init_cfg')
    return init_cfg if isinstance(init_cfg, dict) else None


def portable_pretrained(pretrained: str) -> str:
    """``--pretrained`` as a work dir records it: a file by its content, a URL by its
    digest, default and none as they are."""
    path = Path(pretrained).expanduser()
    if '://' in pretrained:
        return f'{PRETRAINED_URL}{hashlib.sha256(pretrained.encode()).hexdigest()[:DIGITS]}'
    if pretrained in ('default', 'none') or not path.is_file():
        return pretrained
    return f'{PRETRAINED_FILE}{cached_file_digest(path)[:DIGITS]}'


def portable_config(cfg: Config) -> Tuple[Config, RunInputs]:
    """Split a composed stage config into its portable form and the folders it named.

    A config without a data fingerprint keeps its ``data_root``.

    Args:
        cfg (Config): A stage config as :func:`~ktcli.stages.stage_config.
            compose_stage_config` makes it.

    Returns:
        tuple: The portable config (a copy) and its run-time inputs.
    """
    portable = copy.deepcopy(cfg)
    portable.pop('work_dir', None)
    data_root = None
    fingerprint = recorded_fingerprint(cfg)
    if fingerprint is not None:
        default_root = dataset_spec(fingerprint.dataset).default_root
        for loader in dataloaders(portable):
            data_root = str(loader.dataset.data_root)
            loader.dataset.data_root = default_root
    pretrained = None
    init_cfg = _backbone_init(portable)
    checkpoint = str((init_cfg or {}).get('checkpoint', ''))
    if init_cfg and os.path.isabs(checkpoint):
        pretrained = checkpoint
        init_cfg['checkpoint'] = portable_pretrained(checkpoint)
    return portable, RunInputs(data_root, pretrained)


def with_data_root(cfg: Config, data_root: Optional[str]) -> Config:
    """A copy of ``cfg`` whose dataloaders read ``data_root`` (None: no data at hand)."""
    located = copy.deepcopy(cfg)
    for loader in dataloaders(located):
        loader.dataset.data_root = None if data_root is None else str(data_root)
    return located


def runtime_config(cfg: Config, inputs: RunInputs) -> Config:
    """The config a stage trains with: its portable form with this machine's folders.

    Args:
        cfg (Config): A portable stage config.
        inputs (RunInputs): The folders; a missing data root keeps the
            config's own.

    Raises:
        UserError: The stage starts from a pretrained file and ``inputs``
            names none.
    """
    runtime = cfg if inputs.data_root is None else with_data_root(cfg, inputs.data_root)
    init_cfg = _backbone_init(runtime)
    checkpoint = str((init_cfg or {}).get('checkpoint', ''))
    if checkpoint.startswith(PRETRAINED_FILE):
        if inputs.pretrained is None:
            raise UserError(f'this stage starts from a --pretrained file ({checkpoint}); pass '
                            'that file with --pretrained FILE')
        runtime = copy.deepcopy(runtime)
        _backbone_init(runtime)['checkpoint'] = str(inputs.pretrained)
    return runtime


def portable_runner(cfg: Config, inputs: RunInputs):
    """mmengine's Runner for a stage config: it trains with this machine's folders
    (:func:`runtime_config`) and records the config it was given, without them or the work
    dir, where the Runner records its config (the dump into its work dir, which for a stage
    is ``config.json`` itself, and every checkpoint's meta)."""
    from mmengine.runner import Runner

    recorded = copy.deepcopy(cfg)
    recorded.pop('work_dir', None)

    class PortableRunner(Runner):
        def dump_config(self) -> None:
            # Called once the Runner is built; from here on its config is the recorded one.
            self.cfg = copy.deepcopy(recorded)
            super().dump_config()

    return PortableRunner.from_cfg(runtime_config(cfg, inputs))
