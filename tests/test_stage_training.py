"""Claiming and training one stage (ktcli/sequencing/stage_training.py), with stand-in training
commands: the record follows the child process to done, failed or interrupted."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mmengine.config import Config

from ktcli.errors import UserError
from ktcli.reading import UnsafeFileError
from ktcli.sequencing.stage_training import (check_stage_dir, claim_stage, process_alive,
                                             process_start, refuse_if_live, this_process,
                                             train_recorded_stage)
from ktcli.stages.manifest import Manifest
from ktcli.stages.planned_stage import PlannedStage
from ktcli.stages.records import stage_paths

DIGEST = '0123456789abcdef'
# What mmengine prints once per logged iteration (the launcher's progress parser reads it).
PROGRESS = ('Epoch(train) [1][2/4]  lr: 1.0000e-02  eta: 0:00:01  time: 0.1  '
            'loss: 1.5  loss_ce: 1.25  loss_or: 0.25')


def planned(work_dir: Path) -> PlannedStage:
    paths = {name: work_dir / path for name, path in stage_paths(DIGEST).items()}
    return PlannedStage(1, DIGEST, Config(dict(train_cfg=dict(max_epochs=1))), paths['dir'],
                        paths['config'], paths['checkpoint'], label='1/1')


def stand_in(script: str) -> list:
    """A training command that runs ``script`` in a child Python."""
    return [sys.executable, '-c', script]


def test_a_stage_that_writes_its_checkpoint_is_done(tmp_path):
    manifest, stage = Manifest(tmp_path), planned(tmp_path)
    stage.dir.mkdir(parents=True)
    seen = []
    script = f'print({PROGRESS!r}); open({str(stage.checkpoint)!r}, "wb").write(b"w")'
    train_recorded_stage(manifest, stage, stand_in(script), seen.append)
    assert [(update.epoch, update.iter, update.loss_ce, update.loss_or) for update in seen] == [
        (1, 2, 1.25, 0.25)]
    record = Manifest(tmp_path).stage(DIGEST)
    assert record['status'] == 'done' and record['pid'] is None and record['reason'] is None
    assert record['host'] == socket.gethostname() and record['train_seconds'] > 0
    assert record['checkpoint'] == stage_paths(DIGEST)['checkpoint']


def test_an_error_fails_the_stage_with_its_line(tmp_path):
    manifest, stage = Manifest(tmp_path), planned(tmp_path)
    with pytest.raises(UserError, match=r'stage 1/1 failed: the data is gone \(exit code 2'):
        train_recorded_stage(manifest, stage, stand_in(
            'import sys; print("error: the data is gone"); sys.exit(2)'), lambda update: None)
    record = Manifest(tmp_path).stage(DIGEST)
    assert record['status'] == 'failed' and record['reason'] == 'the data is gone'


def test_a_run_without_its_checkpoint_fails_and_an_interrupted_one_can_resume(tmp_path):
    manifest, stage = Manifest(tmp_path), planned(tmp_path)
    with pytest.raises(UserError, match='it ended without its checkpoint'):
        train_recorded_stage(manifest, stage, stand_in('pass'), lambda update: None)
    with pytest.raises(UserError, match='was interrupted .exit code 130.; rerun the same '
                                        'command to resume'):
        train_recorded_stage(manifest, stage, stand_in('import sys; sys.exit(130)'),
                             lambda update: None)
    assert Manifest(tmp_path).stage(DIGEST)['status'] == 'interrupted'


def test_a_stage_another_live_kt_trains_is_refused(tmp_path):
    manifest, stage = Manifest(tmp_path), planned(tmp_path)
    parent = os.getppid()
    manifest.update(DIGEST, status='running', host=socket.gethostname(), pid=None,
                    owner=[parent, process_start(parent)])
    with pytest.raises(UserError, match=f'being trained by kt process {parent}'):
        claim_stage(manifest, stage)
    # Its owner gone (a pid whose start time differs), the stage is claimed by this process.
    manifest.update(DIGEST, owner=[parent, process_start(parent) + 1])
    assert claim_stage(manifest, stage)['owner'] == this_process()
    assert Manifest(tmp_path).stage(DIGEST)['status'] == 'running'


def test_a_live_training_process_is_known_by_its_stage_directory(tmp_path):
    stage = planned(tmp_path)
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)',
                              str(stage.dir)])
    # Its command line is there once the child has exec'd (empty a moment before).
    while not Path(f'/proc/{child.pid}/cmdline').read_bytes():
        time.sleep(0.01)
    try:
        assert process_alive(child.pid, stage.dir)
        assert not process_alive(child.pid, tmp_path / 'another')
        with pytest.raises(UserError, match=f'being trained by process {child.pid}'):
            refuse_if_live(stage, dict(status='running', host=socket.gethostname(),
                                       pid=child.pid))
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid, stage.dir) and not process_alive(None, stage.dir)


def test_a_stage_directory_with_planted_files_is_refused(tmp_path):
    stage = planned(tmp_path)
    stage.dir.mkdir(parents=True)
    (stage.dir / 'epoch_3.pth').write_bytes(b'planted')
    with pytest.raises(UserError, match='holds epoch_3.pth, but no kt run of this stage'):
        check_stage_dir(tmp_path, stage, started=False)
    check_stage_dir(tmp_path, stage, started=True)  # its own checkpoint: resumed
    (stage.dir / 'last_checkpoint').symlink_to('/etc/passwd')
    with pytest.raises(UnsafeFileError, match='last_checkpoint is a symbolic link'):
        check_stage_dir(tmp_path, stage, started=True)
