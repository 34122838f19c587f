"""The on-disk contract of a work dir: the manifest and each ``stage.json``, checked here.

Both files travel with a work dir, so every field kt reads from them is checked here before
anything uses it: its type, its range, and what it would *do*: paths are exactly where kt
puts a stage (``stages/<digest>``, its ``config.json`` and an ``epoch_N.pth`` or ``best.pth``
in it), a backbone is one of kt's names or ``timm/<model name>`` (never a path),
``pretrained`` is ``default``, ``none`` or the digest of a file or URL this user passed (never
the file or URL itself), and no setting names a folder. Fields kt does not know are kept as
they are and never read. A problem is one :class:`RecordError` naming the file and the field.
"""
import dataclasses
import functools
import math
import re
import typing
from typing import Any, Callable, Dict, Optional

from ..errors import UserError
from ..reading import DIGEST, MAX_IMAGE_SIDE, UnsafeFileError, shown

STAGES_DIR = 'stages'
STATUSES = ('queued', 'running', 'done', 'failed', 'interrupted', 'cancelled')
CHECKPOINT_NAME = re.compile(r'epoch_[0-9]{1,9}\.pth|best\.pth')
# The kind of a distilled student's record.
DISTILLED = 'distilled'
_MAX_INT = 2 ** 53
# Bounds of recorded settings beyond any run kt makes (epochs, batch size; lr and alpha).
_MAX_COUNT = 10 ** 5
_MAX_WEIGHT = 1e6


class RecordError(UnsafeFileError):
    """A manifest or stage record with a field kt cannot use."""


class OlderWorkDirError(UserError):
    """A work dir written in an earlier format, which this kt does not read."""


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
    from .manifest import FORMAT_VERSION, READABLE_FORMATS
    if not isinstance(data, dict):
        raise RecordError(f'{where} is not a kt manifest (a JSON object)')
    if _integer(0)(data.get('format')) and data['format'] < READABLE_FORMATS[0]:
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
    if not isinstance(data.get('results', []), list):
        raise RecordError(f'{where}: results must be a list')
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
    from .stage_config import TrainSettings
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
        if not _matches(settings[field.name], hints[field.name]):
            raise RecordError(f'{where}: {field.name} must be {_describe(hints[field.name])}, '
                              f'not {shown(settings[field.name])}')
        meaning = _setting_meanings().get(field.name)
        if meaning is not None and not meaning[0](settings[field.name]):
            raise RecordError(f'{where}: {field.name} must be {meaning[1]}, not '
                              f'{shown(settings[field.name])}')
    return settings


# kt's own backbone names are plain words; a timm model's name is timm's (letters, digits,
# '_', '-' and a '.' before a pretrained tag), never a path.
_KT_BACKBONE = re.compile(r'[a-z0-9_]{1,64}')
_TIMM_BACKBONE = re.compile(r'timm/[A-Za-z0-9][A-Za-z0-9_\-]{0,127}(\.[A-Za-z0-9_\-]{1,64})?')


def is_backbone_name(name: Any) -> bool:
    """Whether ``name`` is one backbone as kt names it: one of kt's model configs
    (``resnet50``, ``vgg16``...) or ``timm/<model name>``; never a path. (Whether timm has
    the model is asked where it is built: :func:`~ktcli.stages.backbones.timm_model_facts`.)"""
    from .backbones import BACKBONE_ALIASES, available_backbones
    if not isinstance(name, str):
        return False
    if _TIMM_BACKBONE.fullmatch(name):
        return True
    return bool(_KT_BACKBONE.fullmatch(name)) and (
        name in BACKBONE_ALIASES or name in available_backbones())


def _backbones(value: Any) -> bool:
    # As TrainSettings.backbone_of reads it: comma-separated, blanks ignored.
    names = [name.strip() for name in value.split(',') if name.strip()]
    return bool(names) and all(is_backbone_name(name) for name in names)


def is_recorded_pretrained(value: Any) -> bool:
    """Whether ``value`` is a ``pretrained`` a record may hold: ``default``, ``none``, or
    the digest of a file or URL (``pretrained-file:<16 hex>``, ``pretrained-url:<16 hex>``)."""
    from .portable_config import PRETRAINED_FILE, PRETRAINED_URL
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
    from ..data.specs import DATASETS
    return value is None or (value['dataset'] in DATASETS and is_digest(value['train'])
                             and is_digest(value['test']) and 0 <= value['images'] < _MAX_INT)


