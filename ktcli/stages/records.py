"""The schema of what kt keeps about its stages: the manifest and each ``stage.json``.

Both files travel with a work dir, so every field kt reads from them is checked here before
anything uses it: its type, its range, and for paths that they are exactly where kt puts a
stage (``stages/<digest>``, its ``config.json`` and an ``epoch_N.pth`` or ``best.pth`` in
it), so no record can point kt at another folder. Fields kt does not know are kept as they are and never read.
A problem is one :class:`RecordError` naming the file and the field.
"""
import dataclasses
import math
import re
import typing
from typing import Any, Callable, Dict, Optional

from ..reading import DIGEST, UnsafeFileError, shown

STAGES_DIR = 'stages'
STATUSES = ('queued', 'running', 'done', 'failed', 'interrupted', 'cancelled')
CHECKPOINT_NAME = re.compile(r'epoch_[0-9]{1,9}\.pth|best\.pth')
# The kind of a distilled student's record.
DISTILLED = 'distilled'
_MAX_INT = 2 ** 53


class RecordError(UnsafeFileError):
    """A manifest or stage record with a field kt cannot use."""


def _integer(minimum: int) -> Callable[[Any], bool]:
    return lambda value: (isinstance(value, int) and not isinstance(value, bool)
                          and minimum <= value < _MAX_INT)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _optional(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or test(value)


def _digests(value: Any) -> bool:
    return isinstance(value, list) and all(is_digest(item) for item in value)


def _string(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 4096


# Each field kt reads, what it must be, and how the message says it.
_FIELDS: Dict[str, tuple] = {
    'index': (_integer(0), 'a stage number (0 or more)'),
    'label': (_string, 'a string'),
    'teachers': (_digests, 'a list of stage digests (16 hex digits)'),
    'members': (_digests, 'a list of stage digests (16 hex digits)'),
    'epochs': (_integer(1), 'a number of epochs (1 or more)'),
    'status': (lambda value: value in STATUSES, f'one of {", ".join(STATUSES)}'),
    'train_seconds': (lambda value: _number(value) and value >= 0, 'a number of seconds'),
    'host': (_optional(_string), 'a host name or null'),
    'pid': (_optional(_integer(1)), 'a process id or null'),
    'job_id': (_optional(lambda value: isinstance(value, str) and value.isdigit()
                         and len(value) <= 20), 'a Slurm job id (digits) or null'),
    'owner': (_optional(lambda value: isinstance(value, list) and len(value) == 2
                        and all(_integer(0)(item) for item in value)),
              'a [process id, start time] pair or null'),
    'updated': (_string, 'a time stamp'),
    'top1': (_optional(lambda value: _number(value) and 0 <= value <= 100),
             'an accuracy in percent or null'),
    'kind': (lambda value: value == DISTILLED, f'{DISTILLED!r}'),
}


def is_digest(value: Any) -> bool:
    """Whether ``value`` is a stage digest: 16 lowercase hex digits."""
    return isinstance(value, str) and DIGEST.fullmatch(value) is not None


def stage_paths(digest: str, checkpoint: str = 'epoch_1.pth') -> dict:
    """Where kt keeps stage ``digest``'s files, relative to the work dir."""
    folder = f'{STAGES_DIR}/{digest}'
    return dict(dir=folder, config=f'{folder}/config.json', checkpoint=f'{folder}/{checkpoint}')


def record_paths(digest: str, record: Optional[dict]) -> dict:
    """:func:`stage_paths` of a stage with the checkpoint its (checked) record names."""
    checkpoint = (record or {}).get('checkpoint', 'epoch_1.pth')
    return stage_paths(digest, checkpoint.rpartition('/')[2])


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
    from .manifest import FORMAT_VERSION
    if not isinstance(data, dict):
        raise RecordError(f'{where} is not a kt manifest (a JSON object)')
    if data.get('format', FORMAT_VERSION) != FORMAT_VERSION:
        raise RecordError(f'{where}: format must be {FORMAT_VERSION}, not '
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
    if not isinstance(data.get('results', []), list):
        raise RecordError(f'{where}: results must be a list')
    if data.get('sequence_command') not in SEQUENCE_COMMANDS:
        raise RecordError(f'{where}: sequence_command must be one of {SEQUENCE_COMMANDS}, not '
                          f'{shown(data.get("sequence_command"))}')
    return data


def check_settings(settings: Any, where: str) -> dict:
    """Training settings as :meth:`TrainSettings.to_record` writes them: each known field
    of the type the dataclass declares (unknown fields are refused by ``from_record``).

    Raises:
        RecordError: A field of another type, or a required one missing.
    """
    from .stage_config import TrainSettings
    if not isinstance(settings, dict):
        raise RecordError(f'{where} must be an object, not {shown(settings)}')
    hints = typing.get_type_hints(TrainSettings)
    for field in dataclasses.fields(TrainSettings):
        if field.name not in settings:
            if (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING):
                raise RecordError(f'{where}: {field.name} is missing')
            continue
        if not _matches(settings[field.name], hints[field.name]):
            raise RecordError(f'{where}: {field.name} must be {_describe(hints[field.name])}, '
                              f'not {shown(settings[field.name])}')
    _check_setting_meanings(settings, where)
    return settings


def _check_setting_meanings(settings: dict, where: str) -> None:
    """Settings whose type is not enough: ``val_split`` is one ``--val-split`` value
    (none, official, a fraction in (0, 1), a number of images per class >= 1), in the
    form kt writes, and ``checkpoint`` one ``--checkpoint`` rule."""
    from ..data.validation_split import is_val_split
    from .validation_config import CHECKPOINT_RULES
    if 'val_split' in settings and not is_val_split(settings['val_split']):
        raise RecordError(f'{where}: val_split must be none, official, a fraction in (0, 1) '
                          f'or a number of images per class, not {shown(settings["val_split"])}')
    if 'checkpoint' in settings and settings['checkpoint'] not in CHECKPOINT_RULES:
        raise RecordError(f'{where}: checkpoint must be one of {", ".join(CHECKPOINT_RULES)}, '
                          f'not {shown(settings["checkpoint"])}')


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a type hint (tuples are JSON lists)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is object or hint is Any:
        return True
    if origin is typing.Union:
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _integer(-_MAX_INT)(value)
    if hint is float:
        return _number(value)
    if hint is str:
        return _string(value)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(_matches, value, args))
    if dataclasses.is_dataclass(hint):
        # A nested record (e.g. the data fingerprint): exactly its fields, each of its type.
        hints = typing.get_type_hints(hint)
        return (isinstance(value, dict)
                and set(value) == {field.name for field in dataclasses.fields(hint)}
                and all(_matches(value[name], hints[name]) for name in value))
    return False


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return ' or '.join(_describe(arg) for arg in args)
    if origin is tuple:
        return 'a list'
    if dataclasses.is_dataclass(hint):
        return f'an object with {", ".join(f.name for f in dataclasses.fields(hint))}'
    return {type(None): 'null', bool: 'true or false', int: 'an integer', float: 'a number',
            str: 'a string'}.get(hint, str(hint))
