"""The check of a reduced-precision (int8, fp16) export: judged by accuracy, not by 1e-4.

A quantised ensemble cannot reproduce the fp32 probabilities to 1e-4; what matters is that
it classifies as the fp32 ensemble does. The file is run in a fresh process
(:func:`~ktcli.deployment.export_check.run_fresh`) over the whole test split, and two figures
decide: the share of test images on which it predicts the class the fp32 ensemble predicts
(top-1 agreement, at least :data:`MIN_AGREEMENT` %) and the difference of their top-1
accuracies (within :data:`TOP1_TOLERANCE` points either way). That difference comes with its
95% paired interval and McNemar's p (:mod:`~ktcli.scoring.paired_statistics`), so a reader
sees whether the test split can resolve it at all. The fp32 ensemble's
predictions are its members' cached test outputs fused (what ``kt train`` and ``kt ensemble``
report, computed once per stage and kept in its directory), so the check costs one pass of
the reduced-precision file. Only the class probabilities are judged; attention maps are not
compared.
"""
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from ..scoring.paired_statistics import PairedComparison, compare_paired, percent
from ..scoring.test_outputs import cached_test_outputs
from .ensemble_module import StageEnsemble, fused_probabilities
from .export_check import ExportCheckError, run_fresh
from .split_images import labelled_test_batches

MIN_AGREEMENT = 99.0
TOP1_TOLERANCE = 0.5


@dataclass(frozen=True)
class AccuracyThresholds:
    """What a reduced-precision file must reach on the test split.

    Args:
        min_agreement (float): Least top-1 agreement with the fp32 ensemble,
            in %. Defaults to :data:`MIN_AGREEMENT`.
        top1_tolerance (float): Largest difference from the fp32 ensemble's
            top-1, in points, either way. Defaults to :data:`TOP1_TOLERANCE`.
    """

    min_agreement: float = MIN_AGREEMENT
    top1_tolerance: float = TOP1_TOLERANCE


@dataclass(frozen=True)
class AccuracyFigures:
    """A reduced-precision file against the fp32 ensemble on the test split.

    Attributes:
        images (int): Test images.
        agreement (float): % of them on which both predict the same class.
        fp32_top1 (float): The fp32 ensemble's top-1 accuracy, in %.
        top1 (float): The file's top-1 accuracy, in %.
        delta (float): ``top1 - fp32_top1``, in points.
        min_agreement (float): The threshold it was held to.
        top1_tolerance (float): The threshold it was held to.
        comparison (PairedComparison): The file against the fp32 ensemble:
            the counts, ``delta`` with its 95% paired interval, McNemar's p.
    """

    images: int
    agreement: float
    fp32_top1: float
    top1: float
    delta: float
    min_agreement: float
    top1_tolerance: float
    comparison: PairedComparison

    @property
    def passed(self) -> bool:
        """Whether both thresholds are met."""
        return (self.agreement >= self.min_agreement
                and abs(self.delta) <= self.top1_tolerance)

    def summary(self) -> str:
        """The figures in one line."""
        return (f'on {self.images} test images its top-1 agrees with the fp32 ensemble on '
                f'{self.agreement:.2f}% (at least {self.min_agreement:g}% needed) and its top-1 '
                f'is {self.top1:.2f}% against {self.fp32_top1:.2f}% (Δ {self.delta:+.2f} points, '
                f'allowed ±{self.top1_tolerance:g}; 95% interval [{self.comparison.ci_low:+.2f}, '
                f'{self.comparison.ci_high:+.2f}])')

    def to_dict(self) -> dict:
        """A JSON-ready copy (the file's metadata keeps it)."""
        return dict(asdict(self), comparison=self.comparison.to_dict())


def figures(predicted: np.ndarray, reference: np.ndarray, labels: np.ndarray,
            thresholds: AccuracyThresholds, dtype: str = 'reduced') -> AccuracyFigures:
    """Compare the classes a file predicts with the fp32 ensemble's and the labels.

    Args:
        predicted (np.ndarray): The file's top-1 class per test image.
        reference (np.ndarray): The fp32 ensemble's.
        labels (np.ndarray): The true classes.
        thresholds (AccuracyThresholds): What it is held to.
        dtype (str): The file's precision, its name in the comparison.
            Defaults to ``'reduced'``.

    Returns:
        AccuracyFigures: The figures (percentages from the counts).
    """
    comparison = compare_paired(predicted == labels, reference == labels, dtype, 'fp32')
    return AccuracyFigures(len(labels), percent(np.sum(predicted == reference), len(labels)),
                           comparison.second_top1, comparison.first_top1, comparison.difference,
                           thresholds.min_agreement, thresholds.top1_tolerance, comparison)


def fp32_predictions(ensemble: StageEnsemble) -> Tuple[np.ndarray, np.ndarray]:
    """The fp32 ensemble's top-1 class and the label of every test image, in split order.

    Args:
        ensemble (StageEnsemble): An ensemble loaded from a work dir.

    Returns:
        tuple: The predicted classes (N,) and the labels (N,).
    """
    if not ensemble.stages:
        raise ValueError('the accuracy check needs an ensemble loaded from a work dir')
    outputs = [cached_test_outputs(stage.dir, stage.digest, stage.config, stage.checkpoint,
                                   str(ensemble.device), data=ensemble.data)
               for stage in ensemble.stages]
    probabilities = fused_probabilities([output['logits'] for output in outputs],
                                        ensemble.module.fusion)
    return probabilities.argmax(dim=1).numpy(), outputs[0]['labels'].numpy()


def check_accuracy(path: Path, ensemble: StageEnsemble, metadata: dict,
                   thresholds: AccuracyThresholds, batch_size: int) -> AccuracyFigures:
    """Run ``path`` in a fresh process on the whole test split and judge it.

    Args:
        path (Path): The reduced-precision file.
        ensemble (StageEnsemble): The fp32 ensemble it was made from, loaded
            from a work dir.
        metadata (dict): The metadata the file must read back.
        thresholds (AccuracyThresholds): What it must reach.
        batch_size (int): Test images per call.

    Returns:
        AccuracyFigures: The figures; they may miss the thresholds (see
        :attr:`AccuracyFigures.passed`).

    Raises:
        ExportCheckError: The file does not load or run, its metadata does not
            read back, or the test split no longer matches the cached outputs.
        UserError: The test split cannot be read.
    """
    reference, labels = fp32_predictions(ensemble)
    read_labels: List[np.ndarray] = []

    def test_batches():
        for k, (images, batch_labels) in enumerate(labelled_test_batches(ensemble.config,
                                                                         batch_size)):
            read_labels.append(batch_labels)
            yield f'test {k}', images

    outputs, read_metadata = run_fresh(path, test_batches(), str(ensemble.device))
    if read_metadata != metadata:
        raise ExportCheckError(f'{path.name} failed its check: its metadata did not read back '
                               'as written; please report this')
    if not np.array_equal(np.concatenate(read_labels), labels):
        raise ExportCheckError("the test split's labels differ from those the stages' cached "
                               'test outputs were computed on; delete test_outputs.pt in the '
                               'stage directories to recompute them')
    predicted = np.concatenate([outputs[f'test {k}'][0].argmax(axis=1)
                                for k in range(len(read_labels))])
    return figures(predicted, reference, labels, thresholds, metadata['dtype'])