@functools.lru_cache(maxsize=None)
def _setting_meanings() -> Dict[str, tuple]:
    """Each setting's meaning: what it must be for kt to act on it, and how a message says
    it (built on first use: the tables live in modules that import this one)."""
    from ..data.specs import DATASETS
    from ..data.validation_split import is_val_split
    from .stage_config import VIS_BACKENDS
    from .validation_config import CHECKPOINT_RULES
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
        'img_size': (_optional(lambda value: 1 <= value <= MAX_IMAGE_SIDE),
                     f'null or an image side of 1 to {MAX_IMAGE_SIDE}'),
        'seed': (lambda value: 0 <= value < 2 ** 31, 'a seed (0 to 2^31 - 1)'),
        'frozen_stages': (_optional(lambda value: -1 <= value <= 16),
                          'null or -1 to 16 stages'),
        'output_stride': (_optional(lambda value: value in (8, 16, 32)), 'null, 8, 16 or 32'),
        'processes': (lambda value: 1 <= value <= 4096, 'a number of processes (1 to 4096)'),
        'num_classes': (_optional(lambda value: 1 <= value <= 10 ** 6),
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


# The most of each thing an ablation's JSON may hold (kt ablate writes a few of each).
_ABLATION_LIMIT = 64
_PANELS_LIMIT = 8


def check_ablation(kind: str, data: Any, where: str) -> dict:
    """An ablation's JSON (``ablate_alpha.json`` for ``kind`` ``'alpha'``, ``ablate_n.json``
    for ``'n'``) as ``kt ablate`` writes it: every field ``kt report`` reads, of its type,
    within the sizes kt writes.

    Raises:
        RecordError: What is wrong, naming the field.
    """
    def require(ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise RecordError(f'{where}: {field} must be {expected}; rerun the kt ablate that '
                              'wrote it')

    require(isinstance(data, dict), 'the file', 'a JSON object')
    require(_optional(_string)(data.get('resolution')), 'resolution', 'a string or null')
    require(_list_of(data.get('seeds', []), _integer(0)), 'seeds', 'a list of seeds')
    if kind == 'alpha':
        require(_integer(1)(data.get('n', 1)), 'n', 'a number of models')
        require(_list_of(data.get('alphas', []), _number), 'alphas', 'a list of numbers')
        figures = data.get('figures', {})
        require(isinstance(figures, dict) and len(figures) <= _ABLATION_LIMIT, 'figures',
                'an object of alphas')
        for key, cells in figures.items():
            require(_is_float(key) and isinstance(cells, dict)
                    and all(_is_cell(cell) for cell in cells.values()), f'figures.{shown(key)}',
                    'an object of estimates and comparisons')
    else:
        require(_number(data.get('alpha', 0)), 'alpha', 'a number')
        for name in ('rows', 'differences'):
            rows = data.get(name, {})
            require(isinstance(rows, dict) and len(rows) <= _ABLATION_LIMIT, name,
                    'an object of rows')
            for label, cells in rows.items():
                require(_string(label) and _list_of(cells, _is_cell), f'{name}.{shown(label)}',
                        'a list of estimates or comparisons')
    if 'figure' in data:
        require(_is_figure(data['figure']), 'figure', 'figure data (x, labels, at most '
                f'{_PANELS_LIMIT} panels of curves, one point per x)')
    return data


def _list_of(value: Any, test: Callable[[Any], bool]) -> bool:
    return isinstance(value, list) and len(value) <= _ABLATION_LIMIT and all(map(test, value))


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _is_cell(value: Any) -> bool:
    """An ablation table's cell: nothing, a number, per-seed numbers, an accuracy estimate
    (``top1`` and its interval) or a paired comparison (``difference``, interval, p, verdict)."""
    if value is None or _number(value):
        return True
    if isinstance(value, list):
        return _list_of(value, _number)
    if not isinstance(value, dict):
        return False
    if 'difference' in value:
        per_seed = value.get('per_seed') or []
        return (all(_number(value.get(key)) for key in ('difference', 'ci_low', 'ci_high'))
                and _number(value.get('p_value')) and _string(value.get('verdict'))
                and isinstance(per_seed, list)
                and (len(per_seed) <= 1 or _string(value.get('sign_count'))))
    return all(_number(value.get(key)) for key in ('top1', 'ci_low', 'ci_high'))


def _is_figure(figure: Any) -> bool:
    """Figure data as :func:`~ktcli.reports.ablation_plots.draw_figure` draws it."""
    if not (isinstance(figure, dict) and _list_of(figure.get('x'), _number)
            and _string(figure.get('xlabel')) and _string(figure.get('title'))
            and isinstance(figure.get('symlog', False), bool)):
        return False
    panels = figure.get('panels')
    return isinstance(panels, list) and 1 <= len(panels) <= _PANELS_LIMIT and all(
        isinstance(panel, dict) and _string(panel.get('ylabel'))
        and isinstance(panel.get('zero_line', False), bool)
        and isinstance(panel.get('curves'), dict) and len(panel['curves']) <= 16
        and all(_string(label) and _is_curve(curve, len(figure['x']))
                for label, curve in panel['curves'].items())
        for panel in panels)


def _is_curve(curve: Any, length: int) -> bool:
    """``y``, ``low`` and ``high`` per x: numbers, or None where the point is missing."""
    if not (isinstance(curve, dict) and all(isinstance(curve.get(key), list)
                                            and len(curve[key]) == length
                                            for key in ('y', 'low', 'high'))):
        return False
    return all(y is None or (_number(y) and _number(low) and _number(high))
               for y, low, high in zip(curve['y'], curve['low'], curve['high']))
