"""The JSON tables ``kt ablate`` writes, checked as ``kt report`` reads them from a work dir."""
import math
from typing import Any, Callable

from ..reading import shown
from ..received_values import integer, number, optional, short_string
from ..stages.records import RecordError


# The most of each thing an ablation's JSON may hold (kt ablate writes a few of each).
_ABLATION_LIMIT = 64


_PANELS_LIMIT = 8


def check_ablation(kind: str, data: Any, where: str) -> dict:
    """An ablation's JSON (``ablate_alpha.json`` for ``kind`` ``'alpha'``, ``ablate_n.json``
    for ``'n'``) as ``kt ablate`` writes it: every field ``kt report`` reads, of its type,
    within the sizes kt writes.

    Raises:
        RecordError: What is wrong, naming the field.
    """
    def require(ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise RecordError(f'{where}: {field} must be {expected}; rerun the kt ablate that '
                              'wrote it')

    require(isinstance(data, dict), 'the file', 'a JSON object')
    require(optional(short_string)(data.get('resolution')), 'resolution', 'a string or null')
    require(_list_of(data.get('seeds', []), integer(0)), 'seeds', 'a list of seeds')
    if kind == 'alpha':
        require(integer(1)(data.get('n', 1)), 'n', 'a number of models')
        require(_list_of(data.get('alphas', []), number), 'alphas', 'a list of numbers')
        figures = data.get('figures', {})
        require(isinstance(figures, dict) and len(figures) <= _ABLATION_LIMIT, 'figures',
                'an object of alphas')
        for key, cells in figures.items():
            require(_is_float(key) and isinstance(cells, dict)
                    and all(_is_cell(cell) for cell in cells.values()), f'figures.{shown(key)}',
                    'an object of estimates and comparisons')
    else:
        require(number(data.get('alpha', 0)), 'alpha', 'a number')
        for name in ('rows', 'differences'):
            rows = data.get(name, {})
            require(isinstance(rows, dict) and len(rows) <= _ABLATION_LIMIT, name,
                    'an object of rows')
            for label, cells in rows.items():
                require(short_string(label) and _list_of(cells, _is_cell), f'{name}.{shown(label)}',
                        'a list of estimates or comparisons')
    if 'figure' in data:
        require(_is_figure(data['figure']), 'figure', 'figure data (x, labels, at most '
                f'{_PANELS_LIMIT} panels of curves, one point per x)')
    return data


def _list_of(value: Any, test: Callable[[Any], bool]) -> bool:
    return isinstance(value, list) and len(value) <= _ABLATION_LIMIT and all(map(test, value))


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _is_cell(value: Any) -> bool:
    """An ablation table's cell: nothing, a number, per-seed numbers, an accuracy estimate
    (``top1`` and its interval) or a paired comparison (``difference``, interval, p, verdict)."""
    if value is None or number(value):
        return True
    if isinstance(value, list):
        return _list_of(value, number)
    if not isinstance(value, dict):
        return False
    if 'difference' in value:
        per_seed = value.get('per_seed') or []
        return (all(number(value.get(key)) for key in ('difference', 'ci_low', 'ci_high'))
                and number(value.get('p_value')) and short_string(value.get('verdict'))
                and isinstance(per_seed, list)
                and (len(per_seed) <= 1 or short_string(value.get('sign_count'))))
    return all(number(value.get(key)) for key in ('top1', 'ci_low', 'ci_high'))


def _is_figure(figure: Any) -> bool:
    """Figure data as :func:`~ktcli.reports.ablation_plots.draw_figure` draws it."""
    if not (isinstance(figure, dict) and _list_of(figure.get('x'), number)
            and short_string(figure.get('xlabel')) and short_string(figure.get('title'))
            and isinstance(figure.get('symlog', False), bool)):
        return False
    panels = figure.get('panels')
    return isinstance(panels, list) and 1 <= len(panels) <= _PANELS_LIMIT and all(
        isinstance(panel, dict) and short_string(panel.get('ylabel'))
        and isinstance(panel.get('zero_line', False), bool)
        and isinstance(panel.get('curves'), dict) and len(panel['curves']) <= 16
        and all(short_string(label) and _is_curve(curve, len(figure['x']))
                for label, curve in panel['curves'].items())
        for panel in panels)


def _is_curve(curve: Any, length: int) -> bool:
    """``y``, ``low`` and ``high`` per x: numbers, or None where the point is missing."""
    if not (isinstance(curve, dict) and all(isinstance(curve.get(key), list)
                                            and len(curve[key]) == length
                                            for key in ('y', 'low', 'high'))):
        return False
    return all(y is None or (number(y) and number(low) and number(high))
               for y, low, high in zip(curve['y'], curve['low'], curve['high']))
