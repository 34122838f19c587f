"""The HTML page of ``kt report``, drawn from :class:`~ktcli.reports.report_figures.Report`."""
import statistics
from typing import List, Optional, Sequence

from .html_page import Markup, SortedCell, escape, image, join, page, section, table, tag
from .report_figures import Report


def interval(value: Optional[float], bounds: Optional[Sequence[float]]) -> Markup:
    """``75.46 [72.50, 78.38]``."""
    if value is None:
        return escape('—')
    text = f'{value:.2f}'
    return escape(f'{text} [{bounds[0]:.2f}, {bounds[1]:.2f}]' if bounds else text)


def difference(comparison: Optional[dict]) -> Markup:
    """A paired difference (a comparison's dict): ``+1.25 [−0.50, +3.00], p 0.21, not
    resolved`` (with the sign count over several seeds)."""
    from ..scoring.comparison_text import p_text
    if not comparison:
        return escape('—')
    parts = [f'{comparison["difference"]:+.2f} [{comparison["ci_low"]:+.2f}, '
             f'{comparison["ci_high"]:+.2f}]', p_text(comparison['p_value'])]
    if len(comparison.get('per_seed') or []) > 1:
        parts.append(comparison['sign_count'])
    resolved = comparison['verdict'] != 'not resolved'
    return join([', '.join(parts) + ', ', tag('b' if resolved else 'span',
                                               comparison['verdict'])])


def _minutes(seconds: Optional[float]) -> str:
    if seconds is None:
        return '—'
    minutes, rest = divmod(round(seconds), 60)
    return f'{minutes}:{rest:02d}'


def _figure(png: Optional[bytes], alt: str, caption: str = '') -> Markup:
    if not png:
        return Markup('')
    return tag('figure', join([image(png, alt), tag('figcaption', caption) if caption else '']))


def run_section(figures: dict) -> Markup:
    """Section 1: the run."""
    run = figures['run']
    facts = [
        ('dataset', f'{run["dataset"]} ({run["classes"]} classes, {run["test_images"]} test '
                    'images)'),
        ('backbones', ', '.join(f'{i}: {b}' for i, b in enumerate(run['backbones'], 1))),
        ('OR-loss', f'alpha {run["alpha"]} ({run["weighting"]})'),
        ('schedule', f'{run["epochs"]} epochs, lr {run["lr"]}, batch {run["batch_size"]}, '
                     f'{run["img_size"]} px'),
        ('backbone options', f'pretrained {run["pretrained"]}, frozen stages '
                             f'{run["frozen_stages"]}, output stride {run["output_stride"]}'),
        ('seeds', ', '.join(map(str, run['seeds'])) or '—'),
        ('selection', f'validation split {run.get("val_split", "none")}, checkpoint: '
                      f'{run.get("checkpoint", "last epoch")}'),
        ('trained', f'{run["first_record"]} … {run["last_record"]} '
                    f'({run["stages_in_work_dir"]} stages in the work dir)'),
        ('work dir', figures['work_dir']),
        ('data root', run['data_root']),
        ('stage dirs', ', '.join(run['stage_dirs'])),
        ('report', f'kt {figures["kt_version"]}, {figures["generated"]["at"]} on '
                   f'{figures["generated"]["host"]}, {figures["generated"]["seconds"]:.1f} s'),
    ]
    return section('run', '1. The run', tag('dl', join(
        join([tag('dt', name), tag('dd', value)]) for name, value in facts), class_='facts'))


def sequence_section(figures: dict) -> Markup:
    """Section 2: the sequence, its students and exports."""
    sequence = figures['sequence']
    rows = [[s['index'], s['backbone'], interval(s['top1'], s['top1_ci']),
             interval(s['ensemble_top1'], s['ensemble_top1_ci']),
             difference(s['ensemble_vs_stage_1']),
             '—' if s['or_overlap'] is None else f'{s["or_overlap"]:.4f}',
             s['disagreement'], s['oracle_top1'], _minutes(s['train_seconds'])]
            for s in sequence['stages']]
    columns = ['stage', 'backbone', 'top-1 [95% CI]', 'ensemble 1..k top-1 [95% CI]',
               'Δ ensemble 1..k − stage 1', 'OR overlap with earlier',
               'disagreement with earlier (%)', 'oracle top-1 1..k', 'training time']
    held_out = ''
    checkpoint = figures['run'].get('checkpoint', 'last epoch')
    chosen = '' if checkpoint == 'last epoch' else f' Each model: its {checkpoint}.'
    if sequence.get('validation_images'):
        columns[2:2] = ['val top-1', 'val ensemble 1..k top-1']
        for row, stage in zip(rows, sequence['stages']):
            row[2:2] = [stage['val_top1'], stage['val_ensemble_top1']]
        held_out = (f' Validation: {sequence["validation_images"]} images held out of the '
                    'training split (--val-split), never the test split.')
    parts = [table(columns, rows, caption=f'{sequence["images"]} test images, averaged-softmax '
                   'ensemble. Intervals: 95% bootstrap over test images; Δ: paired '
                   'bootstrap interval and McNemar\'s exact p. Oracle: share of images at '
                   f'least one member gets right.{held_out}{chosen}', id='stages')]
    best = sequence['ensemble_vs_best_member']
    if best:
        parts.append(tag('p', join(['The ensemble of all stages against its best member '
                                    f'({best["second"]}): ', difference(best), '. ',
                                    sequence['resolution'][:1].upper(),
                                    sequence['resolution'][1:], '.'])))
    parts += [students_table(sequence['students']), exports_table(sequence['exports'])]
    return section('sequence', '2. The sequence', *parts)


