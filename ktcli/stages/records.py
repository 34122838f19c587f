"""The on-disk contract of a work dir: where its files are, and every value read from them.

The only module that knows a work dir's layout: ``stages/<digest>/`` per stage (its
``config.json``, ``config.py``, ``stage.json`` and checkpoints), the ``stage_k`` links, the
manifest, its lock and format, ``results.json``. It reads and writes ``stage.json``, and
checks the manifest's and each record's fields before anything uses them.

Both files travel with a work dir, so every field kt reads from them is checked here: its
type, its range, and what it would *do*: paths are exactly where kt puts a stage
(``stages/<digest>``, its ``config.json`` and an ``epoch_N.pth`` or ``best.pth`` in it), a
backbone is one of kt's names or ``timm/<model name>`` (never a path), ``pretrained`` is
``default``, ``none`` or the digest of a file or URL this user passed (never the file or URL
itself), and no setting names a folder. Fields kt does not know are kept as they are and
never read. A problem is one :class:`RecordError` naming the file and the field.
"""
import dataclasses
import functools
import json
import re
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ktbase.writing import write_atomically

from ..data.specs import DATASETS
from ..data.validation_split import is_val_split
from ..errors import UserError
from ..reading import DIGEST, MAX_IMAGE_SIDE, UnsafeFileError, read_json, shown
from ..received_values import (MAX_INT, describe_hint, integer, matches_hint, number, optional,
                               short_string)
from .backbones import is_backbone_name
from .portable_config import PRETRAINED_FILE, PRETRAINED_URL
from .settings import VIS_BACKENDS, TrainSettings
from .validation_config import CHECKPOINT_RULES

STAGES_DIR = 'stages'
# WORK_DIR/stage_k links to the k-th stage of the sequence last trained.
STAGE_LINK = 'stage_{}'
# In each stage directory: its config as kt reads it and as people read it, and its record.
CONFIG_DATA = 'config.json'
CONFIG_PYTHON = 'config.py'
STAGE_RECORD = 'stage.json'
MANIFEST_NAME = 'kt_manifest.json'
# Held (flock) by whoever changes the manifest: kt, its stage threads, Slurm jobs.
LOCK_NAME = '.kt_manifest.lock'
# kt train's table of the sequence it trained (ktcli/commands/train.py writes it).
RESULTS_NAME = 'results.json'
# 3: records hold no URL or path (pretrained by digest); no upgrade of older work dirs.
FORMAT_VERSION = 3
# Format 2 records have the same fields and digests: they are read through the same checks
# of meaning (a URL or path where format 3 holds a digest is refused like any other value),
# so that what a user trained with the previous kt stays usable; the next write is format 3.
READABLE_FORMATS = (2, FORMAT_VERSION)
STATUSES = ('queued', 'running', 'done', 'failed', 'interrupted', 'cancelled')
CHECKPOINT_NAME = re.compile(r'epoch_[0-9]{1,9}\.pth|best\.pth')
# The kind of a distilled student's record, and ``--models distilled`` (the newest student).
DISTILLED = 'distilled'
# The stage index a distilled student carries (it is no position of the sequence).
STUDENT_INDEX = 0
# Bounds of recorded settings beyond any run kt makes (epochs, batch size; lr and alpha).
_MAX_COUNT = 10 ** 5
_MAX_WEIGHT = 1e6


class RecordError(UnsafeFileError):
    """A manifest or stage record with a field kt cannot use."""


class OlderWorkDirError(UserError):
    """A work dir written in an earlier format, which this kt does not read."""


def _digests(value: Any) -> bool:
    return isinstance(value, list) and all(is_digest(item) for item in value)


