"""How well a model's probabilities match how often it is right: ECE, NLL, reliability.

The expected calibration error is torchmetrics' top-label calibration error (L1, equal-width
confidence bins, Guo et al. 2017); the reliability diagram shows the same bins.
"""
from dataclasses import dataclass
from typing import List, Sequence

import torch

BINS = 15


@dataclass(frozen=True)
class Calibration:
    """One model's calibration on the test split.

    Attributes:
        name (str): The model, e.g. ``'stage 1'`` or ``'ensemble'``.
        ece (float): Expected calibration error, 0..1 (torchmetrics).
        nll (float): Mean negative log-likelihood of the true class, in nats.
        bins (list[dict]): Per confidence bin ``[low, high)``: ``low``, ``high``,
            ``count``, ``confidence`` (mean top-1 probability) and ``accuracy``
            (share right), both None in an empty bin.
    """

    name: str
    ece: float
    nll: float
    bins: List[dict]


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor,
                               bins: int = BINS) -> float:
    """torchmetrics' multiclass (top-label) calibration error, L1 norm.

    Args:
        probabilities (Tensor): Class probabilities (N, classes), rows summing to 1.
        labels (Tensor): True classes (N,).
        bins (int): Equal-width confidence bins over 0..1. Defaults to 15.
    """
    from torchmetrics.functional.classification import multiclass_calibration_error
    return float(multiclass_calibration_error(probabilities.float(), labels.long(),
                                              num_classes=probabilities.shape[1],
                                              n_bins=bins, norm='l1'))


def negative_log_likelihood(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean ``-log p(true class)``; a probability that underflowed to 0 counts as the
    smallest positive float32 (a finite, very large loss)."""
    true = probabilities[torch.arange(len(labels)), labels].float()
    return float(-true.clamp_min(torch.finfo(torch.float32).tiny).log().mean())


def reliability_bins(probabilities: torch.Tensor, labels: torch.Tensor,
                     bins: int = BINS) -> List[dict]:
    """The confidence bins of the reliability diagram, binned as torchmetrics bins for its
    ECE (a confidence of exactly 1 joins the last bin here)."""
    confidence, predicted = probabilities.float().max(dim=1)
    right = (predicted == labels).float()
    boundaries = torch.linspace(0, 1, bins + 1)
    index = (torch.bucketize(confidence, boundaries, right=True) - 1).clamp(0, bins - 1)
    records = []
    for position in range(bins):
        members = index == position
        count = int(members.sum())
        records.append(dict(
            low=float(boundaries[position]), high=float(boundaries[position + 1]), count=count,
            confidence=float(confidence[members].mean()) if count else None,
            accuracy=float(right[members].mean()) if count else None))
    return records


def calibration(name: str, probabilities: torch.Tensor, labels: torch.Tensor,
                bins: int = BINS) -> Calibration:
    """ECE, NLL and reliability bins of one model."""
    return Calibration(name, expected_calibration_error(probabilities, labels, bins),
                       negative_log_likelihood(probabilities, labels),
                       reliability_bins(probabilities, labels, bins))


def reliability_diagram(models: Sequence[Calibration]) -> bytes:
    """A PNG: per model, accuracy against mean confidence in each non-empty bin (the
    diagonal is perfect calibration), with the share of images per bin beneath."""
    from .plots import figure_png, pyplot

    plt = pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5.4), dpi=110, sharex=True,
                                         gridspec_kw=dict(height_ratios=[3, 1]))
    top.plot([0, 1], [0, 1], color='0.6', linestyle='--', linewidth=1, label='perfect')
    width = 1 / max(1, len(models[0].bins)) / (len(models) + 1)
    for position, model in enumerate(models):
        filled = [b for b in model.bins if b['count']]
        top.plot([b['confidence'] for b in filled], [b['accuracy'] for b in filled],
                 marker='o', markersize=4, label=f'{model.name} (ECE {model.ece:.3f})')
        total = sum(b['count'] for b in model.bins)
        bottom.bar([b['low'] + (position + 0.5) * width for b in model.bins],
                   [b['count'] / total for b in model.bins], width=width)
    top.set_ylabel('accuracy')
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc='upper left')
    top.set_title('reliability: accuracy vs confidence (top-1)')
    bottom.set_xlabel('confidence (top-1 probability)')
    bottom.set_ylabel('share')
    bottom.grid(alpha=0.3)
    return figure_png(figure)
