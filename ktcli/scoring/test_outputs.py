"""Each stage's logits and attention maps on the test split, computed once and cached."""
import contextlib
import functools
import hashlib
import hmac
import io
import json
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch

from ktbase.errors import builds_from
from ktbase.writing import write_atomically

from ..errors import UserError
from ..reading import open_regular, read_capped
from .frozen_features import FROZEN_FEATURES, MAX_BYTES, batch_bytes, frozen_features_key

if TYPE_CHECKING:
    from mmengine.config import Config

    from ..stages.work_dir import StageData

OUTPUTS_NAME = 'test_outputs.pt'
VAL_OUTPUTS_NAME = 'val_outputs.pt'
# The secret that signs the cached outputs, in a private folder of kt's cache folder.
KEYS_FOLDER = 'private'
KEY_NAME = 'test_outputs.key'
# A cache file: this line, the HMAC of the identity and the outputs' bytes (hex), a newline,
# then the outputs as torch.save wrote them.
CACHE_MAGIC = b'kt-test-outputs-2\n'
# The largest cache file read (CUB's test split at stride 8: about 30 MB).
MAX_CACHE_BYTES = 2 ** 30


def split_digest(cfg: 'Config') -> str:
    """A digest of a config's test dataset: type, split, pipeline and the test split's
    fingerprint (the folder, for a config of an older kt that records none); a dataset
    with ``indices`` is a validation split, part of the training split, and is named by
    that split's fingerprint and its indices."""
    from ..stages.portable_config import recorded_fingerprint
    dataset = cfg.test_dataloader.dataset.to_dict()
    fingerprint = recorded_fingerprint(cfg)
    if fingerprint is not None:
        dataset.pop('data_root', None)
        dataset['fingerprint'] = (fingerprint.train if 'indices' in dataset
                                  else fingerprint.test)
    text = json.dumps(dataset, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _signature(content: bytes) -> str:
    """HMAC-SHA256 of ``content`` under this user's secret key (see :func:`_secret`)."""
    return hmac.new(_secret(), content, 'sha256').hexdigest()


@functools.lru_cache(maxsize=None)
def _secret() -> bytes:
    """This user's secret key for kt's caches: 32 random bytes in a file only this user can
    read (0600 in a 0700 folder of kt's cache, see
    :func:`ktcli.data.image_verification.cache_dir`). A key that others could read, or a
    folder they could enter, is replaced (whatever it signed is recomputed); without a
    cache folder, each process uses a new key, so nothing cached is trusted across runs."""
    from ..data.image_verification import cache_dir
    folder = cache_dir()
    if folder is None:
        return secrets.token_bytes(32)
    # Before keys were private, the key lay readable in the cache folder itself.
    with contextlib.suppress(OSError):
        (folder / KEY_NAME).unlink(missing_ok=True)
    keys = folder / KEYS_FOLDER
    with contextlib.suppress(OSError, UserError):
        keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _private(os.lstat(keys), stat.S_ISDIR, 0o777):
            os.chmod(keys, 0o700)
        if _private(os.lstat(keys), stat.S_ISDIR, 0o700):
            with contextlib.suppress(OSError, UserError), \
                    os.fdopen(open_regular(keys / KEY_NAME), 'rb') as file:
                key = file.read(64)
                if len(key) == 32 and _private(os.fstat(file.fileno()), stat.S_ISREG, 0o600):
                    return key
            key = secrets.token_bytes(32)
            write_atomically(keys / KEY_NAME, key, mode=0o600)
            return key
    return secrets.token_bytes(32)


def _private(status: os.stat_result, kind, mode: int) -> bool:
    """Whether a file or folder is this user's, of ``kind``, with no bits beyond ``mode``."""
    if not kind(status.st_mode) or status.st_uid != os.getuid():
        return False
    return not stat.S_IMODE(status.st_mode) & ~mode


def file_sha256(path: Path) -> str:
    """The sha256 of a regular file (read in blocks; a link or FIFO is refused)."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path), 'rb') as file:
        for block in iter(lambda: file.read(2 ** 20), b''):
            digest.update(block)
    return digest.hexdigest()


def compute_test_outputs(cfg: 'Config', checkpoint: Union[str, Path],
                         device: str = 'cpu',
                         batch_size: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Run a trained model over its config's test split.

    Args:
        cfg (Config): The stage's config.
        checkpoint (str | Path): Its checkpoint (file or work dir).
        device (str): Where to run. Defaults to ``'cpu'``.
        batch_size (int, optional): Overrides the config's test batch size.
            Defaults to None.

    Returns:
        dict: ``logits`` (N, classes), ``labels`` (N,) and ``attention``
        (N, H, W) normalised attention maps, on the CPU.

    A model whose backbone has frozen stages keeps their features of the split
    in :data:`~ktcli.scoring.frozen_features.FROZEN_FEATURES`; the next model
    with the same frozen weights (a later stage of the sequence) runs its
    trained stages from them, without loading an image.
    """
    from mmengine.registry import init_default_scope

    from registry_plugins import load_trained_model

    cfg = cfg.copy()
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = load_trained_model(cfg, checkpoint, logger='silent').to(device)
    if batch_size:
        cfg.test_dataloader.batch_size = batch_size
    key = frozen_features_key(model, f'{split_digest(cfg)}:{device}',
                              cfg.test_dataloader.batch_size)
    kept = FROZEN_FEATURES.get(key)
    logits, labels, attention = [], [], []
    with torch.inference_mode():
        if kept is None:
            kept, size = ([] if key is not None else None), 0
            for inputs, batch_labels in _test_batches(cfg, model):
                frozen = model.backbone.frozen_features(inputs) if key is not None else None
                _append(model.logits_and_attention(inputs, frozen), batch_labels,
                        logits, attention, labels)
                if kept is not None:
                    kept.append((frozen, batch_labels))
                    size += batch_bytes(frozen, batch_labels)
                    kept = kept if size <= MAX_BYTES else None
            FROZEN_FEATURES.keep(key, kept)
        else:
            for frozen, batch_labels in kept:
                _append(model.logits_and_attention(None, frozen), batch_labels,
                        logits, attention, labels)
    return dict(logits=torch.cat(logits), labels=torch.cat(labels),
                attention=torch.cat(attention))


def _append(outputs: Tuple[torch.Tensor, torch.Tensor], batch_labels: torch.Tensor,
            logits: list, attention: list, labels: list) -> None:
    logits.append(outputs[0].float().cpu())
    attention.append(outputs[1].float().cpu())
    labels.append(batch_labels)


def _test_batches(cfg: 'Config', model: torch.nn.Module) -> Iterator[Tuple[torch.Tensor,
                                                                          torch.Tensor]]:
    """The preprocessed test batches of ``cfg`` for ``model``, and their labels (CPU)."""
    from mmengine.runner import Runner

    from ..runner import cap_loader_workers
    cap_loader_workers(cfg)
    with builds_from(cfg.filename, 'test data loader'):
        loader = Runner.build_dataloader(cfg.test_dataloader)
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        yield data['inputs'], torch.cat([sample.gt_label
                                         for sample in data['data_samples']]).cpu()


def cached_test_outputs(stage_dir: Path, digest: str, config: Union[str, Path],
                        checkpoint: Union[str, Path], device: str = 'cpu',
                        batch_size: Optional[int] = None,
                        data: Optional['StageData'] = None,
                        split: str = 'test') -> Dict[str, torch.Tensor]:
    """:func:`compute_test_outputs`, cached in the stage directory (``split='validation'``:
    the same on the stage's validation split, cached in ``val_outputs.pt``).

    The cache is keyed by the stage digest, the test split
    (:func:`split_digest`: its fingerprint, not its folder) and the sha256 of
    the checkpoint it was computed from; one HMAC under this user's key covers
    that identity and the outputs' bytes, so any later report reuses it without
    another forward pass or the data, while a changed test split or checkpoint
    is recomputed, and so is a cache that came with a received work dir or was
    edited after this machine wrote it (no one without the key can sign other
    figures). A cache that cannot be read (truncated, not
    weights-only) is recomputed; one that cannot be written is skipped.

    Args:
        stage_dir (Path): The stage directory, where the cache lives.
        digest (str): The stage digest.
        config (str | Path): The stage's ``config.json``.
        checkpoint (str | Path): Its checkpoint.
        device (str): Where to run. Defaults to ``'cpu'``.
        batch_size (int, optional): Overrides the config's test batch size.
            Defaults to None.
        data (StageData, optional): Where the test split is found when the
            outputs are computed. Defaults to None (``--data-root`` not given).
        split (str): ``'test'`` or ``'validation'``. Defaults to ``'test'``.
    """
    from ..stages.config_files import read_stage_config
    from ..stages.validation_config import VALIDATION_SPLIT, validation_view
    from ..stages.work_dir import StageData
    cfg = read_stage_config(Path(config))
    path = Path(stage_dir) / OUTPUTS_NAME
    if split == VALIDATION_SPLIT:
        cfg, path = validation_view(cfg), Path(stage_dir) / VAL_OUTPUTS_NAME
    identity = f'{digest}:{split_digest(cfg)}:{file_sha256(Path(checkpoint))}\n'.encode()
    with contextlib.suppress(Exception):
        outputs = _signed_outputs(read_capped(path, MAX_CACHE_BYTES), identity)
        if outputs is not None:
            return outputs
    outputs = compute_test_outputs((data or StageData()).config(cfg), checkpoint, device,
                                   batch_size)
    buffer = io.BytesIO()
    torch.save(outputs, buffer)
    payload = buffer.getvalue()
    signature = _signature(identity + payload).encode()
    with contextlib.suppress(UserError):
        write_atomically(path, CACHE_MAGIC + signature + b'\n' + payload)
    return outputs


def _signed_outputs(content: bytes, identity: bytes) -> Optional[Dict[str, torch.Tensor]]:
    """The outputs of a cache file, if this user's key signed them with ``identity``."""
    header, signature = len(CACHE_MAGIC), len(CACHE_MAGIC) + 64
    if not content.startswith(CACHE_MAGIC) or content[signature:signature + 1] != b'\n':
        return None
    payload = content[signature + 1:]
    if not hmac.compare_digest(content[header:signature],
                               _signature(identity + payload).encode()):
        return None
    outputs = torch.load(io.BytesIO(payload), weights_only=True)
    if not isinstance(outputs, dict) or not all(
            isinstance(outputs.get(name), torch.Tensor)
            for name in ('logits', 'labels', 'attention')):
        return None
    return outputs


def validation_rows(stages: Sequence, device: str = 'cpu', data: Optional['StageData'] = None,
                    batch_size: Optional[int] = None) -> Optional[list]:
    """Each trained stage alone and in the ensemble with those before it on the stages'
    validation split (:func:`~ktcli.scoring.ensemble_figures.ensemble_rows`); None when they
    were trained without one.

    Args:
        stages (Sequence[TrainedStage]): A work dir's stages, in order.
        device (str): Where to run what is not cached. Defaults to ``'cpu'``.
        data (StageData, optional): Where their data is. Defaults to None.
        batch_size (int, optional): Overrides the configs' batch size.
    """
    from ..stages.config_files import read_stage_config
    from ..stages.validation_config import VALIDATION_SPLIT, has_validation_split
    from .ensemble_figures import ensemble_rows
    if not stages or not all(has_validation_split(read_stage_config(Path(stage.config)))
                             for stage in stages):
        return None
    outputs = [cached_test_outputs(stage.dir, stage.digest, stage.config, stage.checkpoint,
                                   device, batch_size, data, VALIDATION_SPLIT)
               for stage in stages]
    return ensemble_rows(outputs, [stage.index for stage in stages],
                         [stage.digest for stage in stages])