# Each field kt reads, what it must be, and how the message says it.
_FIELDS: Dict[str, tuple] = {
    'index': (integer(0), 'a stage number (0 or more)'),
    'label': (short_string, 'a string'),
    'teachers': (_digests, 'a list of stage digests (16 hex digits)'),
    'members': (_digests, 'a list of stage digests (16 hex digits)'),
    'epochs': (integer(1), 'a number of epochs (1 or more)'),
    'status': (lambda value: value in STATUSES, f'one of {", ".join(STATUSES)}'),
    'train_seconds': (lambda value: number(value) and value >= 0, 'a number of seconds'),
    'host': (optional(short_string), 'a host name or null'),
    'pid': (optional(integer(1)), 'a process id or null'),
    'job_id': (optional(lambda value: isinstance(value, str) and value.isdigit()
                         and len(value) <= 20), 'a Slurm job id (digits) or null'),
    'owner': (optional(lambda value: isinstance(value, list) and len(value) == 2
                        and all(integer(0)(item) for item in value)),
              'a [process id, start time] pair or null'),
    'updated': (short_string, 'a time stamp'),
    'top1': (optional(lambda value: number(value) and 0 <= value <= 100),
             'an accuracy in percent or null'),
    'kind': (lambda value: value == DISTILLED, f'{DISTILLED!r}'),
}


def is_digest(value: Any) -> bool:
    """Whether ``value`` is a stage digest: 16 lowercase hex digits."""
    return isinstance(value, str) and DIGEST.fullmatch(value) is not None


def check_work_dir(work_dir: Path) -> None:
    """Refuse a folder that holds neither a manifest nor stage directories.

    Raises:
        UserError: One line naming the folder and the fix.
    """
    if not ((work_dir / MANIFEST_NAME).is_file() or (work_dir / STAGES_DIR).is_dir()):
        raise UserError(f'{work_dir} is not a kt work dir (no {MANIFEST_NAME}); '
                        'train one with `kt train`')


def stage_paths(digest: str, checkpoint: str = 'epoch_1.pth') -> dict:
    """Where kt keeps stage ``digest``'s files, relative to the work dir."""
    folder = f'{STAGES_DIR}/{digest}'
    return dict(dir=folder, config=f'{folder}/{CONFIG_DATA}', checkpoint=f'{folder}/{checkpoint}')


def record_paths(digest: str, record: Optional[dict]) -> dict:
    """:func:`stage_paths` of a stage with the checkpoint its (checked) record names."""
    checkpoint = (record or {}).get('checkpoint', 'epoch_1.pth')
    return stage_paths(digest, checkpoint.rpartition('/')[2])


def located(work_dir: Path, paths: dict) -> Tuple[Path, Path, Path]:
    """The folder, config and checkpoint of :func:`stage_paths` or :func:`record_paths`
    under ``work_dir``."""
    return tuple(Path(work_dir) / paths[name] for name in ('dir', 'config', 'checkpoint'))


def check_record(record: Any, where: str) -> dict:
    """A stage record whose every known field is what kt writes there.

    Args:
        record: The record as read (a JSON value).
        where (str): The file and the record's place in it, for messages.

    Returns:
        dict: ``record`` itself.

    Raises:
        RecordError: A field of the wrong type or range, or a path elsewhere
            than the stage's own directory.
    """
    if not isinstance(record, dict):
        raise RecordError(f'{where} must be a stage record (a JSON object), not '
                          f'{type(record).__name__}')
    digest = record.get('digest')
    if not is_digest(digest):
        raise RecordError(f'{where}: digest must be 16 hex digits, not {shown(digest)}')
    for name, (test, expected) in _FIELDS.items():
        if name in record and not test(record[name]):
            raise RecordError(f'{where}: {name} must be {expected}, not {shown(record[name])}')
    canonical = stage_paths(digest)
    for name in ('dir', 'config'):
        if name in record and record[name] != canonical[name]:
            raise RecordError(f'{where}: {name} must be {canonical[name]!r}, not '
                              f'{shown(record[name])}')
    if 'checkpoint' in record:
        folder, _, name = str(record['checkpoint']).rpartition('/')
        if (not isinstance(record['checkpoint'], str) or folder != canonical['dir']
                or not CHECKPOINT_NAME.fullmatch(name)):
            raise RecordError(f"{where}: checkpoint must be an epoch_N.pth or best.pth in "
                              f"{canonical['dir']}, not {shown(record['checkpoint'])}")
    if 'settings' in record:
        check_settings(record['settings'], f'{where}: settings')
    return record


