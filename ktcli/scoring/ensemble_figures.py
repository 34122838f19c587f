"""Per-stage, ensemble and diversity figures from the stages' cached test outputs."""
from dataclasses import dataclass, field
from itertools import combinations
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from registry_plugins.orthogonal_loss import orthogonal_loss

from .paired_statistics import percent

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
    correct: np.ndarray = field(repr=False)
    ensemble_correct: np.ndarray = field(repr=False)

    def record(self) -> dict:
        """The figures, JSON-ready, with the counts the accuracies come from."""
        return dict(index=self.index, digest=self.digest, top1=self.top1, top5=self.top5,
                    ensemble_top1=self.ensemble_top1, or_overlap=self.or_overlap,
                    disagreement=self.disagreement, images=len(self.correct),
                    top1_correct=int(self.correct.sum()),
                    ensemble_top1_correct=int(self.ensemble_correct.sum()))


def topk_hits(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> np.ndarray:
    """Whether each sample's label is among its top-k scores, as a bool array."""
    return (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1).numpy()


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy in percent, from the count of hits."""
    hits = topk_hits(scores, labels, k)
    return percent(hits.sum(), len(hits))


def fuse(logits: Sequence[torch.Tensor], fusion: str = 'softmax') -> torch.Tensor:
    """Fuse members' logits: averaged softmax, or summed logits (the authors' script)."""
    if fusion not in FUSIONS:
        raise ValueError(f'fusion must be one of {FUSIONS}, got {fusion!r}')
    if fusion == 'logits':
        return torch.stack(list(logits)).sum(dim=0)
    return torch.stack([member.softmax(dim=1) for member in logits]).mean(dim=0)


def disagreement(first: torch.Tensor, second: torch.Tensor) -> float:
    """Share (percent) of samples whose top-1 predictions differ."""
    return percent((first.argmax(dim=1) != second.argmax(dim=1)).sum().item(), len(first))


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
        correct = topk_hits(logits, labels)
        ensemble_correct = topk_hits(fuse([m['logits'] for m in members[:position + 1]],
                                          fusion), labels)
        rows.append(EnsembleRow(
            index=indices[position],
            digest=digests[position],
            top1=percent(correct.sum(), len(correct)),
            top5=topk_accuracy(logits, labels, 5) if logits.shape[1] > 5 else None,
            ensemble_top1=percent(ensemble_correct.sum(), len(ensemble_correct)),
            or_overlap=orthogonal_loss(member['attention'],
                                       [m['attention'] for m in earlier]).item()
            if earlier else None,
            disagreement=sum(disagreement(logits, m['logits']) for m in earlier) / len(earlier)
            if earlier else None,
            correct=correct,
            ensemble_correct=ensemble_correct,
        ))
    return rows


@dataclass(frozen=True)
class ErrorStructure:
    """How the members of an ensemble err together on the test images.

    Attributes:
        images (int): Test images.
        oracle_correct (int): Images at least one member classifies correctly
            (what no fusion of these members can exceed).
        pairs (list[dict]): Per pair of members (``stages``, in order): the
            share of images on which their top-1 differs (``disagreement``,
            %), the Pearson correlation of their error indicators
            (``error_correlation``; None where a member is always or never
            right) and the OR overlap of the later one's attention maps with
            the earlier one's (``or_overlap``).
    """

    images: int
    oracle_correct: int
    pairs: List[dict]

    @property
    def oracle_top1(self) -> float:
        """The oracle accuracy, in %."""
        return percent(self.oracle_correct, self.images)

    @property
    def mean_disagreement(self) -> Optional[float]:
        """Mean pairwise disagreement, in % (None for one member)."""
        return self._mean('disagreement')

    @property
    def mean_error_correlation(self) -> Optional[float]:
        """Mean pairwise correlation of errors (None where none is defined)."""
        return self._mean('error_correlation')

    @property
    def mean_or_overlap(self) -> Optional[float]:
        """Mean pairwise OR overlap (None for one member)."""
        return self._mean('or_overlap')

    def _mean(self, key: str) -> Optional[float]:
        values = [pair[key] for pair in self.pairs if pair[key] is not None]
        return float(np.mean(values)) if values else None

    def record(self) -> dict:
        """JSON-ready, with the summary figures."""
        return dict(images=self.images, oracle_correct=self.oracle_correct,
                    oracle_top1=self.oracle_top1, mean_disagreement=self.mean_disagreement,
                    mean_error_correlation=self.mean_error_correlation,
                    mean_or_overlap=self.mean_or_overlap, pairs=self.pairs)


def error_structure(members: Sequence[Dict[str, torch.Tensor]],
                    indices: Sequence[int]) -> ErrorStructure:
    """The oracle accuracy, pairwise disagreement and error correlation of members.

    Args:
        members (Sequence[dict]): Each member's ``logits``, ``labels`` and
            ``attention`` on the same test images.
        indices (Sequence[int]): The members' stage numbers.
    """
    labels = members[0]['labels']
    errors = np.stack([~topk_hits(member['logits'], labels) for member in members])
    pairs = []
    for i, j in combinations(range(len(members)), 2):
        constant = any(errors[k].min() == errors[k].max() for k in (i, j))
        pairs.append(dict(
            stages=[indices[i], indices[j]],
            disagreement=disagreement(members[i]['logits'], members[j]['logits']),
            error_correlation=None if constant else float(
                np.corrcoef(errors[i], errors[j])[0, 1]),
            or_overlap=orthogonal_loss(members[j]['attention'],
                                       [members[i]['attention']]).item()))
    return ErrorStructure(len(labels), int((~errors).any(axis=0).sum()), pairs)
