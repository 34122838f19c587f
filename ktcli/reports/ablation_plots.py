"""PNG plots of the ablation tables, drawn from the figure data their JSON keeps.

A figure is described by plain data (what ``ablate_n.json`` and ``ablate_alpha.json`` store
under ``figure``): the x values and, per panel, curves with a value and a 95% interval per
x. :func:`curve` builds one curve from :class:`~ktcli.scoring.paired_statistics` results,
:func:`draw_figure` draws the data, :func:`plot_figure` writes it as a PNG.
"""
import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ktbase.writing import write_atomically

from .plots import pyplot

plt = pyplot()
from matplotlib.transforms import offset_copy  # noqa: E402

_DODGE_POINTS = 4


def curve(estimates: Sequence, value: str = 'top1') -> Dict[str, List[Optional[float]]]:
    """One curve: ``y``, ``low`` and ``high`` per x from estimates or comparisons (their
    ``value`` attribute, ``ci_low`` and ``ci_high``; None where a point is missing)."""
    def pick(name):
        return [None if e is None else getattr(e, name) for e in estimates]
    return dict(y=pick(value), low=pick('ci_low'), high=pick('ci_high'))


def draw_figure(figure_data: dict):
    """Draw figure data into a matplotlib figure (one axes per panel).

    Args:
        figure_data (dict): ``x``, ``xlabel``, ``title``, ``symlog`` and
            ``panels``: each with ``ylabel``, ``zero_line`` and ``curves``
            (label -> :func:`curve`).

    Returns:
        matplotlib.figure.Figure: The figure; each curve is one errorbar
        container whose bars span its intervals.
    """
    x = figure_data['x']
    panels = figure_data['panels']
    figure, axes_list = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), dpi=120,
                                     squeeze=False)
    for axes, panel in zip(axes_list[0], panels):
        curves = panel['curves']
        for number, (label, data) in enumerate(curves.items()):
            points = [(xi, y, lo, hi) for xi, y, lo, hi in zip(x, data['y'], data['low'],
                                                               data['high']) if y is not None]
            if not points:
                continue
            xs, ys, lows, highs = zip(*points)
            # Curves side by side by a few points, so that their bars do not hide each other.
            shift = offset_copy(axes.transData, fig=figure, units='points',
                                x=_DODGE_POINTS * (number - (len(curves) - 1) / 2))
            axes.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, lows)],
                                        [hi - y for y, hi in zip(ys, highs)]],
                          marker='o', capsize=3, label=label, transform=shift)
            # An offset transform keeps the bars out of the data limits: add them.
            axes.update_datalim(list(zip(xs + xs, lows + highs)))
        axes.autoscale_view()
        if panel.get('zero_line'):
            axes.axhline(0, color='grey', linewidth=0.8)
        if figure_data.get('symlog'):
            positive = [value for value in x if value > 0]
            axes.set_xscale('symlog', linthresh=min(positive) if positive else 1.0)
        axes.set_xticks(list(x))
        axes.set_xticklabels([f'{value:g}' for value in x])
        axes.set_xlabel(figure_data['xlabel'])
        axes.set_ylabel(panel['ylabel'])
        axes.grid(alpha=0.3)
        axes.legend(fontsize='small')
    figure.suptitle(figure_data['title'])
    figure.tight_layout()
    return figure


def plot_figure(path: Path, figure_data: dict) -> None:
    """Write :func:`draw_figure` of ``figure_data`` to the PNG ``path``."""
    figure = draw_figure(figure_data)
    picture = io.BytesIO()
    figure.savefig(picture, format='png')
    plt.close(figure)
    write_atomically(path, picture.getvalue())