# The commands whose sequence can be a work dir's current one (Manifest.set_sequence).
SEQUENCE_COMMANDS = (None, 'train', 'ablate')


def check_manifest(data: Any, where: str) -> dict:
    """The manifest's data, every record and the chain checked.

    Raises:
        RecordError: What is wrong, naming the field.
    """
    if not isinstance(data, dict):
        raise RecordError(f'{where} is not a kt manifest (a JSON object)')
    if integer(0)(data.get('format')) and data['format'] < READABLE_FORMATS[0]:
        # Format 1 named folders and checkpoints that an upgrade had to follow.
        raise OlderWorkDirError(f'{where} was written by an older kt (format {data["format"]}); '
                                f'this kt reads formats {READABLE_FORMATS[0]} to '
                                f'{FORMAT_VERSION}: train again in a new work dir')
    if data.get('format') not in READABLE_FORMATS:
        raise RecordError(f'{where}: format must be one of {READABLE_FORMATS}, not '
                          f'{shown(data.get("format"))}')
    stages, chain = data.get('stages'), data.get('chain')
    if not isinstance(stages, dict):
        raise RecordError(f'{where}: stages must be an object of stage records, not '
                          f'{shown(stages)}')
    for digest, record in stages.items():
        check_record(record, f'{where}: stages.{shown(digest)}')
        if record['digest'] != digest:
            raise RecordError(f'{where}: stages.{digest} records stage {record["digest"]}')
    if not _digests(chain):
        raise RecordError(f'{where}: chain must be a list of stage digests (16 hex digits), '
                          f'not {shown(chain)}')
    unknown = [digest for digest in chain if digest not in stages]
    if unknown:
        raise RecordError(f'{where}: chain names stage {unknown[0]}, which has no record')
    if data.get('sequence_command') not in SEQUENCE_COMMANDS:
        raise RecordError(f'{where}: sequence_command must be one of {SEQUENCE_COMMANDS}, not '
                          f'{shown(data.get("sequence_command"))}')
    return data


def check_settings(settings: Any, where: str) -> dict:
    """Training settings as :meth:`TrainSettings.to_record` writes them: each known field
    of the type the dataclass declares (unknown fields are refused by ``from_record``) and
    of a meaning kt can act on (:func:`_setting_meanings`); no folder of any machine.

    Raises:
        RecordError: A field of another type or meaning, or a required one missing.
    """
    if not isinstance(settings, dict):
        raise RecordError(f'{where} must be an object, not {shown(settings)}')
    if 'data_root' in settings:
        raise RecordError(f'{where}: data_root is never recorded (a folder of the machine '
                          'that trained it); the record was not written by kt')
    hints = typing.get_type_hints(TrainSettings)
    for field in dataclasses.fields(TrainSettings):
        if field.name not in settings:
            if (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING):
                raise RecordError(f'{where}: {field.name} is missing')
            continue
        if not matches_hint(settings[field.name], hints[field.name]):
            raise RecordError(f'{where}: {field.name} must be {describe_hint(hints[field.name])}, '
                              f'not {shown(settings[field.name])}')
        meaning = _setting_meanings().get(field.name)
        if meaning is not None and not meaning[0](settings[field.name]):
            raise RecordError(f'{where}: {field.name} must be {meaning[1]}, not '
                              f'{shown(settings[field.name])}')
    return settings


def _backbones(value: Any) -> bool:
    # As TrainSettings.backbone_of reads it: comma-separated, blanks ignored.
    names = [name.strip() for name in value.split(',') if name.strip()]
    return bool(names) and all(is_backbone_name(name) for name in names)


def is_recorded_pretrained(value: Any) -> bool:
    """Whether ``value`` is a ``pretrained`` a record may hold: ``default``, ``none``, or
    the digest of a file or URL (``pretrained-file:<16 hex>``, ``pretrained-url:<16 hex>``)."""
    if value in ('default', 'none'):
        return True
    return isinstance(value, str) and any(
        value.startswith(prefix) and DIGEST.fullmatch(value[len(prefix):])
        for prefix in (PRETRAINED_FILE, PRETRAINED_URL))


