"""A stage's config as files: written for kt and for people, read back as data kt can trust.

Each stage directory (see :mod:`~ktcli.stages.records` for the layout) keeps its config twice:

- ``config.json``: the stage's full config as data. This is what kt reads
  (never the Python next to it), and before anything is built from it every
  ``type`` must name a class registered in mmengine's or mmpretrain's
  registries, so a received file cannot make mmengine import and call an
  arbitrary object.
- ``config.py``: the same config for people and for ``tools/train.py``.

Work dirs travel between people; every file here is written atomically and
read as data only.
"""
import functools
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, FrozenSet, Iterator, Optional, Set, Tuple

from mmengine.config import Config

from ktbase.writing import write_atomically

from ..errors import UserError
from ..reading import MAX_IMAGE_SIDE, UnsafeFileError, no_links_below, read_json, shown
from .records import CONFIG_DATA, CONFIG_PYTHON
from .validation_config import (CHECKPOINT_KEY, CHECKPOINT_RULES, TEST_SPLIT, VALIDATION_KEY,
                                VALIDATION_SPLIT)

# The scopes a config may name (mmengine imports ``<scope>.registry`` for each it meets).
SCOPES = ('mmpretrain', 'mmengine')
_KT_IMPORTS = dict(imports=['registry_plugins'])
# Keys mmengine's Config keeps for itself.
_RESERVED = ('filename', 'text', 'pretty_text', 'env_variables')


def write_stage_config(cfg: Config, stage_dir: Path) -> Path:
    """Write ``cfg`` as ``config.json`` (read by kt) and ``config.py`` (for people).

    Args:
        cfg (Config): The stage's complete config.
        stage_dir (Path): The stage directory.

    Returns:
        Path: The ``config.json`` written.
    """
    check_config(cfg, f'the config of {stage_dir.name}')
    # WORK_DIR/stages/<digest>: a link there (or at stages) would take the files elsewhere.
    no_links_below(stage_dir.parent.parent, f'{stage_dir.parent.name}/{stage_dir.name}')
    stage_dir.mkdir(parents=True, exist_ok=True)
    fields = cfg.to_dict()
    write_atomically(stage_dir / CONFIG_DATA, json.dumps(fields, indent=2, sort_keys=True))
    write_atomically(stage_dir / CONFIG_PYTHON,
                     Config(fields, format_python_code=False).pretty_text)
    return stage_dir / CONFIG_DATA


def read_stage_config(path: Path) -> Config:
    """Read a stage's ``config.json`` as data, refusing anything that could run code.

    Args:
        path (Path): A stage's ``config.json``.

    Returns:
        Config: The config.

    Raises:
        UserError: The file is missing, not a regular file of JSON, or names
            a ``type`` or scope that no registry holds, ``_base_`` files or
            imports besides kt's, or lacks what kt reads (see
            :func:`config_problem`).
    """
    path = Path(path)
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise UserError(f'{path} is missing; this stage was written by an older kt or is '
                        'incomplete: retrain it with `kt train`') from None
    except UnsafeFileError as error:
        raise UserError(f'{error}; retrain the stage with `kt train`') from None
    problem = config_problem(data)
    if problem is not None:
        raise UserError(f'{path} {problem}; kt builds registered modules only, so it will not '
                        'use this stage: retrain it with `kt train`')
    # Unformatted (no yapf), as config.py is written: mmengine prints and stores a config's
    # text several times per run, and formatting it took about 0.4 s each time.
    return Config(data, cfg_text=json.dumps(data), filename=str(path),
                  format_python_code=False)


def check_config(cfg: Config, source: str) -> None:
    """Refuse a config kt is about to write or hand to mmengine that could run code.

    Args:
        cfg (Config): The config.
        source (str): What it is, for the message (a path, ``--cfg-options``).

    Raises:
        UserError: See :func:`config_problem`.
    """
    problem = config_problem(json.loads(json.dumps(cfg.to_dict(), default=str)))
    if problem is not None:
        raise UserError(f'{source} {problem}; kt builds registered modules of mmpretrain and '
                        'mmengine only (set them through kt\'s options or --cfg-options '
                        'with registered types)')


def config_problem(data: Any) -> Optional[str]:
    """Why a config's data could run code, or lacks what kt reads from it; None if neither.

    Every ``type`` must be a string naming a registered class (optionally
    with an allowed scope, ``mmpretrain.ResNet``), every ``_scope_`` and the
    ``default_scope`` an allowed scope (mmengine imports ``<scope>.registry``),
    no ``_base_`` anywhere, no ``custom_imports`` but kt's, and the model and
    test split described as kt reads them.
    """
    if not isinstance(data, dict):
        return 'is not a config (a JSON object)'
    reserved = sorted(set(data) & set(_RESERVED))
    if reserved:
        return f'sets {reserved[0]!r}, which mmengine reserves'
    imports = data.get('custom_imports', _KT_IMPORTS)
    if not (isinstance(imports, dict) and imports.get('imports') in (['registry_plugins'],
                                                                     'registry_plugins')
            and set(imports) <= {'imports', 'allow_failed_imports'}):
        return f'imports {shown(imports)} (custom_imports): kt imports registry_plugins only'
    if data.get('default_scope', 'mmpretrain') not in SCOPES:
        return (f'has default_scope {shown(data.get("default_scope"))}, not one of '
                f'{", ".join(SCOPES)}')
    known = registered_types()
    for where, key, value in _entries(data):
        if key == '_base_':
            return f'inherits other files (_base_ at {where or "the top"})'
        if key == 'custom_imports' and where:
            return f'imports modules at {where}.custom_imports'
        if key == '_scope_' and value not in SCOPES:
            return f'sets the scope {shown(value)} at {where}, not one of {", ".join(SCOPES)}'
        if key == 'type':
            if not isinstance(value, str):
                return f'has a {type(value).__name__} as the type at {where}, not a name'
            scope, _, bare = value.rpartition('.')
            if (scope and scope not in SCOPES) or bare not in known:
                return f'names {value!r} as a type at {where}, which no registry holds'
    return _shape_problem(data)


