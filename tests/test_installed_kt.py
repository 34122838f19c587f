"""kt as users run it: installed from a wheel into a fresh venv, run from a folder that is
neither the repository nor the work dir, with relative paths and its output going to a file,
on an ImageFolder dataset of 3 classes."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CLASSES = 3


def kt(bin_dir: Path, folder: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the installed ``kt`` in ``folder`` (no PYTHONPATH: only the venv's own kt)."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
    result = subprocess.run([str(bin_dir / 'kt'), *args], cwd=folder, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, f'{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
    return result


@pytest.fixture(scope='module')
def user_folder(tmp_path_factory, demo_root) -> Path:
    """A user's folder holding ``data/birds``: 3 of the demo species as an ImageFolder tree."""
    folder = tmp_path_factory.mktemp('user')
    species = sorted(path for path in (demo_root / 'images').iterdir() if path.is_dir())
    split_of = {line.split()[0]: line.split()[1] for line in
                (demo_root / 'train_test_split.txt').read_text().splitlines()}
    names = {line.split()[1]: line.split()[0] for line in
             (demo_root / 'images.txt').read_text().splitlines()}
    for class_dir in species[:CLASSES]:
        for image in class_dir.glob('*.jpg'):
            split = 'train' if split_of[names[f'{class_dir.name}/{image.name}']] == '1' else 'test'
            target = folder / 'data' / 'birds' / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target / image.name)
    return folder


@pytest.fixture(scope='module')
def training_log(installed_kt_bin, user_folder) -> str:
    """``kt train`` of a 2-stage sequence on the 3 classes, its output sent to a file."""
    command = (f'{installed_kt_bin / "kt"} train --dataset custom --data-root data/birds '
               '--backbone resnet18_tiny --img-size 32 --epochs 1 --batch-size 4 '
               '--work-dir runs/birds --n 2 > train.log 2>&1')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
    result = subprocess.run(command, shell=True, cwd=user_folder, timeout=900, env=env)
    log = (user_folder / 'train.log').read_text()
    assert result.returncode == 0, log[-3000:]
    return log


def test_training_into_a_file_prints_plain_progress_lines(training_log):
    # No live bar off a terminal: a line per tenth of each stage and per epoch end.
    lines = re.findall(r'^stage (\d)/2: epoch 1/1 iter (\d+)/(\d+) ETA \S+ \((\d+)%\) '
                       r'loss_ce [\d.]+(  loss_or [\d.]+)?$', training_log, re.MULTILINE)
    assert {stage for stage, *_ in lines} == {'1', '2'}, training_log[-3000:]
    for stage, done, total, percent, loss_or in lines:
        assert 100 * int(done) // int(total) == int(percent)
        assert bool(loss_or) == (stage == '2')
    assert '2 distinct stages: 0 reused, 2 to train' in training_log


def test_three_classes_train_and_ensemble_from_another_folder(installed_kt_bin, user_folder,
                                                              training_log):
    kt(installed_kt_bin, user_folder, 'ensemble', 'runs/birds', '--json', 'figures.json')
    figures = json.loads((user_folder / 'figures.json').read_text())
    assert [row['index'] for row in figures['stages']] == [1, 2]
    # Top-5 of 3 classes means nothing: neither training nor scoring asks for it.
    assert all(row['top5'] is None for row in figures['stages'])
    results = json.loads((user_folder / 'runs' / 'birds' / 'results.json').read_text())
    assert [stage['top1'] for stage in results['stages']] == [
        row['top1'] for row in figures['stages']]


@pytest.mark.parametrize('model_format, suffix', [('onnx', 'onnx'), ('torchscript', 'pt')])
def test_export_and_predict_with_relative_paths(installed_kt_bin, user_folder, training_log,
                                                model_format, suffix):
    kt(installed_kt_bin, user_folder, 'export', 'runs/birds', '--format', model_format)
    exported = Path('runs/birds/exports') / f'ensemble_1-2.{suffix}'
    assert (user_folder / exported).is_file()
    image = next((user_folder / 'data' / 'birds' / 'test').rglob('*.jpg'))
    result = kt(installed_kt_bin, user_folder, 'predict', str(exported),
                str(image.relative_to(user_folder)), '--json', '--topk', str(CLASSES))
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(record['predictions']) == CLASSES
    assert abs(sum(p['probability'] for p in record['predictions']) - 1) < 1e-4


def test_visualize_and_status_with_relative_paths(installed_kt_bin, user_folder, training_log):
    kt(installed_kt_bin, user_folder, 'visualize', 'runs/birds', '--count', '2', '--out',
       'out/grid.png')
    assert (user_folder / 'out' / 'grid.png').is_file()
    result = kt(installed_kt_bin, user_folder, 'status', 'runs/birds')
    assert '2 done' in result.stdout
