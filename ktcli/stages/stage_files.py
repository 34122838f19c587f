"""What a stage directory holds besides mmengine's logs and checkpoints, as data kt can trust.

A stage directory (``WORK_DIR/stages/<digest>/``) carries everything needed
to use and rebuild the record of its stage:

- ``config.json``: the stage's full config as data. This is what kt reads
  (never the Python next to it), and before anything is built from it every
  ``type`` must name a class registered in mmengine's or mmpretrain's
  registries, so a received file cannot make mmengine import and call an
  arbitrary object.
- ``config.py``: the same config for people and for ``tools/train.py``.
- ``stage.json``: the stage's record (digest, status, checkpoint, training
  time, scores), from which the work dir's manifest can be rebuilt.

Work dirs travel between people; every file here is written atomically and
read as data only.
"""
import functools
import json
from pathlib import Path
from typing import Any, FrozenSet, Iterator, Optional, Set

from mmengine.config import Config

from ..errors import UserError
from ..writing import write_atomically

CONFIG_DATA = 'config.json'
CONFIG_PYTHON = 'config.py'
STAGE_RECORD = 'stage.json'
# A scope prefix a registered type may carry, e.g. 'mmpretrain.ResNet'.
_SCOPES = ('mmpretrain.', 'mmengine.')


def write_stage_config(cfg: Config, stage_dir: Path) -> Path:
    """Write ``cfg`` as ``config.json`` (read by kt) and ``config.py`` (for people).

    Args:
        cfg (Config): The stage's complete config.
        stage_dir (Path): The stage directory.

    Returns:
        Path: The ``config.json`` written.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    data = json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
    write_atomically(stage_dir / CONFIG_DATA, data)
    write_atomically(stage_dir / CONFIG_PYTHON, cfg.pretty_text)
    return stage_dir / CONFIG_DATA


def read_stage_config(path: Path) -> Config:
    """Read a stage's ``config.json`` as data, refusing anything that could run code.

    Args:
        path (Path): A stage's ``config.json``.

    Returns:
        Config: The config.

    Raises:
        UserError: The file is missing, not JSON, or names a ``type`` that
            no registry holds, ``_base_`` files or imports besides kt's.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f'{path} is missing; this stage was written by an older kt or is '
                        'incomplete: retrain it with `kt train`')
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f'{path} is not a readable stage config ({error}); retrain the stage '
                        'with `kt train`') from None
    problem = _unsafe_entry(data)
    if problem is not None:
        raise UserError(f'{path} {problem}; kt builds registered modules only, so it will not '
                        'use this stage: retrain it with `kt train`')
    return Config(data)


def _unsafe_entry(data: Any) -> Optional[str]:
    """Why a config's data could run code when built, or None."""
    if not isinstance(data, dict):
        return 'is not a config (a JSON object)'
    if '_base_' in data:
        return 'inherits other files (_base_)'
    imports = data.get('custom_imports', {}).get('imports', [])
    if imports not in (['registry_plugins'], 'registry_plugins'):
        return f'imports {imports!r} (custom_imports)'
    known = registered_types()
    for name in _types(data):
        bare = name if not isinstance(name, str) else next(
            (name[len(scope):] for scope in _SCOPES if name.startswith(scope)), name)
        if bare not in known:
            return f'names {name!r} as a type, which no registry holds'
    return None


def _types(value: Any) -> Iterator[Any]:
    """Every ``type`` value in a nested config."""
    if isinstance(value, dict):
        if 'type' in value:
            yield value['type']
        for item in value.values():
            yield from _types(item)
    elif isinstance(value, list):
        for item in value:
            yield from _types(item)


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


def write_stage_record(stage_dir: Path, record: dict) -> None:
    """Write a stage's record (``stage.json``) into its directory."""
    write_atomically(stage_dir / STAGE_RECORD, json.dumps(record, indent=2, sort_keys=True))


def read_stage_record(stage_dir: Path) -> Optional[dict]:
    """A stage directory's record, or None when it has no readable one."""
    try:
        record = json.loads((stage_dir / STAGE_RECORD).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get('digest') == stage_dir.name else None