def students_table(students: List[dict]) -> Markup:
    if not students:
        return Markup('')
    rows = [[s['digest'], s['backbone'], ','.join(map(str, s['stages'])), s['top1'],
             s['members_ensemble_top1'], difference(s.get('against_ensemble'))]
            for s in students]
    return join([tag('h3', 'Distilled students (kt distill)'), table(
        ['student', 'backbone', 'of stages', 'top-1', "members' ensemble top-1",
         'Δ student − ensemble'], rows)])


def exports_table(records: List[dict]) -> Markup:
    if not records:
        return Markup('')
    rows = []
    for record in records:
        check = record['accuracy_check'] or {}
        rows.append([record['file'], record['format'], record['dtype'],
                     ','.join(map(str, record['stages'])) or 'student',
                     f'{record["bytes"] / 2 ** 20:.1f} MiB',
                     check.get('fp32_top1'), check.get('top1'),
                     None if 'agreement' not in check else f'{check["agreement"]:.2f}%'])
    return join([tag('h3', 'Exports (kt export)'), table(
        ['file', 'format', 'dtype', 'stages', 'size', 'fp32 top-1', 'its top-1',
         'top-1 agreement with fp32'], rows, caption='fp32 files reproduce the PyTorch '
        'ensemble to 1e-4 (checked when written); int8/fp16 figures are those of their '
        'accuracy check on the test split, stored in the file.')])


def _cell(value) -> Markup:
    """An ablation cell: an estimate, a comparison, per-seed values or a number."""
    if isinstance(value, dict) and 'difference' in value:
        return difference(value)
    if isinstance(value, dict) and 'top1' in value:
        return interval(value['top1'], [value['ci_low'], value['ci_high']])
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        mean = statistics.mean(value)
        return escape(f'{mean:.2f} ± {statistics.stdev(value):.2f}' if len(value) > 1
                      else f'{mean:.2f}')
    return escape('—' if value is None else value)


def ablation_section(report: Report) -> Markup:
    """Section 3: Table 2 (alpha) and Table 3 (N) with their Δ rows and plots."""
    ablations = report.figures['ablations']
    parts = []
    if 'alpha' in ablations:
        data = ablations['alpha']
        alphas = data.get('alphas', [])
        figures = {float(key): value for key, value in data.get('figures', {}).items()}
        names = [('ensemble', 'Ensemble top-1'),
                 ('ensemble_vs_alpha_0', 'Δ Ensemble (alpha − 0)'),
                 ('last_single', f'Model {data.get("n")} top-1'),
                 ('or_overlap', f'Model {data.get("n")} OR overlap')]
        rows = [[label, *[_cell(figures.get(float(a), {}).get(key)) for a in alphas]]
                for key, label in names]
        parts += [tag('h3', f'Table 2: ensemble of {data.get("n")} vs alpha (seeds '
                  f'{", ".join(map(str, data.get("seeds", [])))})'),
                  tag('div', table(['alpha', *[f'{a:g}' for a in alphas]], rows,
                                   caption=data.get('resolution')), class_='scroll'),
                  _figure(report.images.get('ablate_alpha'), 'Table 2 plot')]
    if 'n' in ablations:
        data = ablations['n']
        rows = {**data.get('rows', {}), **data.get('differences', {})}
        width = max((len(cells) for cells in rows.values()), default=0)
        parts += [tag('h3', f'Table 3: Base vs Ours vs N (alpha {data.get("alpha")}, seeds '
                  f'{", ".join(map(str, data.get("seeds", [])))})'),
                  tag('div', table(['N', *map(str, range(1, width + 1))],
                                   [[label, *map(_cell, cells)] for label, cells in rows.items()],
                                   caption=data.get('resolution')), class_='scroll'),
                  _figure(report.images.get('ablate_n'), 'Table 3 plot')]
    return section('ablations', '3. Ablations', *parts) if parts else Markup('')


def curves_section(report: Report) -> Markup:
    """Section 4: training curves."""
    if 'curves' not in report.images:
        return Markup('')
    return section('curves', '4. Training curves', tag(
        'p', "mmengine's training scalars of every stage, per iteration (every session of a "
        'resumed stage): cross-entropy, OR-loss (alpha-weighted), learning rate.',
        class_='note'), _figure(report.images['curves'], 'training curves'))


