"""PNG plots of the ablation tables."""
from pathlib import Path
from typing import Dict, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(path: Path, x: Sequence[float], curves: Dict[str, Sequence[float]],
                errors: Dict[str, Sequence[float]], xlabel: str, title: str,
                symlog: bool = False) -> None:
    """Plot top-1 curves (with error bars where given) against ``x`` into ``path``.

    Args:
        path (Path): The PNG to write.
        x (Sequence[float]): The x values.
        curves (dict): Label -> top-1 per x.
        errors (dict): Label -> standard deviation per x (may be empty).
        xlabel (str): The x axis label.
        title (str): The plot title.
        symlog (bool): Log-scale the x axis, linear near 0 (for alpha values
            including 0). Defaults to False.
    """
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    for label, values in curves.items():
        axes.errorbar(x, values, yerr=errors.get(label), marker='o', capsize=3, label=label)
    if symlog:
        positive = [value for value in x if value > 0]
        axes.set_xscale('symlog', linthresh=min(positive) if positive else 1.0)
    axes.set_xticks(list(x))
    axes.set_xticklabels([f'{value:g}' for value in x])
    axes.set_xlabel(xlabel)
    axes.set_ylabel('top-1 (%)')
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
