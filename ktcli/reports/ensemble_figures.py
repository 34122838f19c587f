"""Per-stage, ensemble and diversity figures from the stages' cached test outputs."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from registry_plugins.orthogonal_loss import orthogonal_loss

FUSIONS = ('softmax', 'logits')


@dataclass
class EnsembleRow:
    """The figures of one stage k, with the members listed before it."""

    index: int
    digest: str
    top1: float
    top5: Optional[float]
    ensemble_top1: float
    or_overlap: Optional[float]
    disagreement: Optional[float]


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy in percent."""
    hits = (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return hits.float().mean().item() * 100


def fuse(logits: Sequence[torch.Tensor], fusion: str = 'softmax') -> torch.Tensor:
    """Fuse members' logits: averaged softmax, or summed logits (the authors' script)."""
    if fusion not in FUSIONS:
        raise ValueError(f'fusion must be one of {FUSIONS}, got {fusion!r}')
    if fusion == 'logits':
        return torch.stack(list(logits)).sum(dim=0)
    return torch.stack([member.softmax(dim=1) for member in logits]).mean(dim=0)


def disagreement(first: torch.Tensor, second: torch.Tensor) -> float:
    """Share (percent) of samples whose top-1 predictions differ."""
    return (first.argmax(dim=1) != second.argmax(dim=1)).float().mean().item() * 100


def ensemble_rows(members: Sequence[Dict[str, torch.Tensor]], indices: Sequence[int],
                  digests: Sequence[str], fusion: str = 'softmax') -> List[EnsembleRow]:
    """One row per member: alone, in the ensemble with those before it, and how it differs.

    ``or_overlap`` is the OR-loss quantity (unweighted, eval mode) between the
    member's attention maps and those of the members before it;
    ``disagreement`` the mean over those members of the share of test images
    on which their top-1 predictions differ.

    Args:
        members (Sequence[dict]): Each member's ``logits``, ``labels`` and
            ``attention`` on the same test images.
        indices (Sequence[int]): The members' stage numbers.
        digests (Sequence[str]): The members' stage digests.
        fusion (str): ``'softmax'`` or ``'logits'``. Defaults to ``'softmax'``.

    Returns:
        list[EnsembleRow]: The rows.
    """
    labels = members[0]['labels']
    for member in members[1:]:
        if not torch.equal(member['labels'], labels):
            raise ValueError('the members were scored on different test images')
    rows = []
    for position, member in enumerate(members):
        earlier = members[:position]
        logits = member['logits']
        rows.append(EnsembleRow(
            index=indices[position],
            digest=digests[position],
            top1=topk_accuracy(logits, labels),
            top5=topk_accuracy(logits, labels, 5) if logits.shape[1] > 5 else None,
            ensemble_top1=topk_accuracy(fuse([m['logits'] for m in members[:position + 1]],
                                             fusion), labels),
            or_overlap=orthogonal_loss(member['attention'],
                                       [m['attention'] for m in earlier]).item()
            if earlier else None,
            disagreement=sum(disagreement(logits, m['logits']) for m in earlier) / len(earlier)
            if earlier else None,
        ))
    return rows

