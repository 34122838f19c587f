"""kt train end to end on tiny demo data: reuse, a new alpha in 2 processes.

Resuming after a kill: tests/test_resume.py. Extending a work dir by one stage: a moved copy
in tests/test_received_work_dir.py.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ktcli.stages.config_files import read_stage_config

from .kt_processes import forked_kt

pytestmark = pytest.mark.usefixtures('kt_server')


def kt_train(work_dir: Path, data_root: Path, *options: str) -> subprocess.CompletedProcess:
    result = forked_kt('train', '--dataset', 'demo', '--data-root', data_root, '--backbone',
                       'resnet18_tiny', '--img-size', '32', '--epochs', '1', '--batch-size', '8',
                       '--work-dir', work_dir, *options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def manifest(work_dir: Path) -> dict:
    return json.loads((work_dir / 'kt_manifest.json').read_text())


def stage_logs(stage_dir: Path) -> list:
    return sorted(stage_dir.glob('*/*.log'))


def teachers_of(stage_dir: Path) -> list:
    hooks = read_stage_config(stage_dir / 'config.json').get('custom_hooks', [])
    return [teacher['checkpoint'] for hook in hooks if hook['type'] == 'SequentialTeacherHook'
            for teacher in hook['teachers']]


@pytest.fixture(scope='module')
def two_stages(tmp_path_factory, trained_work_dir) -> Path:
    """A copy of the session's ``kt train --n 2`` work dir (kt_train's settings), which the
    tests below train on."""
    assert '0 reused, 2 to train' in (trained_work_dir.parent / 'kt_train.out').read_text()
    return Path(shutil.copytree(trained_work_dir, tmp_path_factory.mktemp('kt') / 'work',
                                symlinks=True))


def test_two_stages_train_score_and_record_results(two_stages):
    record = manifest(two_stages)
    assert len(record['chain']) == 2
    assert all(record['stages'][d]['status'] == 'done' for d in record['chain'])
    stage1, stage2 = (two_stages / f'stage_{k}' for k in (1, 2))
    assert teachers_of(stage1) == []
    # Relative to the student's directory, so that the work dir can move.
    assert teachers_of(stage2) == [f'../{stage1.resolve().name}/epoch_1.pth']
    written = json.loads((two_stages / 'results.json').read_text())
    results = written['stages']
    assert [r['index'] for r in results] == [1, 2]
    # One home for the figures (results.json), one shape for the settings (the records').
    assert 'results' not in record
    assert all(written['settings'] == record['stages'][d]['settings'] for d in record['chain'])
    for result in results:
        assert 0 <= result['top1'] <= 100 and 0 <= result['ensemble_top1'] <= 100
    # Stage 1 alone is its own ensemble.
    assert results[0]['top1'] == results[0]['ensemble_top1']
    # The visual backend (here mmengine's local one) records both losses; kt scores the
    # stages itself, so mmengine's validation does not run the test split again.
    scalars = next(stage2.glob('*/vis_data/scalars.json')).read_text()
    assert '"loss_ce"' in scalars and '"loss_or"' in scalars
    assert '"accuracy/top1"' not in scalars


def test_changing_alpha_reuses_stage_one_and_retrains_stage_two_in_two_gloo_processes(
        two_stages, demo_root):
    """A new alpha changes stage 2 only: with the same total batch (2 x 4) stage 1 is reused,
    and stage 2 trains again, distributed over two gloo processes (one run checks both, so
    that the suite trains one stage fewer)."""
    before = manifest(two_stages)['chain']
    result = kt_train(two_stages, demo_root, '--n', '2', '--gpus', '2', '--alpha', '2.0')
    assert '1 reused, 1 to train' in result.stdout
    after = manifest(two_stages)['chain']
    assert after[0] == before[0] and after[1] != before[1]
    # The stage trained with the old alpha is kept, not overwritten.
    assert manifest(two_stages)['stages'][before[1]]['status'] == 'done'
    stage2_config = read_stage_config(two_stages / 'stage_2' / 'config.json')
    assert stage2_config.model.or_loss.loss_weight == 2.0
    log = stage_logs(two_stages / 'stage_2')[-1].read_text()
    assert 'Distributed launcher: pytorch' in log
    # mmengine reports the world size as "GPU number", also when the processes are CPUs.
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert "dist_cfg: {'backend': 'gloo'}" in log
    # 60 images over 2 processes x batch 4: 8 iterations, each with the OR-loss.
    assert 'Epoch(train) [1][8/8]' in log and 'loss_or:' in log
    assert json.loads((two_stages / 'results.json').read_text())['stages'][1]['reused'] is False


def test_missing_data_is_one_line_naming_the_download_and_data_root(tmp_path):
    """(That it fails before torch loads is tests/test_command_line.py's; its time is
    measured by tools/benchmark_startup.py, not asserted.)"""
    result = subprocess.run([sys.executable, '-m', 'ktcli', 'train', '--dataset', 'air', '--n',
                             '5', '--alpha', '0.5', '--data-root', '/nonexistent'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'kt data download air --data-root /nonexistent' in lines[0]
    assert 'or pass --data-root with the folder of a copy you already have' in lines[0]
