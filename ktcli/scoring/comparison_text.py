"""A paired comparison in words, for a table cell or a caption: the difference, its
interval, p and verdict, and what a test split can resolve at all."""
from typing import Sequence

import numpy as np


def p_text(p_value: float) -> str:
    """``'p 0.021'``, or ``'p < 0.001'``."""
    return 'p < 0.001' if p_value < 0.001 else f'p {p_value:.3f}'


def comparison_text(comparison, cell: bool = False) -> str:
    """A comparison in words: difference, interval, p, (sign count,) verdict.

    Args:
        comparison (PairedComparison | ReplicateComparison): The comparison.
        cell (bool): One part per line, for a table cell. Defaults to False.

    Returns:
        str: E.g. ``'+1.53 [+0.41, +2.66], p 0.008, Ours ahead'``.
    """
    interval = f'[{comparison.ci_low:+.2f}, {comparison.ci_high:+.2f}]'
    parts = [f'{comparison.difference:+.2f}', interval] if cell else [
        f'{comparison.difference:+.2f} {interval}']
    parts.append(p_text(comparison.p_value))
    if getattr(comparison, 'seeds', 1) > 1:
        parts.append(comparison.sign_count)
    return ('\n' if cell else ', ').join(parts + [comparison.verdict])


def resolution(comparisons: Sequence, images: int, seeds: int = 1) -> str:
    """What a table's comparisons can resolve, said before their means are read.

    Args:
        comparisons (Sequence): Its :class:`PairedComparison` or
            :class:`ReplicateComparison` objects.
        images (int): Test images.
        seeds (int): Replicates. Defaults to 1.

    Returns:
        str: E.g. ``'on 800 test images, 3 seeds: resolves differences of about
        ±1.2 points (95% half-widths 0.9-1.4); a smaller difference is not
        resolved'`` ('' without comparisons).
    """
    # No test split resolves less than one image: when every pair agrees (a tiny split, or
    # identical models) the bootstrap's half-width is 0, which is no resolution at all.
    widths = sorted(max(c.half_width, 100 / images) for c in comparisons)
    if not widths:
        return ''
    low, high = f'{widths[0]:.1f}', f'{widths[-1]:.1f}'
    level = round(100 * comparisons[0].confidence)
    spread = f' ({level}% half-widths {low}-{high})' if low != high else ''
    replicates = f', {seeds} seeds' if seeds > 1 else ''
    return (f'on {images} test images{replicates}: resolves differences of about '
            f'±{float(np.median(widths)):.1f} points{spread}; a smaller difference is not '
            'resolved')
