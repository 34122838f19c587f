"""tools/benchmark_gpu.py: its smoke mode on the CPU, and the rows it times on a GPU."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import torch

from .conftest import REPO

TOOL = REPO / 'tools' / 'benchmark_gpu.py'
TINY_CONFIG = REPO / 'configs' / 'kt' / 'resnet18-tiny_kt_demo.py'
ROW_KEYS = {'model', 'teachers', 'amp', 'channels_last', 'teacher_precision', 'images_per_s',
            'ms_per_iter', 'peak_memory_gib', 'last_loss'}


def load_tool():
    spec = importlib.util.spec_from_file_location('benchmark_gpu', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_on_the_cpu_writes_every_row(tmp_path):
    out = tmp_path / 'bench.json'
    # One thread: two OpenMP threads on a shared, busy machine can stall for seconds.
    result = subprocess.run(
        [sys.executable, str(TOOL), '--smoke', '--config', str(TINY_CONFIG), '--teachers', '0,1',
         '--out', str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'resnet18-tiny_kt_demo.py: batch 2, 64 px, cpu' in result.stdout
    report = json.loads(out.read_text())
    assert (report['device'], report['batch_size'], report['img_size'], report['iters']) == (
        'cpu', 2, 64, 2)
    rows = report['rows']
    assert all(set(row) == ROW_KEYS for row in rows)
    assert [(row['model'], row['teachers'], row['channels_last'], row['teacher_precision'])
            for row in rows] == [
        ('ImageClassifier', 0, False, None),
        ('KTClassifier', 0, False, None), ('KTClassifier', 0, True, None),
        ('KTClassifier', 1, False, 'fp32'), ('KTClassifier', 1, False, 'bf16'),
        ('KTClassifier', 1, True, 'fp32'), ('KTClassifier', 1, True, 'bf16')]
    assert not any(row['amp'] for row in rows)  # AmpOptimWrapper needs a GPU
    for row in rows:
        assert row['images_per_s'] > 0 and math.isfinite(row['last_loss'])
        assert row['peak_memory_gib'] is None


def test_gpu_rows_cover_teachers_amp_memory_format_and_precision():
    tool = load_tool()
    rows = tool.settings([0, 4], ['fp32', 'bf16', 'bf16'], torch.device('cuda'))
    assert [row for row in rows if row.model == 'ImageClassifier'] == [
        tool.Setting('ImageClassifier', 0, amp, False, None) for amp in (False, True)]
    kt = {(row.teachers, row.amp, row.channels_last, row.teacher_precision)
          for row in rows if row.model == 'KTClassifier'}
    assert len(kt) == len(rows) - 2 == 4 + 8
    assert (4, True, True, 'bf16') in kt and (0, False, True, None) in kt
