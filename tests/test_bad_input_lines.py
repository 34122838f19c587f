"""Bad values and a machine that cannot write: one line, exit code 2, nothing lost."""
import errno
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ktbase.writing import write_atomically
from ktcli.errors import UserError
from ktcli.stages.manifest import Manifest

from .conftest import REPO
from .kt_processes import forked_kt


def kt_train(demo_root: Path, work_dir: Path, *extra: str,
             fresh: bool = False) -> subprocess.CompletedProcess:
    """``kt train --n 2`` at the tiny settings, forked from the session's server or, with
    ``fresh``, in a new interpreter."""
    args = ['train', '--dataset', 'demo', '--data-root', str(demo_root), '--backbone',
            'resnet18_tiny', '--img-size', '32', '--epochs', '1', '--batch-size', '8',
            '--work-dir', str(work_dir), '--n', '2', *extra]
    if fresh:
        return subprocess.run([sys.executable, '-m', 'ktcli', *args], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    return forked_kt(*args)


@pytest.mark.parametrize('extra, expected', [
    (['--alpha', 'inf'], 'error: --alpha takes a finite number >= 0, got inf'),
    (['--lr', 'nan'], 'error: --lr takes a finite number >= 0, got nan'),
    (['--lr', '-0.1'], 'error: --lr takes a finite number >= 0, got -0.1'),
    (['--cfg-options', 'model.head.num_classes=abc'],
     "error: --cfg-options model.head.num_classes=abc break the config: TypeError: "),
], ids=['alpha inf', 'lr nan', 'lr negative', 'cfg-options'])
@pytest.mark.usefixtures('kt_server')
def test_a_bad_value_stops_before_anything_trains(tmp_path, demo_root, extra, expected):
    result = kt_train(demo_root, tmp_path / 'work', *extra)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert 'Traceback' not in result.stdout + result.stderr
    assert not (tmp_path / 'work' / 'stages').exists()


def test_a_pretrained_file_that_is_no_checkpoint_is_called_that(tmp_path, demo_root):
    """In a fresh interpreter, as a user starts kt: the whole of stderr is the one line,
    with nothing that a library prints while kt loads torch and mmengine."""
    random_bytes = tmp_path / 'weights.pth'
    random_bytes.write_bytes(random.Random(0).randbytes(4096))
    result = kt_train(demo_root, tmp_path / 'work', '--pretrained', str(random_bytes),
                      fresh=True)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f'error: {random_bytes} is not a readable checkpoint (truncated or corrupt?): '
        'not a torch.save file; retrain it or point to another file')


@pytest.mark.parametrize('code, fix', [
    (errno.ENOSPC, 'the disk is full: free some space'),
    (errno.EROFS, 'the file system is read-only: pass a writable --work-dir'),
])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch,
                                                                   code, fix):
    manifest = Manifest(tmp_path)
    manifest.update('0123456789abcdef', status='done')
    before = manifest.path.read_text()

    def fail(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, 'fsync', fail)
    with pytest.raises(UserError) as error:
        manifest.update('0123456789abcdef', status='running')
    assert str(error.value) == (f'cannot write {manifest.path}: {fix}; '
                                'nothing finished was lost')
    assert manifest.path.read_text() == before
    # The lock file stays; no temporary file is left.
    assert sorted(path.name for path in tmp_path.iterdir()) == ['.kt_manifest.lock',
                                                               'kt_manifest.json']


def test_writes_replace_the_whole_file(tmp_path):
    path = tmp_path / 'record.json'
    write_atomically(path, 'first')
    write_atomically(path, 'second')
    assert path.read_text() == 'second' and list(tmp_path.iterdir()) == [path]


def test_loader_workers_are_capped_at_the_cpus_available(monkeypatch):
    from ktcli import cpus, runner
    monkeypatch.setattr(cpus, 'available_cpus', lambda: 2)
    cfg = runner.load_config(str(REPO / 'configs' / 'kt' / 'resnet50_kt_cub.py'))
    assert cfg.train_dataloader.num_workers == cfg.test_dataloader.num_workers == 2
