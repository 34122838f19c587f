"""Is a difference between two accuracies real? Paired intervals and tests on test images.

Every comparison kt prints (Ours against Base, an ensemble against its best member, each
alpha against alpha 0, int8 against fp32, a student against its ensemble) puts two
prediction sets side by side on the same test images. What varies between two such
accuracies is only the images on which the two disagree, so the comparison is paired:

* :func:`compare_paired`: one run of each. The top-1 difference with a percentile
  interval from a bootstrap over the test images (both sets resampled together), and
  McNemar's exact test, which looks only at the discordant images (those exactly one of
  the two classifies correctly).
* :func:`compare_replicates`: independent replicates (``--seeds``), each scored on the same
  test images. The mean of the per-seed differences with a two-level bootstrap interval:
  seeds with replacement, then test images with replacement (one draw of images for every
  seed, since each was scored on the same ones), so it carries the variation between
  seeds and that of a finite test split. Its p is the bootstrap's two-sided p; the sign
  count says in how many seeds the first set is ahead.
* :func:`estimate_accuracy`: one accuracy (mean over seeds) with the same interval, for
  error bars.
* :func:`verdict`: ``'<first> ahead'``, ``'<second> ahead'`` or ``'not resolved'``, from
  whether the interval excludes 0.

Accuracies are counts of correct images; percentages come from the counts by one exact
division (:func:`percent`). The bootstrap resamples each test image's value pattern
(0/1 correct, or -1/0/+1 differences, one value per seed) through multinomial counts of
the distinct patterns, which is the same as drawing images with replacement and costs
O(resamples x patterns), whatever the number of images. Resampling is seeded: the same
inputs give the same interval.
"""
from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 0
NOT_RESOLVED = 'not resolved'
# Resampled counts held in memory at once (resamples x distinct patterns).
_CHUNK_CELLS = 1 << 22


def percent(count: int, total: int) -> float:
    """``100 * count / total`` as the float nearest the exact value (no float32 detour)."""
    return 100 * int(count) / int(total)


def verdict(ci_low: float, ci_high: float, first: str = 'Ours', second: str = 'Base') -> str:
    """One plain word for a difference ``first - second`` and its interval.

    Args:
        ci_low (float): Lower end of the interval of the difference.
        ci_high (float): Upper end.
        first (str): Name of the first set. Defaults to ``'Ours'``.
        second (str): Name of the second set. Defaults to ``'Base'``.

    Returns:
        str: ``'<first> ahead'`` when the interval lies above 0, ``'<second>
        ahead'`` when it lies below, else ``'not resolved'``.
    """
    if ci_low > 0:
        return f'{first} ahead'
    if ci_high < 0:
        return f'{second} ahead'
    return NOT_RESOLVED


def bootstrap_means(values: np.ndarray, resamples: int = RESAMPLES,
                    seed: int = SEED) -> np.ndarray:
    """Resampled means of per-image values over seeds and test images.

    Each resample draws the test images with replacement (one draw for all
    seeds) and then, with several seeds, the seeds with replacement, and
    averages the values drawn. With one seed this is the ordinary bootstrap
    over images; with values that do not vary within a seed it is the
    bootstrap over seeds.

    Args:
        values (np.ndarray): ``(seeds, images)`` (or ``(images,)``) small
            integers: 0/1 per image for an accuracy, -1/0/+1 for a difference.
        resamples (int): Number of resamples. Defaults to :data:`RESAMPLES`.
        seed (int): Seed of the resampling. Defaults to :data:`SEED`.

    Returns:
        np.ndarray: ``(resamples,)`` resampled means (as fractions).
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.int64))
    seeds, images = values.shape
    if images == 0:
        raise ValueError('no test images to resample')
    rng = np.random.default_rng(seed)
    patterns, counts = np.unique(values.T, axis=0, return_counts=True)
    shares = counts / images
    chunk = max(1, _CHUNK_CELLS // len(patterns))
    means = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        sums = rng.multinomial(images, shares, size=size) @ patterns
        if seeds > 1:
            sums = np.take_along_axis(sums, rng.integers(seeds, size=(size, seeds)), axis=1)
        means.append(sums.sum(axis=1) / (seeds * images))
    return np.concatenate(means)


def _interval(means: np.ndarray, confidence: float) -> Tuple[float, float]:
    """The percentile interval of resampled means, in points."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(100 * means, [tail, 100 - tail])
    return float(low), float(high)


