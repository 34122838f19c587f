"""kt ensemble on a tiny trained work dir: figures match a direct computation; cache reuse."""
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import ktcli.scoring.test_outputs
from ktcli.main import app
from registry_plugins import orthogonal_loss

from .conftest import cached_outputs


@pytest.fixture
def work_dir(trained_work_dir) -> Path:
    return trained_work_dir


def cached(work_dir: Path, k: int) -> dict:
    return cached_outputs(work_dir / f'stage_{k}' / 'test_outputs.pt')


def invoke(*args: str):
    result = CliRunner().invoke(app, ['ensemble', *args])
    assert result.exit_code == 0, result.output
    return result


def test_figures_equal_a_direct_computation_from_the_cache(work_dir, tmp_path):
    invoke(str(work_dir), '--json', str(tmp_path / 'e.json'), '--csv', str(tmp_path / 'e.csv'))
    rows = json.loads((tmp_path / 'e.json').read_text())['stages']
    first, second = cached(work_dir, 1), cached(work_dir, 2)
    labels = first['labels']
    assert len(labels) == 40  # every test image is scored
    single = [(m['logits'].argmax(1) == labels).float().mean().item() * 100
              for m in (first, second)]
    fused = (first['logits'].softmax(1) + second['logits'].softmax(1)) / 2
    assert [r['top1'] for r in rows] == pytest.approx(single)
    assert rows[0]['ensemble_top1'] == pytest.approx(single[0])
    assert rows[1]['ensemble_top1'] == pytest.approx(
        (fused.argmax(1) == labels).float().mean().item() * 100)
    assert rows[0]['or_overlap'] is None
    assert rows[1]['or_overlap'] == pytest.approx(
        orthogonal_loss(second['attention'], [first['attention']]).item())
    assert rows[1]['disagreement'] == pytest.approx(
        (first['logits'].argmax(1) != second['logits'].argmax(1)).float().mean().item() * 100)
    assert (tmp_path / 'e.csv').read_text().splitlines()[0].startswith('index,digest,top1')


def test_the_ensemble_is_compared_with_its_best_member_and_its_errors_described(work_dir,
                                                                               tmp_path):
    log = ' '.join(invoke(str(work_dir), '--json', str(tmp_path / 'e.json')).output.split())
    figures = json.loads((tmp_path / 'e.json').read_text())
    first, second = cached(work_dir, 1), cached(work_dir, 2)
    labels = first['labels']
    right = [m['logits'].argmax(1) == labels for m in (first, second)]
    fused = ((first['logits'].softmax(1) + second['logits'].softmax(1)) / 2).argmax(1) == labels
    best = 0 if right[0].sum() >= right[1].sum() else 1
    comparison = figures['ensemble_against_best_member']
    assert (comparison['first'], comparison['second']) == ('ensemble', f'stage {best + 1}')
    assert (comparison['images'], comparison['first_correct'], comparison['second_correct']) \
        == (40, int(fused.sum()), int(right[best].sum()))
    assert (comparison['first_only'], comparison['second_only']) == (
        int((fused & ~right[best]).sum()), int((~fused & right[best]).sum()))
    assert comparison['verdict'] in log and 'against its best member' in log
    errors = figures['error_structure']
    assert errors['oracle_correct'] == int((right[0] | right[1]).sum())
    [pair] = errors['pairs']
    wrong = torch.stack([(~r).float() for r in right])
    assert pair['error_correlation'] == pytest.approx(torch.corrcoef(wrong)[0, 1].item())
    assert pair['or_overlap'] == pytest.approx(figures['stages'][1]['or_overlap'])
    assert f'oracle top-1 (any member right) {errors["oracle_top1"]:.2f}' in log
    assert 'resolves differences of about ±' in figures['resolution']


def test_later_reports_use_the_cache_without_a_forward_pass(work_dir, tmp_path, monkeypatch):
    invoke(str(work_dir))

    def no_forward(*args, **kwargs):
        raise AssertionError('a model was run although its outputs are cached')

    monkeypatch.setattr(ktcli.scoring.test_outputs, 'compute_test_outputs', no_forward)
    invoke(str(work_dir), '--fusion', 'logits', '--models', '2,1', '--json',
           str(tmp_path / 'l.json'))
    rows = json.loads((tmp_path / 'l.json').read_text())['stages']
    assert [r['index'] for r in rows] == [2, 1]
    first, second = cached(work_dir, 1), cached(work_dir, 2)
    summed = first['logits'] + second['logits']
    assert rows[1]['ensemble_top1'] == pytest.approx(
        (summed.argmax(1) == first['labels']).float().mean().item() * 100)


def test_unknown_stage_is_one_clear_error(work_dir):
    result = CliRunner().invoke(app, ['ensemble', str(work_dir), '--models', '1,7'])
    assert result.exit_code == 2
    assert 'there is no stage 7' in result.output