def _options(value: Any) -> bool:
    # Kept for the user to read; kt never applies a record's options (see student_settings).
    return isinstance(value, list) and len(value) <= 256 and all(
        isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) for item in value)


def _fingerprint(value: Any) -> bool:
    return value is None or (value['dataset'] in DATASETS and is_digest(value['train'])
                             and is_digest(value['test']) and 0 <= value['images'] < MAX_INT)


@functools.lru_cache(maxsize=None)
def _setting_meanings() -> Dict[str, tuple]:
    """Each setting's meaning: what it must be for kt to act on it, and how a message says
    it (built on first use: the backbone names are read from the shipped configs)."""
    return {
        'dataset': (lambda value: value in DATASETS, f'one of {", ".join(DATASETS)}'),
        'backbone': (_backbones, "kt's backbone names or timm/<model name>, comma-separated "
                     '(never a path)'),
        'pretrained': (is_recorded_pretrained, 'default, none or the digest of a file or URL '
                       '(pretrained-file:<16 hex digits>)'),
        'weighting': (lambda value: value in ('fixed', 'adaptive'), 'fixed or adaptive'),
        'alpha': (lambda value: 0 <= value <= _MAX_WEIGHT, f'a loss weight (0 to {_MAX_WEIGHT:g})'),
        'epochs': (lambda value: 1 <= value <= _MAX_COUNT,
                   f'a number of epochs (1 to {_MAX_COUNT})'),
        'batch_size': (lambda value: 1 <= value <= _MAX_COUNT,
                       f'a batch size (1 to {_MAX_COUNT})'),
        'lr': (lambda value: 0 <= value <= _MAX_WEIGHT, f'a learning rate (0 to {_MAX_WEIGHT:g})'),
        'img_size': (optional(lambda value: 1 <= value <= MAX_IMAGE_SIDE),
                     f'null or an image side of 1 to {MAX_IMAGE_SIDE}'),
        'seed': (lambda value: 0 <= value < 2 ** 31, 'a seed (0 to 2^31 - 1)'),
        'frozen_stages': (optional(lambda value: -1 <= value <= 16),
                          'null or -1 to 16 stages'),
        'output_stride': (optional(lambda value: value in (8, 16, 32)), 'null, 8, 16 or 32'),
        'processes': (lambda value: 1 <= value <= 4096, 'a number of processes (1 to 4096)'),
        'num_classes': (optional(lambda value: 1 <= value <= 10 ** 6),
                        'null or a number of classes (1 to 1000000)'),
        'cfg_options': (_options, 'a list of [key, value] pairs'),
        'vis_backends': (lambda value: all(name in VIS_BACKENDS for name in value),
                         f'names among {", ".join(VIS_BACKENDS)}'),
        'data_fingerprint': (_fingerprint, 'null or a fingerprint of a known dataset'),
        'val_split': (is_val_split, 'none, official, a fraction in (0, 1) or a number of '
                      'images per class'),
        'checkpoint': (lambda value: value in CHECKPOINT_RULES,
                       f'one of {", ".join(CHECKPOINT_RULES)}'),
    }


def write_stage_record(stage_dir: Path, record: dict) -> None:
    """Write a stage's record (``stage.json``) into its directory."""
    write_atomically(stage_dir / STAGE_RECORD, json.dumps(record, indent=2, sort_keys=True))


def read_stage_record(stage_dir: Path) -> Optional[dict]:
    """A stage directory's record, or None when it has none.

    Raises:
        RecordError: A record that is not a regular JSON file, belongs to
            another stage, or has a field kt cannot use.
    """
    path = stage_dir / STAGE_RECORD
    try:
        record = read_json(path)
    except FileNotFoundError:
        return None
    except UnsafeFileError as error:
        raise RecordError(str(error)) from None
    check_record(record, str(path))
    if record['digest'] != stage_dir.name:
        raise RecordError(f'{path}: digest {record["digest"]} is not its folder\'s')
    return record
