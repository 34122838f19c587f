"""Which alpha ``kt ablate alpha --select-on`` chooses, and on which images it chose it.

Choosing alpha by its test accuracy and reporting that accuracy reports the best of several
noisy draws: on the demo's 4,000 test images one ensemble's 95% half-width is about 1.3
points, the size of the OR-loss's reported gain. ``--select-on val`` chooses on the
validation split (images held out of the training split, never the test split), so the
chosen alpha's test accuracy and its paired interval against alpha 0 are an honest
estimate; ``--select-on test`` chooses on the test set itself, as the authors' code picks
its checkpoint, and every figure of that choice says "selected on the test set".
"""
import statistics
from dataclasses import dataclass
from typing import Dict, Sequence

from ..errors import UserError

VALIDATION = 'val'
TEST = 'test'
# How a choice is named wherever it is printed or written.
CHOICE_LABELS = {VALIDATION: 'alpha chosen on validation',
                 TEST: 'alpha chosen on the test set (selected on the test set)'}


@dataclass(frozen=True)
class AlphaChoice:
    """The alpha a selection rule chose.

    Attributes:
        on (str): ``'val'`` or ``'test'``, the split it was chosen on.
        alpha (float): The chosen alpha.
        scores (dict): Each alpha's mean ensemble top-1 over the seeds on
            that split, in %.
    """

    on: str
    alpha: float
    scores: Dict[float, float]

    @property
    def label(self) -> str:
        """``'alpha chosen on validation'`` or the test set's labelled wording."""
        return CHOICE_LABELS[self.on]

    def to_dict(self) -> dict:
        """JSON-ready, with the label."""
        return dict(on=self.on, label=self.label, alpha=self.alpha,
                    mean_ensemble_top1={f'{alpha:g}': score
                                        for alpha, score in self.scores.items()})


def choose_alpha(per_seed: Dict[float, Sequence[float]], on: str) -> AlphaChoice:
    """The alpha whose ensemble top-1, averaged over the seeds, is highest on ``on``.

    A tie goes to the smallest alpha: the choice moves away from alpha 0 (the
    cross-entropy-only sequence) only on a higher score.

    Args:
        per_seed (dict): Each alpha's ensemble top-1 per seed, in %, on the
            split chosen on.
        on (str): ``'val'`` or ``'test'``.

    Returns:
        AlphaChoice: The chosen alpha and every alpha's mean.
    """
    if on not in CHOICE_LABELS:
        raise UserError(f'--select-on takes val or test, not {on!r}')
    scores = {alpha: statistics.mean(values) for alpha, values in per_seed.items()}
    best = max(scores.values())
    return AlphaChoice(on, min(alpha for alpha, score in scores.items() if score == best),
                       scores)


def validation_ensembles(last: Dict[float, Sequence]) -> Dict[float, list]:
    """Each alpha's validation ensemble top-1 per seed, from its sequences' last results.

    Raises:
        UserError: The stages were trained without a validation split.
    """
    if any(result.validation is None for results in last.values() for result in results):
        raise UserError('--select-on val needs a validation split: add --val-split 0.2 (or a '
                        'number of images per class, or official for FGVC-Aircraft)')
    return {alpha: [result.validation.ensemble_top1 for result in results]
            for alpha, results in last.items()}
