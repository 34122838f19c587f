"""Per-class accuracy and confusions of the members and the ensemble, from cached outputs."""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

# Up to this many classes a confusion-matrix image is still readable.
CONFUSION_IMAGE_CLASSES = 50


def confusion_matrix(scores: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Counts (classes x classes): row = true class, column = top-1 prediction
    (torchmetrics' multiclass confusion matrix, not normalised)."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix
    return multiclass_confusion_matrix(scores.argmax(dim=1), labels.long(),
                                       num_classes=scores.shape[1]).numpy()


def class_accuracy(confusion: np.ndarray) -> List[Optional[float]]:
    """Per class, the share (%) of its test images classified as it (None without any)."""
    totals = confusion.sum(axis=1)
    return [100 * float(confusion[c, c]) / float(totals[c]) if totals[c] else None
            for c in range(len(confusion))]


def per_class_figures(members: Dict[str, torch.Tensor], ensemble: torch.Tensor,
                      labels: torch.Tensor, classes: Sequence[str], changes: int = 5,
                      pairs: int = 10) -> dict:
    """Per-class accuracy of each member and the ensemble, and where they differ.

    Args:
        members (dict): Member name -> its scores (N, classes) on the test split.
        ensemble (Tensor): The ensemble's scores (N, classes).
        labels (Tensor): True classes (N,).
        classes (Sequence[str]): Class names by index.
        changes (int): How many most-gained and most-lost classes. Defaults to 5.
        pairs (int): How many most-confused pairs. Defaults to 10.

    Returns:
        dict: ``classes`` (per class: name, test images, each member's and the
        ensemble's accuracy), ``gains`` / ``losses`` (classes where the ensemble's
        accuracy is above / below the first member's, largest first),
        ``confused`` (the ensemble's most frequent true -> predicted errors) and
        ``confusion`` (the ensemble's count matrix).
    """
    names = list(members)
    confusions = {name: confusion_matrix(scores, labels) for name, scores in members.items()}
    confusions['ensemble'] = confusion_matrix(ensemble, labels)
    accuracy = {name: class_accuracy(matrix) for name, matrix in confusions.items()}
    images = confusions['ensemble'].sum(axis=1)
    rows = [dict(index=c, name=classes[c], images=int(images[c]),
                 accuracy={name: accuracy[name][c] for name in [*names, 'ensemble']})
            for c in range(len(classes))]
    first = names[0]
    delta = [(row['accuracy']['ensemble'] - row['accuracy'][first], row) for row in rows
             if row['images']]
    gains = [dict(row, change=change) for change, row in
             sorted(delta, key=lambda item: (-item[0], item[1]['index'])) if change > 0]
    losses = [dict(row, change=change) for change, row in
              sorted(delta, key=lambda item: (item[0], item[1]['index'])) if change < 0]
    matrix = confusions['ensemble']
    errors = [(int(matrix[t, p]), t, p) for t in range(len(classes))
              for p in range(len(classes)) if t != p and matrix[t, p]]
    errors.sort(key=lambda item: (-item[0], item[1], item[2]))
    confused = [dict(true=classes[t], predicted=classes[p], count=count,
                     share=100 * count / int(images[t])) for count, t, p in errors[:pairs]]
    return dict(compared_with=first, classes=rows, gains=gains[:changes],
                losses=losses[:changes], confused=confused, confusion=matrix.tolist())


def confusion_image(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """A PNG of the confusion matrix, each row normalised by its class's test images, with
    the counts written in the cells when the classes are few (<= 20)."""
    from .plots import figure_png, plain_text, pyplot

    plt = pyplot()
    classes = [plain_text(name) for name in classes]
    counts = np.asarray(confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(14.0, 3 + 0.22 * len(classes))
    figure, axes = plt.subplots(figsize=(size + 1.5, size), dpi=100)
    shown = axes.imshow(shares, cmap='Blues', vmin=0, vmax=1)
    ticks = range(len(classes))
    font = 8 if len(classes) <= 25 else 6
    axes.set_xticks(ticks, classes, rotation=90, fontsize=font)
    axes.set_yticks(ticks, classes, fontsize=font)
    axes.set_xlabel('predicted class')
    axes.set_ylabel('true class')
    if len(classes) <= 20:
        for t in ticks:
            for p in ticks:
                if counts[t, p]:
                    axes.text(p, t, f'{int(counts[t, p])}', ha='center', va='center',
                              fontsize=7, color='white' if shares[t, p] > 0.5 else 'black')
    figure.colorbar(shown, ax=axes, fraction=0.04, label='share of the true class')
    axes.set_title('ensemble confusion matrix (test split)')
    return figure_png(figure)