def gallery_section(report: Report) -> Markup:
    """Section 5: the gallery."""
    gallery = report.figures['gallery']
    items = []
    for record, strip in zip(gallery['images'], report.strips):
        verdicts = [join([f'{m["stage"]}: ', tag('span', f'{"✓" if m["right"] else "✗"} '
                         f'{m["predicted"]} ({100 * m["probability"]:.0f}%)',
                         class_='right' if m['right'] else 'wrong')])
                    for m in record['members']]
        if record['ensemble']:
            e = record['ensemble']
            verdicts.append(join(['ensemble: ', tag('span', f'{"✓" if e["right"] else "✗"} '
                                  f'{e["predicted"]} ({100 * e["probability"]:.0f}%)',
                                  class_='right' if e['right'] else 'wrong')]))
        caption = join([tag('b', record['file']), f' ({record["kind"]}). True class: ',
                        tag('b', record['true'], class_='true-label'), '. ',
                        join(verdicts, '; '), '.'])
        items.append(tag('figure', join([image(strip, f'{record["file"]}: {record["true"]}',
                                               'image/jpeg'),
                                         tag('figcaption', caption)]),
                         data_true=record['true'], data_kind=record['kind']))
    return section('gallery', f'5. Gallery ({len(items)} test images)',
                   tag('p', join(['How they were chosen: ', gallery['rule'], ' Each row: the '
                                  'image as the models see it, then per stage its attention '
                                  'map (what the OR-loss acts on) and its Grad-CAM, framed '
                                  'green where that stage is right, red where it is wrong.']),
                       class_='note'),
                   tag('div', join(items), class_='gallery'))


def per_class_section(report: Report) -> Markup:
    """Section 6: per-class accuracy, gains and losses, confusions."""
    per_class = report.figures['per_class']
    models = list(per_class['classes'][0]['accuracy']) if per_class['classes'] else []
    first = per_class['compared_with']
    rows = []
    for row in per_class['classes']:
        accuracy = row['accuracy']
        change = None if accuracy[first] is None else accuracy['ensemble'] - accuracy[first]
        rows.append([row['name'], row['images'],
                     *[SortedCell('—' if accuracy[m] is None else f'{accuracy[m]:.1f}',
                                  accuracy[m]) for m in models],
                     SortedCell('—' if change is None else f'{change:+.1f}', change)])
    headers = ['class', 'test images', *models, f'ensemble − {first}']
    changes = [[c['name'], c['images'], f'{c["accuracy"][first]:.1f}',
                f'{c["accuracy"]["ensemble"]:.1f}', f'{c["change"]:+.1f}']
               for c in per_class['gains'] + per_class['losses']]
    confused = [[c['true'], c['predicted'], c['count'], f'{c["share"]:.1f}%']
                for c in per_class['confused']]
    parts = [tag('p', 'Click a header to sort.', class_='note'),
             tag('div', table(headers, rows, sortable=True, id='per-class-accuracy'),
                 class_='scroll'),
             tag('h3', f'Classes the ensemble gains and loses most against {first}'),
             table(['class', 'test images', first, 'ensemble', 'change (points)'], changes)
             if changes else tag('p', 'No class changes.'),
             tag('h3', 'Most-confused pairs (ensemble)'),
             table(['true class', 'predicted as', 'images', 'share of the true class'],
                   confused) if confused else tag('p', 'No errors.'),
             _figure(report.images.get('confusion'), 'confusion matrix')]
    return section('per-class', '6. Per class', *parts)


def calibration_section(report: Report) -> Markup:
    """Section 7: ECE, NLL and the reliability diagram."""
    rows = [[model['name'], f'{model["ece"]:.4f}', f'{model["nll"]:.4f}']
            for model in report.figures['calibration']]
    return section('calibration', '7. Calibration', table(
        ['model', 'ECE (15 bins)', 'NLL (nats)'], rows, caption='ECE: torchmetrics\' top-label '
        'calibration error (L1); NLL: mean −log p(true class). Lower is better.'),
        _figure(report.images.get('reliability'), 'reliability diagram'))


def render(report: Report) -> str:
    """The whole page."""
    figures = report.figures
    parts = [('run', 'Run', run_section(figures)),
             ('sequence', 'Sequence', sequence_section(figures)),
             ('ablations', 'Ablations', ablation_section(report)),
             ('curves', 'Curves', curves_section(report)),
             ('gallery', 'Gallery', gallery_section(report)),
             ('per-class', 'Per class', per_class_section(report)),
             ('calibration', 'Calibration', calibration_section(report))]
    run = figures['run']
    return page(f'kt report: {figures["work_dir"]}',
                f'{run["dataset"]}, {len(run["backbones"])} stages '
                f'({", ".join(sorted(set(run["backbones"])))}), alpha {run["alpha"]}',
                [part for part in parts if part[2]])
