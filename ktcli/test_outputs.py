"""Each stage's logits and attention maps on the test split, computed once and cached."""
from pathlib import Path
from typing import Dict, Union

import torch

OUTPUTS_NAME = 'test_outputs.pt'


def compute_test_outputs(config: Union[str, Path], checkpoint: Union[str, Path],
                         device: str = 'cpu') -> Dict[str, torch.Tensor]:
    """Run a trained model over its config's test split.

    Args:
        config (str | Path): The stage's config file.
        checkpoint (str | Path): Its checkpoint (file or work dir).
        device (str): Where to run. Defaults to ``'cpu'``.

    Returns:
        dict: ``logits`` (N, classes), ``labels`` (N,) and ``attention``
        (N, H, W) normalised attention maps, on the CPU.
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from registry_plugins import load_trained_model

    cfg = Config.fromfile(str(config))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = load_trained_model(cfg, checkpoint, logger='silent').to(device)
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
                        checkpoint: Union[str, Path],
                        device: str = 'cpu') -> Dict[str, torch.Tensor]:
    """:func:`compute_test_outputs`, cached in the stage directory by digest."""
    path = Path(stage_dir) / OUTPUTS_NAME
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        if cached.get('digest') == digest:
            return cached['outputs']
    outputs = compute_test_outputs(config, checkpoint, device)
    temporary = path.with_suffix('.tmp')
    torch.save(dict(digest=digest, outputs=outputs), temporary)
    temporary.replace(path)
    return outputs


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return (logits.argmax(dim=1) == labels).float().mean().item() * 100


def ensemble_probabilities(members: list) -> torch.Tensor:
    """The members' softmax probabilities, averaged."""
    return torch.stack([m.softmax(dim=1) for m in members]).mean(dim=0)
