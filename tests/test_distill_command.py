"""kt distill on a tiny trained work dir: trains one student stage, reuses it, resumes it,
and the student is scored, exported and used for prediction like any stage."""
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

from .conftest import REPO
from .kt_processes import forked_kt

pytestmark = pytest.mark.usefixtures('kt_server')


def kt(*args) -> subprocess.CompletedProcess:
    result = forked_kt(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def students(work_dir: Path) -> dict:
    stages = json.loads((work_dir / 'kt_manifest.json').read_text())['stages']
    return {digest: record for digest, record in stages.items()
            if record.get('kind') == 'distilled'}


@pytest.fixture(scope='module')
def distilled(tmp_path_factory, trained_work_dir) -> Path:
    """A copy of the trained work dir whose student was killed after epoch 1 and resumed."""
    work_dir = tmp_path_factory.mktemp('distill') / 'work'
    shutil.copytree(trained_work_dir, work_dir, symlinks=True)
    command = [sys.executable, '-m', 'ktcli', 'distill', str(work_dir), '--epochs', '2']
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while process.poll() is None:
        assert time.monotonic() < deadline
        done = [work_dir / 'stages' / digest / 'epoch_1.pth' for digest in students(work_dir)
                ] if (work_dir / 'kt_manifest.json').exists() else []
        if done and done[0].is_file() and zipfile.is_zipfile(done[0]):
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    result = kt('distill', work_dir, '--epochs', '2')
    assert 'student ' in result.stdout and 'trained' in result.stdout
    # Off a terminal rich wraps at 80 columns: compare the words.
    words = ' '.join(result.stdout.split())
    # One epoch of tiny models may leave the ensemble below its members: then no gap.
    assert ('of the gap between the mean member' in words
            or 'the ensemble is not above the mean member' in words), words
    student_row = words[words.index('│ student'):]
    assert any(word in student_row for word in ('student ahead', 'ensemble ahead',
                                                'not resolved'))
    assert 'Δ: student − ensemble, 95% paired interval' in student_row
    return work_dir


def test_the_student_resumes_trains_against_frozen_members_and_is_recorded(distilled):
    (digest, record), = students(distilled).items()
    members = json.loads((distilled / 'kt_manifest.json').read_text())['chain']
    assert record['members'] == members and record['status'] == 'done'
    logs = sorted((distilled / 'stages' / digest).glob('*/*.log'))
    assert len(logs) == 2  # killed after epoch 1, resumed for epoch 2
    resumed = logs[-1].read_text()
    assert 'resumed epoch: 1' in resumed and 'Epoch(train) [2]' in resumed
    assert 'Epoch(train) [1]' not in resumed
    assert 'loss_kd:' in resumed and 'loss_or' not in resumed
    assert resumed.count('frozen, eval mode') == 2


def test_a_second_call_reuses_the_student(distilled):
    assert 'reused' in kt('distill', distilled, '--epochs', '2').stdout
    assert len(students(distilled)) == 1


def test_ensemble_export_and_predict_use_the_student(distilled, demo_root):
    figures = distilled.parent / 'figures.json'
    table = kt('ensemble', distilled, '--json', figures).stdout
    assert 'distilled students' in table and '1,2' in table
    students = json.loads(figures.read_text())['students']
    assert len(students) == 1 and all(s['stages'] == [1, 2] for s in students)
    assert all(0 <= s['top1'] <= 100 for s in students)
    for student in students:
        comparison = student['against_ensemble']
        assert comparison['first_correct'] == student['top1_correct']
        assert comparison['first_top1'] == student['top1'] == 100 * student['top1_correct'] / 40
        assert comparison['second_top1'] == student['members_ensemble_top1']
    out = distilled.parent / 'student.onnx'
    result = kt('export', distilled, '--format', 'onnx', '--models', 'distilled', '--out', out)
    assert 'onnx export of the distilled student' in result.stdout and out.is_file()
    image = next((demo_root / 'images').rglob('*.jpg'))
    predictions = kt('predict', distilled, image, '--models', 'distilled', '--json').stdout
    assert json.loads(predictions.splitlines()[0])['predictions'][0]['name']


def test_the_gap_lines_say_a_student_below_a_member_in_words():
    from types import SimpleNamespace

    import numpy as np
    from rich.console import Console

    from ktcli.commands.distill import print_student
    from ktcli.scoring.student_scores import gap_closed

    # Members 60 and 70 (mean 65), ensemble 75 on 20 images; the student gets 12 right (60).
    correct = np.array([True] * 15 + [False] * 5)
    rows = [SimpleNamespace(index=1, top1=60.0), SimpleNamespace(
        index=2, top1=70.0, ensemble_top1=75.0, ensemble_correct=correct)]
    student = SimpleNamespace(top1=60.0, correct=np.array([True] * 12 + [False] * 8))
    console = Console(record=True, width=200)

    print_student(console, rows, student, 'student of stages 1,2')

    lines = console.export_text().splitlines()
    assert gap_closed(60.0, 65.0, 75.0) == -50.0 and gap_closed(80.0, 70.0, 75.0) == 200.0
    assert gap_closed(70.0, 75.0, 75.0) is None
    assert ('the student closes -50% of the gap between the mean member (65.00) and the '
            'ensemble: the student is below the mean member itself') in lines
    assert ('the student closes -200% of the gap between the best member (70.00) and the '
            'ensemble: the student is below the best member itself') in lines
