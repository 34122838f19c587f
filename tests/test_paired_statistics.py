"""Paired statistics (ktcli/scoring/paired_statistics.py) on constructed prediction vectors,
against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from ktcli.scoring.ensemble_figures import error_structure, topk_accuracy
from ktcli.scoring.comparison_text import comparison_text, resolution
from ktcli.scoring.paired_statistics import (NOT_RESOLVED, bootstrap_means, compare_paired,
                                             compare_replicates, estimate_accuracy,
                                             mcnemar_exact_p, percent, verdict)


def pair(both: int, first_only: int, second_only: int, neither: int) -> tuple:
    """Correctness vectors of two sets with these counts of (right, right), (right, wrong),
    (wrong, right) and (wrong, wrong) images, shuffled."""
    first = [1] * both + [1] * first_only + [0] * second_only + [0] * neither
    second = [1] * both + [0] * first_only + [1] * second_only + [0] * neither
    order = np.random.default_rng(7).permutation(len(first))
    return np.array(first, bool)[order], np.array(second, bool)[order]


def test_a_constructed_difference_lies_inside_its_interval():
    first, second = pair(both=700, first_only=60, second_only=30, neither=210)
    comparison = compare_paired(first, second)
    assert (comparison.images, comparison.first_correct, comparison.second_correct) == (
        1000, 760, 730)
    assert (comparison.first_only, comparison.second_only) == (60, 30)
    assert comparison.difference == 3.0 and comparison.first_top1 == 76.0
    assert comparison.ci_low < 3.0 < comparison.ci_high
    # Normal approximation: 1.96 * sqrt((b + c)/n - ((b - c)/n)^2 / n) = 1.96 * 0.297 points.
    assert comparison.half_width == pytest.approx(1.96 * 100 * math.sqrt(0.09 - 0.03 ** 2)
                                                  / math.sqrt(1000), rel=0.06)
    assert comparison.verdict == 'Ours ahead' and comparison.p_value < 0.01


def test_images_drawn_with_a_known_true_difference_fall_inside_its_interval():
    # Each image: first only right with probability 0.10, second only with 0.07: 3 points.
    draws = np.random.default_rng(3).choice(4, size=3000, p=[0.70, 0.10, 0.07, 0.13])
    comparison = compare_paired(np.isin(draws, (0, 1)), np.isin(draws, (0, 2)))
    assert comparison.ci_low < 3.0 < comparison.ci_high


def test_identical_predictions_give_a_zero_interval_and_p_one():
    correct = np.random.default_rng(0).random(500) < 0.8
    comparison = compare_paired(correct, correct.copy())
    assert (comparison.difference, comparison.ci_low, comparison.ci_high) == (0.0, 0.0, 0.0)
    assert comparison.p_value == 1.0 and comparison.verdict == NOT_RESOLVED
    replicates = compare_replicates(np.stack([correct, ~correct]), np.stack([correct, ~correct]))
    assert (replicates.ci_low, replicates.ci_high, replicates.p_value) == (0.0, 0.0, 1.0)


def test_the_same_seed_gives_the_same_interval():
    first, second = pair(both=300, first_only=25, second_only=15, neither=60)
    a, b = compare_paired(first, second), compare_paired(first, second)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    other = compare_paired(first, second, seed=1)
    assert (other.ci_low, other.ci_high) != (a.ci_low, a.ci_high)


def test_four_times_the_images_halve_the_interval():
    small = compare_paired(*pair(both=380, first_only=40, second_only=20, neither=60))
    large = compare_paired(*pair(both=1520, first_only=160, second_only=80, neither=240))
    # Half-width 1.96 * sqrt(0.12 - 0.04^2) / sqrt(n): 3.02 points at n = 500, 1.51 at 2,000.
    assert small.half_width == pytest.approx(3.02, rel=0.06)
    assert large.half_width == pytest.approx(1.51, rel=0.06)
    assert small.half_width / large.half_width == pytest.approx(2.0, rel=0.1)


def test_mcnemar_exact_p_of_nine_against_one():
    # Two-sided: 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 2 * 11 / 1024.
    assert mcnemar_exact_p(9, 1) == 0.021484375
    first, second = pair(both=50, first_only=9, second_only=1, neither=40)
    assert compare_paired(first, second).p_value == 0.021484375
    assert mcnemar_exact_p(0, 0) == 1.0


def test_two_level_bootstrap_without_image_variation_is_the_bootstrap_over_seeds():
    # Ten seeds; in four the first set is right and the second wrong on every image, in six
    # the two agree everywhere: per-seed differences 100 or 0 points, no image variation.
    images = 50
    first = np.array([[True] * images] * 4 + [[True] * images] * 6)
    second = np.array([[False] * images] * 4 + [[True] * images] * 6)
    comparison = compare_replicates(first, second)
    assert comparison.difference == 40.0
    # The mean of ten seeds drawn with replacement is Binomial(10, 0.4) / 10: its 2.5% and
    # 97.5% quantiles are 1 and 7 (P(X <= 0) = 0.006, P(X <= 1) = 0.046, P(X <= 6) = 0.945,
    # P(X <= 7) = 0.988), so the interval is [10, 70] points.
    assert (comparison.ci_low, comparison.ci_high) == (10.0, 70.0)
    assert comparison.sign_count == 'Ours ahead in 4 of 10 seeds'


def test_replicates_report_the_mean_difference_sign_count_and_verdict():
    # 1,000 images per seed; the first set ahead by 30, 40 and 50 of them.
    seeds = [pair(both=600, first_only=first_only, second_only=20, neither=380 - first_only)
             for first_only in (50, 60, 70)]
    comparison = compare_replicates([s[0] for s in seeds], [s[1] for s in seeds])
    assert [c.difference for c in comparison.per_seed] == [3.0, 4.0, 5.0]
    assert comparison.difference == 4.0
    assert comparison.ci_low < 4.0 < comparison.ci_high
    assert comparison.sign_count == 'Ours ahead in 3 of 3 seeds'
    assert comparison.verdict == 'Ours ahead' and comparison.p_value < 0.01
    text = comparison_text(comparison)
    assert text.startswith('+4.00 [') and text.endswith('Ours ahead in 3 of 3 seeds, Ours ahead')
    record = comparison.to_dict()
    assert record['per_seed'][0]['first_only'] == 50 and record['verdict'] == 'Ours ahead'
    # One seed: the image-level interval and McNemar's p.
    one = compare_replicates(seeds[0][0], seeds[0][1])
    single = compare_paired(*seeds[0])
    assert (one.ci_low, one.ci_high, one.p_value) == (single.ci_low, single.ci_high,
                                                        single.p_value)


def test_the_verdict_names_the_side_ahead():
    assert verdict(0.1, 2.0) == 'Ours ahead'
    assert verdict(-2.0, -0.1, 'int8', 'fp32') == 'fp32 ahead'
    assert verdict(0.5, 1.0, 'ensemble', 'stage 2') == 'ensemble ahead'
    assert verdict(-1.0, 1.0) == verdict(0.0, 1.0) == NOT_RESOLVED


def test_accuracies_come_exactly_from_counts():
    assert percent(68, 800) == 8.5
    labels = torch.arange(800) % 20
    logits = torch.nn.functional.one_hot((labels + (torch.arange(800) >= 68)) % 20, 20).float()
    assert topk_accuracy(logits, labels) == 8.5  # float32 made it 8.500000089406967
    estimate = estimate_accuracy(np.stack([np.arange(800) < 68, np.arange(800) < 70]))
    assert estimate.correct == (68, 70) and estimate.top1 == 8.625
    assert estimate.per_seed == (8.5, 8.75)
    assert estimate.ci_low < 8.625 < estimate.ci_high


def test_resampling_patterns_equals_the_mean_and_stays_seeded():
    values = np.array([[1, 0, 1, 1], [0, 0, 1, 0]])
    means = bootstrap_means(values, resamples=4000)
    assert means.shape == (4000,) and np.all((means >= 0) & (means <= 1))
    assert means.mean() == pytest.approx(values.mean(), abs=0.02)
    assert np.array_equal(means, bootstrap_means(values, resamples=4000))


def test_resolution_says_what_a_table_can_resolve():
    comparisons = [compare_paired(*pair(both=380, first_only=40, second_only=20, neither=60)),
                   compare_paired(*pair(both=1520, first_only=160, second_only=80, neither=240))]
    text = resolution(comparisons, 500, seeds=3)
    assert text.startswith('on 500 test images, 3 seeds: resolves differences of about ±')
    assert '(95% half-widths 1.5-3.0)' in text


def test_a_split_where_every_pair_agrees_resolves_no_less_than_one_image():
    identical = compare_paired(*pair(both=6, first_only=0, second_only=0, neither=3))
    assert identical.half_width == 0
    assert resolution([identical], 9).startswith(
        'on 9 test images: resolves differences of about ±11.1 points;')


def test_error_structure_of_three_members():
    # Ten images of class 0; a wrong member predicts class 1. A is wrong on images 0, 1;
    # B on 1, 2; C on 0-3. All three are wrong only on image 1: oracle 9 of 10.
    labels = torch.zeros(10, dtype=torch.long)
    wrong = {1: [0, 1], 2: [1, 2], 3: [0, 1, 2, 3]}
    members = []
    for stage, images in wrong.items():
        predictions = torch.zeros(10, dtype=torch.long)
        predictions[images] = 1
        members.append(dict(logits=torch.nn.functional.one_hot(predictions, 2).float(),
                            labels=labels, attention=torch.ones(10, 2, 2)))
    structure = error_structure(members, [1, 2, 3])
    assert (structure.oracle_correct, structure.oracle_top1) == (9, 90.0)
    by_pair = {tuple(p['stages']): p for p in structure.pairs}
    # A and B differ where exactly one is wrong (images 0 and 2).
    assert by_pair[1, 2]['disagreement'] == 20.0
    # Errors of A and B: means 0.2, E[eA eB] = 0.1: (0.1 - 0.04) / 0.16 = 0.375.
    assert by_pair[1, 2]['error_correlation'] == pytest.approx(0.375)
    # A and C: E[eA eC] = 0.2, C's mean 0.4: (0.2 - 0.08) / sqrt(0.16 * 0.24).
    assert by_pair[1, 3]['error_correlation'] == pytest.approx(0.12 / math.sqrt(0.16 * 0.24))


def test_the_benchmark_times_one_seed_and_several(capsys):
    import importlib.util

    from .conftest import REPO
    spec = importlib.util.spec_from_file_location('benchmark_statistics',
                                                  REPO / 'tools' / 'benchmark_statistics.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(['--images', '200', '--resamples', '500', '--seeds', '2'])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(':')[0] for line in lines] == ['one seed', '2 seeds']
    assert all('200 images x 500 resamples in' in line for line in lines)
