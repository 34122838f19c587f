"""What kt prints for machines is all its stdout holds, in a fresh process of each command.

A library that prints at import (onedl-mmpretrain's ``Could not import OneDL``) or while
loading (mmengine's default logger) would put a line before kt's own: every stdout line
must parse, and nothing but JSON may be there.
"""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def kt(*args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, '-m', 'ktcli', *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_predict_json_prints_one_json_object_per_image_and_nothing_else(trained_work_dir,
                                                                       demo_root):
    images = sorted((demo_root / 'images').rglob('*.jpg'))[:2]
    stdout = kt('predict', trained_work_dir, *images, '--json', '--topk', '2').stdout
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [Path(record['image']).name for record in records] == [p.name for p in images]
    assert all(len(record['predictions']) == 2 for record in records)


def test_ensemble_json_to_stdout_is_one_document_and_the_tables_go_to_stderr(
        trained_work_dir):
    result = kt('ensemble', trained_work_dir, '--json', '-')
    figures = json.loads(result.stdout)
    assert [row['index'] for row in figures['stages']] == [1, 2]
    assert 'test images' in result.stderr