def _shape_problem(data: dict) -> Optional[str]:
    """What kt itself reads from a stage config, if it is missing or of the wrong kind."""
    problem = _selection_problem(data)
    if problem:
        return problem
    for where in ('model', 'model.backbone', 'model.head', 'test_dataloader',
                  'test_dataloader.dataset'):
        value = _at(data, where)
        if not isinstance(value, dict) or not isinstance(value.get('type', ''), str):
            return f'has no {where} (an object with a type)'
    if not isinstance(_at(data, 'model.type'), str):
        return 'has no model type'
    if not isinstance(data.get('data_preprocessor') or {}, dict):
        return 'has a data_preprocessor that is not an object'
    pipeline = _at(data, 'test_dataloader.dataset.pipeline')
    if not isinstance(pipeline, list) or not all(
            isinstance(step, dict) and isinstance(step.get('type'), str) for step in pipeline):
        return 'has no test_dataloader.dataset.pipeline (a list of transforms with types)'
    for step in pipeline:
        for key in ('scale', 'crop_size'):
            if key in step and not _is_size(step[key]):
                return (f'has {step["type"]} {key} {shown(step[key])}: sizes are 1 to '
                        f'{MAX_IMAGE_SIDE} pixels')
    return _reach_problem(data)


# Model arguments that make timm or mmpretrain fetch or read weights while the model is
# built (kt loads a stage's weights from its own checkpoint, after building it).
_FETCHING_KEYS = ('pretrained', 'checkpoint_path', 'pretrained_cfg', 'pretrained_cfg_overlay',
                  'cache_dir')


def _reach_problem(data: dict) -> Optional[str]:
    """A value that would make building the model or the test data reach beyond the data
    folder kt sets: weights fetched or read while the model is built, a storage backend
    (mmengine's ``backend_args``: HTTP, Petrel, ...), a dataset file that is absolute, a
    URL or climbs out with ``..``."""
    for where, key, value in _entries(data):
        if key == 'backend_args' and value:
            return f'sets backend_args at {where or "the top"}: kt reads data from local files'
        if where.startswith('model') and key in _FETCHING_KEYS and value:
            return (f'sets {key} {shown(value)} at {where}: a stage\'s weights come from its '
                    'own checkpoint only')
    dataset = _at(data, 'test_dataloader.dataset')
    for where, key, value in _entries({key: dataset.get(key) for key in ('data_prefix',
                                                                          'ann_file')}):
        if isinstance(value, str) and (os.path.isabs(value) or '://' in value
                                       or '..' in PurePosixPath(value).parts):
            place = f'{where}.{key}' if where else key
            return (f'names {shown(value)} at test_dataloader.dataset.{place}: dataset files '
                    'lie below the data folder')
    return None


def _selection_problem(data: dict) -> Optional[str]:
    """A validation split or checkpoint rule kt would not write (validation_config)."""
    if data.get(VALIDATION_KEY, TEST_SPLIT) not in (VALIDATION_SPLIT, TEST_SPLIT):
        return f'has {VALIDATION_KEY} {shown(data.get(VALIDATION_KEY))}, not validation or test'
    if data.get(CHECKPOINT_KEY, CHECKPOINT_RULES[0]) not in CHECKPOINT_RULES:
        return (f'has {CHECKPOINT_KEY} {shown(data.get(CHECKPOINT_KEY))}, not one of '
                f'{", ".join(CHECKPOINT_RULES)}')
    if data.get(VALIDATION_KEY) == VALIDATION_SPLIT:
        dataset = _at(data, 'val_dataloader.dataset')
        if not (isinstance(dataset, dict) and isinstance(dataset.get('type'), str)
                and isinstance(dataset.get('pipeline'), list)):
            return 'has a validation split but no val_dataloader.dataset with a type and pipeline'
    return None


def _is_size(value: Any) -> bool:
    sides = value if isinstance(value, list) and len(value) == 2 else [value]
    return all(isinstance(side, int) and not isinstance(side, bool) and 1 <= side <= MAX_IMAGE_SIDE
               for side in sides)


def _at(data: dict, where: str) -> Any:
    for key in where.split('.'):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _entries(value: Any, where: str = '') -> Iterator[Tuple[str, str, Any]]:
    """Every (place, key, value) of a nested config."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield where, key, item
            yield from _entries(item, f'{where}.{key}' if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _entries(item, f'{where}[{index}]')


@functools.lru_cache(maxsize=None)
def registered_types() -> FrozenSet[str]:
    """The names registered in mmengine's and mmpretrain's registries (kt's included)."""
    import mmengine.registry
    import mmpretrain.registry

    import registry_plugins  # noqa: F401  (kt's modules register on import)
    names: Set[str] = set()

    def collect(registry) -> None:
        registry.import_from_location()
        names.update(registry._module_dict)
        for child in registry._children.values():
            collect(child)

    for module in (mmengine.registry, mmpretrain.registry):
        for value in vars(module).values():
            if isinstance(value, mmengine.registry.Registry):
                collect(value)
    return frozenset(names)
