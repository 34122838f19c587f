"""kt ablate n and kt ablate alpha on tiny demo data: stage counts, shared stages, and
independent stages trained side by side."""
import datetime
import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from .conftest import cached_outputs
from .kt_processes import forked_kt

LOG_TIME = re.compile(r'^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)', re.MULTILINE)
pytestmark = pytest.mark.usefixtures('kt_server')


def kt_ablate(kind: str, work_dir: Path, data_root: Path, *options: str):
    result = forked_kt('ablate', kind, '--dataset', 'demo', '--data-root', data_root,
                       '--backbone', 'resnet18_tiny', '--img-size', '32', '--epochs', '1',
                       '--batch-size', '8', '--work-dir', work_dir, *options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def finished_stages(work_dir: Path) -> list:
    stages = json.loads((work_dir / 'kt_manifest.json').read_text())['stages']
    return [digest for digest, record in stages.items() if record['status'] == 'done']


def log_span(stage_dir: Path) -> tuple:
    """The first and last timestamps of a stage's mmengine log."""
    [log] = stage_dir.glob('*/*.log')
    times = [datetime.datetime.strptime(stamp, '%Y/%m/%d %H:%M:%S')
             for stamp in LOG_TIME.findall(log.read_text())]
    return times[0], times[-1]


def weights(stage_dir: Path) -> dict:
    return torch.load(stage_dir / 'epoch_1.pth', weights_only=True)['state_dict']


def test_ablate_n_trains_2n_minus_1_stages_side_by_side(parallel_ablation, trained_work_dir):
    work_dir, result = parallel_ablation
    assert '5 distinct stages: 0 reused, 5 to train' in result.stdout
    assert '2 stages at a time: sharing 2 CPU cores' in result.stdout
    assert len(finished_stages(work_dir)) == 5
    manifest = json.loads((work_dir / 'kt_manifest.json').read_text())
    by_label = {record['label']: Path(work_dir / record['dir'])
                for record in manifest['stages'].values()}
    assert sorted(by_label) == ['1/3', '2/3', '3/3', 'Base 2/3', 'Base 3/3']
    # Stage 1 has the longest chain after it and goes first, beside Base 2.
    first, base = log_span(by_label['1/3']), log_span(by_label['Base 2/3'])
    assert first[0] <= base[1] and base[0] <= first[1], (first, base)
    # Same weights as the serial run of the same settings (1 thread instead of 2 changes
    # the last bits of float sums only).
    for index, label in ((1, '1/3'), (2, '2/3')):
        serial = weights(trained_work_dir / f'stage_{index}')
        parallel = weights(by_label[label])
        assert by_label[label].name == (trained_work_dir / f'stage_{index}').resolve().name
        assert max((serial[key].float() - parallel[key].float()).abs().max().item()
                   for key in serial) < 1e-5
    figures = json.loads((work_dir / 'ablate_n.json').read_text())
    rows = figures['rows']
    assert rows['Single (Ours)'][0] == rows['Single (Base)'][0]
    assert rows['Ensemble (Ours)'][0] == rows['Ensemble (Base)'][0]
    assert all(len(per_n) == 3 for per_n in rows.values())
    assert 'Ensemble (Ours)' in result.stdout
    assert (work_dir / 'ablate_n.png').read_bytes()[:4] == b'\x89PNG'
    check_paired_figures(figures, by_label, result.stdout)


def stage_correct(stage_dir: Path) -> torch.Tensor:
    """Which test images a stage classifies correctly, from its cached outputs."""
    outputs = cached_outputs(stage_dir / 'test_outputs.pt')
    return outputs['logits'].argmax(1) == outputs['labels']


def check_paired_figures(figures: dict, by_label: dict, stdout: str) -> None:
    """The Δ rows of a one-seed ablation: counts from the stages' cached test outputs, the
    table's verdict words, and the error bars the figure is drawn with."""
    from ktcli.reports.ablation_plots import draw_figure
    assert figures['images'] == 40
    ours_2, base_2 = stage_correct(by_label['2/3']), stage_correct(by_label['Base 2/3'])
    single = figures['differences']['Δ Single (Ours − Base)']
    assert single[0] is None  # N = 1: the same model
    counts = single[1]['per_seed'][0]
    assert (counts['first_correct'], counts['second_correct']) == (int(ours_2.sum()),
                                                                  int(base_2.sum()))
    assert (counts['first_only'], counts['second_only']) == (int((ours_2 & ~base_2).sum()),
                                                            int((~ours_2 & base_2).sum()))
    assert single[1]['difference'] == 100 * (int(ours_2.sum()) - int(base_2.sum())) / 40
    assert figures['rows']['Single (Ours)'][1]['correct'] == [int(ours_2.sum())]
    assert figures['rows']['Single (Ours)'][1]['top1'] == 100 * int(ours_2.sum()) / 40
    table = stdout[stdout.index('Δ Single (Ours − Base)'):]
    for label, per_n in figures['differences'].items():
        assert label in stdout
        for comparison in per_n[1:]:
            assert comparison['ci_low'] <= comparison['difference'] <= comparison['ci_high']
            assert comparison['verdict'] in ('Ours ahead', 'Base ahead', 'not resolved')
            assert comparison['verdict'] in table
    assert 'shared model 1' in table
    assert 'resolves differences of about ±' in ' '.join(stdout.split())
    # The figure's error bars span the intervals its JSON holds.
    figure = draw_figure(figures['figure'])
    accuracy_axes = figure.axes[0]
    for container, (label, curve) in zip(accuracy_axes.containers,
                                         figures['figure']['panels'][0]['curves'].items()):
        assert container.get_label() == label
        bars = container.lines[2][0].get_segments()
        assert [s[0][1] for s in bars] == pytest.approx(curve['low'])
        assert [s[1][1] for s in bars] == pytest.approx(curve['high'])
        assert all(low <= y <= high for y, low, high in zip(curve['y'], curve['low'],
                                                            curve['high']))
    assert any(high > low for curve in figures['figure']['panels'][0]['curves'].values()
               for low, high in zip(curve['low'], curve['high']))


def test_ablate_alpha_compares_with_alpha_0_and_keeps_the_train_sequence(tmp_path, demo_root,
                                                                        trained_work_dir):
    """In a copy of a `kt train` work dir (alpha 0.5, n 2): stage 1 is shared with every
    alpha and kt train's stage 2 with alpha 0.5 (only alpha 0's stage 2 trains), alpha 0.5's
    ensemble is compared with alpha 0's, and the sequence kt train made stays the one kt
    ensemble/export/predict use."""
    work_dir = tmp_path / 'work'
    subprocess.run(['cp', '-r', str(trained_work_dir), str(work_dir)], check=True)
    before = json.loads((work_dir / 'kt_manifest.json').read_text())
    train_results = (work_dir / 'results.json').read_text()
    links = {k: (work_dir / f'stage_{k}').readlink() for k in (1, 2)}

    result = kt_ablate('alpha', work_dir, demo_root, '--values', '0,0.5', '--n', '2')
    assert '3 distinct stages: 2 reused, 1 to train' in result.stdout
    assert len(finished_stages(work_dir)) == 3
    figures = json.loads((work_dir / 'ablate_alpha.json').read_text())['figures']
    assert set(figures) == {'0.0', '0.5'}
    assert figures['0.0']['ensemble_vs_alpha_0'] is None
    comparison = figures['0.5']['ensemble_vs_alpha_0']
    assert (comparison['first'], comparison['second']) == ('alpha 0.5', 'alpha 0')
    assert comparison['per_seed'][0]['first_correct'] == figures['0.5']['ensemble']['correct'][0]
    # The same stages as kt train's sequence, so the same figures.
    assert figures['0.5']['ensemble']['correct'][0] == \
        json.loads(train_results)['stages'][1]['ensemble_top1_correct']
    assert comparison['per_seed'][0]['second_correct'] == \
        figures['0.0']['ensemble']['correct'][0]
    assert comparison['verdict'] in ('alpha 0.5 ahead', 'alpha 0 ahead', 'not resolved')
    assert 'Δ Ensemble (alpha − 0)' in result.stdout and comparison['verdict'] in result.stdout
    assert (work_dir / 'ablate_alpha.png').read_bytes()[:4] == b'\x89PNG'

    after = json.loads((work_dir / 'kt_manifest.json').read_text())
    # (Alpha 0.5's chain is kt train's: the record of which command set it tells them apart.)
    assert after['chain'] == before['chain'] and 'results' not in after
    assert (work_dir / 'results.json').read_text() == train_results
    assert after['sequence_command'] == 'train'
    assert {k: (work_dir / f'stage_{k}').readlink() for k in (1, 2)} == links
    assert 'keeps the sequence `kt train` trained there' in ' '.join(result.stdout.split())


def test_ablate_alpha_trains_alpha_0_as_the_reference_when_missing(tmp_path, demo_root):
    result = kt_ablate('alpha', tmp_path / 'work', demo_root, '--values', '0.1,1', '--n', '2',
                       '--dry-run')
    assert 'alpha 0 (cross-entropy only) is trained too' in result.stdout
    assert '4 distinct stages: 0 reused, 4 to train' in result.stdout


def test_seed_replicates_share_no_stage(tmp_path, demo_root):
    result = kt_ablate('n', tmp_path / 'work', demo_root, '--max-n', '3', '--seeds', '0,1',
                       '--dry-run')
    assert '10 distinct stages: 0 reused, 10 to train' in result.stdout
    assert not (tmp_path / 'work' / 'stages').exists()


def test_alpha_chosen_on_validation_then_on_test_from_the_same_stages(tmp_path, demo_root):
    """--val-split 1 (one image of each of the 20 species held out): mmengine validates
    every epoch on it, --select-on val chooses from it, and --select-on test reuses every
    stage and labels its choice."""
    work_dir = tmp_path / 'work'
    common = ('--values', '0,1', '--n', '2', '--val-split', '1')
    result = kt_ablate('alpha', work_dir, demo_root, *common, '--select-on', 'val')
    text = ' '.join(result.stdout.split())
    assert '3 distinct stages: 0 reused, 3 to train' in text
    data = json.loads((work_dir / 'ablate_alpha.json').read_text())
    selection = data['selection']
    assert selection['on'] == 'val' and selection['label'] == 'alpha chosen on validation'
    scores = {float(a): s for a, s in selection['mean_ensemble_top1'].items()}
    assert selection['alpha'] == min(a for a in scores if scores[a] == max(scores.values()))
    for alpha in ('0.0', '1.0'):
        assert data['figures'][alpha]['validation_ensemble'] == [scores[float(alpha)]]
    assert f'alpha chosen on validation: alpha {selection["alpha"]:g}' in text
    assert 'not used for the choice' in text
    for stage in (work_dir / 'stages').iterdir():
        [scalars] = stage.glob('*/vis_data/scalars.json')
        assert [json.loads(line)['step'] for line in scalars.read_text().splitlines()
                if 'accuracy/top1' in line] == [1]
        assert (stage / 'val_outputs.pt').is_file()

    again = kt_ablate('alpha', work_dir, demo_root, *common, '--select-on', 'test')
    text = ' '.join(again.stdout.split())
    assert '3 distinct stages: 3 reused, 0 to train' in text
    assert 'alpha chosen on the test set (selected on the test set)' in text
    assert json.loads((work_dir / 'ablate_alpha.json').read_text())['selection']['on'] == 'test'