def _bootstrap_p(means: np.ndarray) -> float:
    """Two-sided bootstrap p of a difference of 0: twice the smaller share of resampled
    means on either side of 0, counted as (k + 1) / (resamples + 1), at most 1."""
    below, above = int(np.sum(means <= 0)), int(np.sum(means >= 0))
    return min(1.0, 2 * (min(below, above) + 1) / (len(means) + 1))


def mcnemar_exact_p(first_only: int, second_only: int) -> float:
    """McNemar's exact two-sided p from the discordant counts (1 without any).

    Args:
        first_only (int): Images only the first set classifies correctly.
        second_only (int): Images only the second set classifies correctly.
    """
    from scipy.stats import binomtest  # scipy.stats takes a while to import: only here
    discordant = int(first_only) + int(second_only)
    if discordant == 0:
        return 1.0
    return float(binomtest(int(first_only), discordant, 0.5).pvalue)


@dataclass(frozen=True)
class Difference:
    """``first - second`` in top-1, with its interval and p (see the subclasses).

    Attributes:
        first (str): Name of the first set (e.g. ``'Ours'``).
        second (str): Name of the second set (e.g. ``'Base'``).
        difference (float): ``first - second`` top-1, in points.
        ci_low (float): Lower end of its bootstrap interval, in points.
        ci_high (float): Upper end.
        p_value (float): Two-sided p of no difference.
        confidence (float): Confidence of the interval.
        resamples (int): Bootstrap resamples.
    """

    first: str
    second: str
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float
    resamples: int

    @property
    def half_width(self) -> float:
        """Half the interval's width: about the smallest difference it resolves, in points."""
        return (self.ci_high - self.ci_low) / 2

    @property
    def verdict(self) -> str:
        """See :func:`verdict`."""
        return verdict(self.ci_low, self.ci_high, self.first, self.second)


@dataclass(frozen=True)
class PairedComparison(Difference):
    """Two prediction sets on the same test images (one run of each); ``p_value`` is
    McNemar's exact p.

    Attributes:
        images (int): Test images.
        first_correct (int): Images the first set classifies correctly.
        second_correct (int): Images the second set classifies correctly.
        first_only (int): Discordant images only the first gets right.
        second_only (int): Discordant images only the second gets right.
    """

    images: int
    first_correct: int
    second_correct: int
    first_only: int
    second_only: int

    @property
    def first_top1(self) -> float:
        """The first set's top-1, in %."""
        return percent(self.first_correct, self.images)

    @property
    def second_top1(self) -> float:
        """The second set's top-1, in %."""
        return percent(self.second_correct, self.images)

    def to_dict(self) -> Dict[str, object]:
        """A JSON-ready copy, with the percentages, half-width and verdict."""
        return dict(asdict(self), first_top1=self.first_top1, second_top1=self.second_top1,
                    half_width=self.half_width, verdict=self.verdict)


@dataclass(frozen=True)
class ReplicateComparison(Difference):
    """``first - second`` over independent replicates (seeds) on the same test images:
    ``difference`` is the mean of the per-seed differences, the interval the two-level
    bootstrap's and ``p_value`` its two-sided p (with one seed: the image-level interval
    and McNemar's exact p).

    Attributes:
        per_seed (tuple[PairedComparison, ...]): Each seed's comparison.
    """

    per_seed: Tuple[PairedComparison, ...]

    @property
    def seeds(self) -> int:
        """Number of replicates."""
        return len(self.per_seed)

    @property
    def ahead(self) -> int:
        """Seeds in which the first set is ahead."""
        return sum(c.difference > 0 for c in self.per_seed)

    @property
    def behind(self) -> int:
        """Seeds in which the second set is ahead."""
        return sum(c.difference < 0 for c in self.per_seed)

    @property
    def sign_count(self) -> str:
        """E.g. ``'Ours ahead in 3 of 3 seeds'``."""
        return f'{self.first} ahead in {self.ahead} of {self.seeds} seed' + (
            's' if self.seeds > 1 else '')

    def to_dict(self) -> Dict[str, object]:
        """A JSON-ready copy, with the half-width, sign count and verdict."""
        record = asdict(self)
        record['per_seed'] = [c.to_dict() for c in self.per_seed]
        return dict(record, half_width=self.half_width, ahead=self.ahead, behind=self.behind,
                    sign_count=self.sign_count, verdict=self.verdict)


