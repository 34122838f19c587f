"""A stage killed (kill -9 of kt's whole process group) and resumed equals an uninterrupted one.

The reference is an uninterrupted two-stage sequence of two epochs. Each case copies it,
removes stage 2, starts ``kt train`` again, kills it at one point of stage 2, and reruns the
same command: stage 2's weights, test outputs and top-1 must equal the reference's exactly.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from .conftest import REPO, cached_outputs
from .kt_processes import forked_kt

pytestmark = pytest.mark.usefixtures('kt_server')


def train_args(work_dir: Path, demo_root: Path) -> list:
    return ['train', '--dataset', 'demo', '--data-root', str(demo_root), '--backbone',
            'resnet18_tiny', '--img-size', '32', '--epochs', '2', '--batch-size', '8',
            '--work-dir', str(work_dir), '--n', '2']


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, demo_root) -> Path:
    work_dir = tmp_path_factory.mktemp('uninterrupted') / 'work'
    result = forked_kt(*train_args(work_dir, demo_root))
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


def stage_two(work_dir: Path) -> Path:
    chain = json.loads((work_dir / 'kt_manifest.json').read_text())['chain']
    return work_dir / 'stages' / chain[1]


def after_epoch_1(stage_dir: Path) -> bool:
    """Whether stage 2's epoch-1 checkpoint is complete."""
    checkpoint = stage_dir / 'epoch_1.pth'
    return checkpoint.is_file() and zipfile.is_zipfile(checkpoint)


def test_a_killed_stage_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, demo_root):
    """Killed after epoch 1, stage 2 resumes to the weights of an uninterrupted run. (Killed
    before its first checkpoint a stage trains again from scratch, and killed while kt
    scores it a rerun only scores it again: the same deterministic run, not worth the
    suite's time.)"""
    work_dir = tmp_path / 'work'
    shutil.copytree(uninterrupted, work_dir, symlinks=True)
    reference_dir = stage_two(uninterrupted)
    stage_dir = work_dir / 'stages' / reference_dir.name
    shutil.rmtree(stage_dir)
    args = train_args(work_dir, demo_root)

    # A session of its own, whose whole process group (kt and its stage) the kill reaches.
    process = subprocess.Popen([sys.executable, '-m', 'ktcli', *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while not after_epoch_1(stage_dir) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (stage_dir / 'test_outputs.pt').exists()
    record = json.loads((stage_dir / 'stage.json').read_text())
    assert record['status'] == 'running'
    assert record['train_seconds'] > 0  # the killed session's time is kept

    result = forked_kt(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '1 reused, 1 to train' in result.stdout

    resumed = torch.load(stage_dir / 'epoch_2.pth', weights_only=True)['state_dict']
    reference = torch.load(reference_dir / 'epoch_2.pth', weights_only=True)['state_dict']
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(resumed[name], value), name
    outputs = cached_outputs(stage_dir / 'test_outputs.pt')
    expected = cached_outputs(reference_dir / 'test_outputs.pt')
    assert all(torch.equal(outputs[key], expected[key]) for key in expected)
    records = [json.loads((d / 'stage.json').read_text()) for d in (stage_dir, reference_dir)]
    assert records[0]['top1'] == records[1]['top1'] and records[0]['status'] == 'done'
