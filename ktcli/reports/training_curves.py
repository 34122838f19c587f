"""Training curves of a work dir's stages, from mmengine's ``vis_data/scalars.json``.

mmengine's LocalVisBackend writes one JSON object per logged step into
``stages/<digest>/<timestamp>/vis_data/scalars.json``; a resumed stage has one such folder
per session. Training lines carry ``step`` (the global iteration), ``epoch``, ``lr``,
``loss`` and the classifier's losses (``loss_ce``, ``loss_or``, ``loss_kd``, ...).
Validation lines (a stage trained with ``--val-split``) carry ``accuracy/top1`` and, as
``step``, the epoch: they are drawn per epoch as :data:`VALIDATION_CURVE`.
"""
import json
from pathlib import Path
from typing import Dict, List, Sequence

SCALARS = 'vis_data/scalars.json'
# Curves drawn when a stage logged them, in this order; any other key with 'overlap' in its
# name (a teacher overlap) is drawn too.
VALIDATION_CURVE = 'validation top-1'
# The same curve of a stage whose val loop scored the test split (--checkpoint best-test).
TEST_CURVE = 'test top-1 (selected on the test set)'
CURVES = (VALIDATION_CURVE, TEST_CURVE, 'loss_ce', 'loss_or', 'loss_kd', 'loss_at', 'lr')
EPOCH_CURVES = (VALIDATION_CURVE, TEST_CURVE)
# mmengine's name of the top-1 its val loop logs.
_VALIDATION_METRIC = 'accuracy/top1'
# Scalar files larger than this are not read (a stage logs a few kB per epoch).
MAX_BYTES = 64 * 2 ** 20


def stage_scalars(stage_dir: Path) -> Dict[str, List[tuple]]:
    """The training scalars of one stage, every session merged: name -> [(step, value)]
    (:data:`VALIDATION_CURVE`: [(epoch, top-1)]).

    A step logged by several sessions (a resumed epoch) keeps the last session's value.
    Files that are links, too large, or lines that are not JSON objects are skipped.
    """
    steps: Dict[str, Dict[int, float]] = {}
    for path in sorted(Path(stage_dir).glob(f'*/{SCALARS}')):
        if path.is_symlink() or path.parent.is_symlink() or path.parent.parent.is_symlink() \
                or path.stat().st_size > MAX_BYTES:
            continue
        for line in path.read_text(errors='replace').splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get('step'), int):
                continue
            if 'epoch' not in record:
                if isinstance(record.get(_VALIDATION_METRIC), (int, float)):
                    steps.setdefault(VALIDATION_CURVE, {})[record['step']] = float(
                        record[_VALIDATION_METRIC])
                continue
            for name, value in record.items():
                if name in ('step', 'epoch', 'iter') or not isinstance(value, (int, float)):
                    continue
                steps.setdefault(name, {})[record['step']] = float(value)
    return {name: sorted(values.items()) for name, values in steps.items()}


def val_loop_curve(scalars: Dict[str, List[tuple]], scored_split: str) -> Dict[str, List[tuple]]:
    """``scalars`` with its per-epoch top-1 named after the split the val loop scored:
    ``'test'`` renames it :data:`TEST_CURVE`."""
    if scored_split != 'test' or VALIDATION_CURVE not in scalars:
        return scalars
    renamed = dict(scalars)
    renamed[TEST_CURVE] = renamed.pop(VALIDATION_CURVE)
    return renamed


def curve_names(stages: Sequence[Dict[str, List[tuple]]]) -> List[str]:
    """The curves to draw for these stages' scalars, in :data:`CURVES` order."""
    logged = set().union(*stages) if stages else set()
    overlaps = sorted(name for name in logged if 'overlap' in name)
    return [name for name in CURVES if name in logged] + overlaps


def curves_image(stages: Dict[str, Dict[str, List[tuple]]]) -> bytes:
    """A PNG, one panel per curve, each stage (label -> scalars) drawn in it."""
    from .plots import figure_png, pyplot

    plt = pyplot()
    names = curve_names(list(stages.values()))
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), dpi=100,
                                squeeze=False)
    for panel, name in zip(axes.flat, names):
        for number, (label, scalars) in enumerate(stages.items()):
            if name in scalars:  # a stage keeps its colour in every panel
                steps, values = zip(*scalars[name])
                panel.plot(steps, values, label=label, linewidth=1.2, color=f'C{number % 10}',
                           marker='o' if len(steps) < 20 else None, markersize=3)
        panel.set_title(name)
        panel.set_xlabel('epoch' if name in EPOCH_CURVES else 'iteration')
        panel.grid(alpha=0.3)
        if name == 'lr':
            panel.ticklabel_format(axis='y', style='sci', scilimits=(-2, 2))
        panel.legend(fontsize=7)
    for panel in list(axes.flat)[len(names):]:
        panel.set_visible(False)
    return figure_png(figure)
