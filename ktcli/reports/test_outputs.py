"""Each stage's logits and attention maps on the test split, computed once and cached."""
import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Union

import torch

from ..errors import UserError
from ..writing import write_atomically

if TYPE_CHECKING:
    from mmengine.config import Config

OUTPUTS_NAME = 'test_outputs.pt'


def split_digest(cfg: 'Config') -> str:
    """A digest of a config's test dataset (type, root, split, pipeline)."""
    dataset = cfg.test_dataloader.dataset.to_dict()
    text = json.dumps(dataset, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
    """
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from registry_plugins import load_trained_model

    from ..stages.runner_config import cap_loader_workers

    cfg = cfg.copy()
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = load_trained_model(cfg, checkpoint, logger='silent').to(device)
    if batch_size:
        cfg.test_dataloader.batch_size = batch_size
    cap_loader_workers(cfg)
    loader = Runner.build_dataloader(cfg.test_dataloader)
    logits, labels, attention = [], [], []
    with torch.inference_mode():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            batch_logits, batch_attention = model.logits_and_attention(data['inputs'])
            logits.append(batch_logits.float().cpu())
            attention.append(batch_attention.float().cpu())
            labels.append(torch.cat([sample.gt_label for sample in data['data_samples']]).cpu())
    return dict(logits=torch.cat(logits), labels=torch.cat(labels),
                attention=torch.cat(attention))


def cached_test_outputs(stage_dir: Path, digest: str, config: Union[str, Path],
                        checkpoint: Union[str, Path], device: str = 'cpu',
                        batch_size: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """:func:`compute_test_outputs`, cached in the stage directory.

    The cache is keyed by the stage digest and the test split
    (:func:`split_digest`), so any later report reuses it without another
    forward pass, and a changed test split is recomputed. A cache that
    cannot be read (truncated, not weights-only) is recomputed; one that
    cannot be written is skipped.

    Args:
        stage_dir (Path): The stage directory, where the cache lives.
        digest (str): The stage digest.
        config (str | Path): The stage's ``config.json``.
        checkpoint (str | Path): Its checkpoint.
        device (str): Where to run. Defaults to ``'cpu'``.
        batch_size (int, optional): Overrides the config's test batch size.
            Defaults to None.
    """
    from ..stages.stage_files import read_stage_config
    cfg = read_stage_config(Path(config))
    path = Path(stage_dir) / OUTPUTS_NAME
    key = f'{digest}:{split_digest(cfg)}'
    with contextlib.suppress(Exception):
        cached = torch.load(path, weights_only=True)
        if cached.get('key') == key:
            return cached['outputs']
    outputs = compute_test_outputs(cfg, checkpoint, device, batch_size)
    buffer = io.BytesIO()
    torch.save(dict(key=key, outputs=outputs), buffer)
    with contextlib.suppress(UserError):
        write_atomically(path, buffer.getvalue())
    return outputs