@dataclass(frozen=True)
class AccuracyEstimate:
    """A top-1 accuracy (mean over seeds) with its bootstrap interval.

    Attributes:
        correct (tuple[int, ...]): Correct test images, per seed.
        images (int): Test images (the same in every seed).
        top1 (float): Mean top-1 over the seeds, in %.
        ci_low (float): Lower end of its interval (two-level with several
            seeds), in %.
        ci_high (float): Upper end.
    """

    correct: Tuple[int, ...]
    images: int
    top1: float
    ci_low: float
    ci_high: float

    @property
    def per_seed(self) -> Tuple[float, ...]:
        """Each seed's top-1, in %."""
        return tuple(percent(count, self.images) for count in self.correct)

    def to_dict(self) -> Dict[str, object]:
        """A JSON-ready copy, with the per-seed percentages."""
        return dict(asdict(self), per_seed=list(self.per_seed))


def _as_matrix(correct) -> np.ndarray:
    """Per-seed correctness as a ``(seeds, images)`` bool array."""
    matrix = np.atleast_2d(np.asarray(correct, dtype=bool))
    if matrix.ndim != 2:
        raise ValueError('expected one correctness vector per seed')
    return matrix


def compare_paired(first_correct, second_correct, first: str = 'Ours', second: str = 'Base',
                   confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                   seed: int = SEED) -> PairedComparison:
    """Compare two prediction sets on the same test images.

    Args:
        first_correct (array-like): ``(images,)`` whether the first set
            classifies each test image correctly.
        second_correct (array-like): The same for the second set, same order.
        first (str): Name of the first set. Defaults to ``'Ours'``.
        second (str): Name of the second set. Defaults to ``'Base'``.
        confidence (float): Of the interval. Defaults to 0.95.
        resamples (int): Bootstrap resamples. Defaults to 10,000.
        seed (int): Seed of the resampling. Defaults to 0.

    Returns:
        PairedComparison: The difference, its interval, McNemar's p.
    """
    a = np.asarray(first_correct, dtype=bool)
    b = np.asarray(second_correct, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f'need two correctness vectors of one length, got {a.shape} and '
                         f'{b.shape}')
    first_only, second_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    low, high = _interval(bootstrap_means(a.astype(np.int64) - b, resamples, seed), confidence)
    return PairedComparison(
        first=first, second=second, difference=percent(first_only - second_only, len(a)),
        ci_low=low, ci_high=high, p_value=mcnemar_exact_p(first_only, second_only),
        confidence=confidence, resamples=resamples, images=len(a), first_correct=int(a.sum()),
        second_correct=int(b.sum()), first_only=first_only, second_only=second_only)


def compare_replicates(first_correct, second_correct, first: str = 'Ours',
                       second: str = 'Base', confidence: float = CONFIDENCE,
                       resamples: int = RESAMPLES, seed: int = SEED) -> ReplicateComparison:
    """Compare two prediction sets over independent replicates on the same test images.

    Args:
        first_correct (array-like): ``(seeds, images)`` correctness of the
            first set, one row per seed (a single vector means one seed).
        second_correct (array-like): The same for the second set, same seeds
            and images in the same order.
        first, second, confidence, resamples, seed: As for
            :func:`compare_paired`.

    Returns:
        ReplicateComparison: The mean difference, its two-level interval,
        p and the per-seed comparisons.
    """
    a, b = _as_matrix(first_correct), _as_matrix(second_correct)
    if a.shape != b.shape:
        raise ValueError(f'the two sets differ in seeds or images: {a.shape} and {b.shape}')
    per_seed = tuple(compare_paired(x, y, first, second, confidence, resamples, seed)
                     for x, y in zip(a, b))
    if len(per_seed) == 1:
        only = per_seed[0]
        low, high, p_value = only.ci_low, only.ci_high, only.p_value
    else:
        means = bootstrap_means(a.astype(np.int64) - b, resamples, seed)
        (low, high), p_value = _interval(means, confidence), _bootstrap_p(means)
    difference = percent(int(a.sum()) - int(b.sum()), a.size)
    return ReplicateComparison(first=first, second=second, difference=difference, ci_low=low,
                               ci_high=high, p_value=p_value, confidence=confidence,
                               resamples=resamples, per_seed=per_seed)


def estimate_accuracy(correct, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                      seed: int = SEED) -> AccuracyEstimate:
    """A top-1 accuracy over seeds with its bootstrap interval.

    Args:
        correct (array-like): ``(seeds, images)`` (or ``(images,)``)
            correctness per test image.
        confidence (float): Of the interval. Defaults to 0.95.
        resamples (int): Bootstrap resamples. Defaults to 10,000.
        seed (int): Seed of the resampling. Defaults to 0.
    """
    matrix = _as_matrix(correct)
    low, high = _interval(bootstrap_means(matrix, resamples, seed), confidence)
    return AccuracyEstimate(tuple(int(count) for count in matrix.sum(axis=1)),
                            matrix.shape[1], percent(int(matrix.sum()), matrix.size), low, high)
