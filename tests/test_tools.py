"""tools/train.py and tools/test.py end to end on the tiny demo data; the inference benchmark."""
import os
import re
import subprocess
import sys
from pathlib import Path


from .conftest import REPO, TINY_CONFIG, run_tool, write_tiny_config

TOP1 = re.compile(r'accuracy/top1: ([\d.]+)')


def newest_log(work_dir: Path) -> str:
    return sorted(work_dir.glob('*/*.log'))[-1].read_text()


def teacher_hook(config: Path, work_dir: Path) -> str:
    teachers = [dict(config=str(config), checkpoint=str(work_dir))]
    return f"custom_hooks = [dict(type='SequentialTeacherHook', teachers={teachers!r})]"


def test_a_student_trains_against_a_teacher_and_its_checkpoint_tests(tmp_path, demo_root,
                                                                     trained_work_dir):
    """A config file of the user's trains (the teacher: stage 1 of the session's kt work dir,
    given by its config and its folder), and tools/test.py scores its checkpoint as training
    scored it."""
    teacher = trained_work_dir / 'stage_1'
    student = write_tiny_config(tmp_path / 'student.py', demo_root,
                                extra=teacher_hook(teacher / 'config.json', teacher))
    result = run_tool('tools/train.py', str(student), '--work-dir', str(tmp_path / 'student'))
    assert result.returncode == 0, result.stderr[-3000:]
    log = newest_log(tmp_path / 'student')
    assert 'Teacher 1/1: config.json' in log
    assert 'loss_ce:' in log and 'loss_or:' in log
    trained_top1 = TOP1.findall(log)[-1]

    result = run_tool('tools/test.py', str(student), str(tmp_path / 'student' / 'epoch_1.pth'),
                      '--work-dir', str(tmp_path / 'test'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert TOP1.findall(result.stdout)[-1] == trained_top1


def test_missing_config_is_one_clear_line(tmp_path):
    result = run_tool('tools/train.py', str(tmp_path / 'nope.py'))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'error: config {tmp_path / "nope.py"} does not exist; '
        'the shipped ones are under configs/kt/']


def test_missing_data_is_one_clear_line(tmp_path):
    config = write_tiny_config(tmp_path / 'tiny.py', tmp_path / 'no_data')
    result = run_tool('tools/train.py', str(config), '--work-dir', str(tmp_path / 'work'))
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith('error: ')
    assert 'no_data' in result.stderr


def test_inference_benchmark_times_every_engine_and_int8():
    result = subprocess.run(
        [sys.executable, 'tools/benchmark_inference.py', '--config', str(TINY_CONFIG),
         '--members', '2', '--img-size', '32', '--batch-sizes', '2', '--iters', '1',
         '--warmup', '0', '--threads', '1', '--calibration-images', '4'],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, COLUMNS='200'))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split('│')[2].strip(): line for line in result.stdout.splitlines()
            if line.count('│') == 8}
    assert list(rows) == ['eager', 'eager channels_last', 'TorchScript', 'ONNX Runtime fp32',
                          'ONNX Runtime int8']
    assert 'torch ' in result.stdout and '1 intra-op threads' in result.stdout
    assert 'calibrated on 4 random normalised images (speed only)' in result.stdout
