"""A work dir received from someone else: nothing in it runs, and it works where it lands.

Each case starts from a ``cp -r`` copy of the session's trained work dir (two tiny stages),
tampered with as an attacker would, and runs kt in a real process.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import REPO


class CodeRunningPayload:
    """Unpickling this object runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def kt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'ktcli', *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def train_args(work_dir: Path, demo_root: Path, n: int) -> list:
    """The settings of the session's trained work dir (conftest.trained_work_dir)."""
    return ['train', '--dataset', 'demo', '--data-root', demo_root, '--backbone',
            'resnet18_tiny', '--img-size', '32', '--epochs', '1', '--batch-size', '8',
            '--work-dir', work_dir, '--n', str(n)]


def received_copy(trained_work_dir: Path, destination: Path) -> Path:
    """``cp -r`` of the trained work dir, without the cached test outputs."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(['cp', '-r', str(trained_work_dir), str(destination)], check=True)
    for cache in destination.glob('stages/*/test_outputs.pt'):
        cache.unlink()
    return destination


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert 'Traceback' not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope='module')
def poisoned(tmp_path_factory, trained_work_dir):
    """A received work dir whose stage 1 checkpoint also carries a code-running pickle."""
    base = tmp_path_factory.mktemp('received')
    work_dir = received_copy(trained_work_dir, base / 'work')
    marker = base / 'payload_ran'
    checkpoint = next((work_dir / 'stage_1').glob('epoch_*.pth'))
    state = torch.load(checkpoint, weights_only=True)
    state['extra'] = CodeRunningPayload(marker)
    torch.save(state, checkpoint)
    return work_dir, marker


@pytest.mark.parametrize('command', ['ensemble', 'export', 'predict', 'visualize', 'train'])
def test_a_code_running_checkpoint_is_refused_by_every_command(poisoned, demo_root, command):
    work_dir, marker = poisoned
    image = next((demo_root / 'images').rglob('*.jpg'))
    args = dict(ensemble=['ensemble', work_dir],
                export=['export', work_dir, '--format', 'onnx', '--out',
                        work_dir.parent / 'ensemble.onnx'],
                predict=['predict', work_dir, image],
                visualize=['visualize', work_dir, '--out', work_dir.parent / 'grid.png'],
                train=train_args(work_dir, demo_root, 3))[command]
    line = one_error_line(kt(*args))
    assert 'holds Python objects besides weights (posix.system)' in line
    assert 'epoch_1.pth' in line
    assert not marker.exists()


def test_code_in_a_stage_config_never_runs(tmp_path, trained_work_dir):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    marker = tmp_path / 'config_ran'
    for config in work_dir.glob('stages/*/config.py'):
        config.write_text(f'import os; os.system("touch {marker}")\n' + config.read_text())
    result = kt('ensemble', work_dir)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_a_config_naming_an_unregistered_type_is_refused(tmp_path, trained_work_dir):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    config = (work_dir / 'stage_1').resolve() / 'config.json'
    data = json.loads(config.read_text())
    # mmengine would import and call any dotted name it finds as a type.
    data['model']['backbone'] = dict(type='os.system', command=f'touch {tmp_path / "ran"}')
    config.write_text(json.dumps(data))
    line = one_error_line(kt('ensemble', work_dir))
    assert "names 'os.system' as a type, which no registry holds" in line
    assert not (tmp_path / 'ran').exists()


def test_a_moved_work_dir_is_reused_and_a_copy_trains_on_from_its_own_stages(
        tmp_path, trained_work_dir, demo_root):
    copied = received_copy(trained_work_dir, tmp_path / 'copied')
    moved = tmp_path / 'elsewhere' / 'moved'
    moved.parent.mkdir()
    shutil.move(str(copied), str(moved))
    # Its data travels too, to another folder: the stages know it by its content.
    data_root = tmp_path / 'data elsewhere' / 'birds'
    shutil.copytree(demo_root, data_root)

    result = kt(*train_args(moved, data_root, 2))
    assert result.returncode == 0, result.stderr[-2000:]
    assert '2 reused, 0 to train' in result.stdout

    result = kt(*train_args(moved, data_root, 3))
    assert result.returncode == 0, result.stderr[-2000:]
    assert '2 reused, 1 to train' in result.stdout
    log = next((moved / 'stage_3').glob('*/*.log')).read_text()
    teachers = [line for line in log.splitlines() if 'Teacher ' in line]
    assert len(teachers) == 2
    assert all(str(moved / 'stages') in line for line in teachers)
    assert str(trained_work_dir) not in log and str(data_root) in log


def test_a_broken_manifest_is_rebuilt_from_the_stage_directories(tmp_path, trained_work_dir):
    assert kt('ensemble', trained_work_dir, '--json', tmp_path / 'reference.json').returncode == 0
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    manifest = work_dir / 'kt_manifest.json'
    manifest.write_text(manifest.read_text()[:50])  # truncated
    result = kt('ensemble', work_dir, '--json', tmp_path / 'rebuilt.json')
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        f'{manifest} is unreadable (empty, truncated or not JSON); '
        'rebuilt it from 2 stage directories')
    figures = [json.loads((tmp_path / f'{name}.json').read_text())
               for name in ('reference', 'rebuilt')]
    assert figures[0] == figures[1]
    assert json.loads(manifest.read_text())['chain'] == json.loads(
        (trained_work_dir / 'kt_manifest.json').read_text())['chain']


def test_models_default_to_the_finished_stages(tmp_path, trained_work_dir):
    work_dir = received_copy(trained_work_dir, tmp_path / 'work')
    manifest = json.loads((work_dir / 'kt_manifest.json').read_text())
    unfinished = manifest['chain'][1]
    # An interrupted stage 2: no final checkpoint yet.
    for checkpoint in (work_dir / 'stages' / unfinished).glob('epoch_*.pth'):
        checkpoint.unlink()
    result = kt('ensemble', work_dir, '--json', tmp_path / 'figures.json')
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / 'figures.json').read_text())
    assert [row['index'] for row in figures['stages']] == [1]


def test_an_unwritable_work_dir_is_one_line(demo_root):
    line = one_error_line(kt(*train_args(Path('/sys/kt_work'), demo_root, 1)))
    assert line.startswith('error: cannot write /sys/kt_work')
    assert 'pass a --work-dir you can write to' in line
