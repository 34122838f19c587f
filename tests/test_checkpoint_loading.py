"""Checkpoints are fully unpickled only inside kt's work directories."""
import collections

import pytest
import torch
from mmengine.runner import CheckpointLoader

from registry_plugins import (
    CheckpointError,
    UntrustedCheckpointError,
    is_kt_checkpoint,
    load_checkpoint_file,
    mark_work_dir,
    resolve_checkpoint,
)

# Like mmengine's message hub: an object only a full unpickle can restore.
Record = collections.namedtuple('Record', 'value')


def save_full_checkpoint(path):
    torch.save({'state_dict': {'w': torch.ones(2)}, 'message_hub': Record(1)}, path)


def test_full_checkpoint_in_a_kt_work_dir_loads_through_mmengine(tmp_path):
    work_dir = tmp_path / 'work'
    mark_work_dir(work_dir)
    (work_dir / 'sub').mkdir()
    checkpoint = work_dir / 'sub' / 'epoch_1.pth'
    save_full_checkpoint(checkpoint)
    assert is_kt_checkpoint(checkpoint)
    loaded = CheckpointLoader.load_checkpoint(str(checkpoint), map_location='cpu')
    assert loaded['message_hub'] == Record(1)


def test_full_checkpoint_elsewhere_is_refused(tmp_path):
    checkpoint = tmp_path / 'foreign.pth'
    save_full_checkpoint(checkpoint)
    assert not is_kt_checkpoint(checkpoint)
    with pytest.raises(UntrustedCheckpointError, match='not inside a kt work directory'):
        CheckpointLoader.load_checkpoint(str(checkpoint), map_location='cpu')


def test_plain_state_dict_elsewhere_loads_weights_only(tmp_path):
    checkpoint = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'w': torch.arange(3)}}, checkpoint)
    loaded = load_checkpoint_file(checkpoint)
    assert torch.equal(loaded['state_dict']['w'], torch.arange(3))


def test_corrupt_checkpoint_is_reported(tmp_path):
    work_dir = tmp_path / 'work'
    mark_work_dir(work_dir)
    checkpoint = work_dir / 'epoch_1.pth'
    save_full_checkpoint(checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(CheckpointError, match='not a readable checkpoint'):
        load_checkpoint_file(checkpoint)


def test_missing_checkpoint_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_checkpoint_file(tmp_path / 'missing.pth')


def test_a_work_dir_stands_for_its_last_checkpoint(tmp_path):
    checkpoint = tmp_path / 'epoch_7.pth'
    checkpoint.write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(checkpoint))
    assert resolve_checkpoint(tmp_path) == checkpoint
    assert resolve_checkpoint(checkpoint) == checkpoint
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match='last_checkpoint'):
        resolve_checkpoint(empty)


def test_timm_weights_without_network_are_one_clear_error():
    import os
    import subprocess
    import sys
    code = ('import registry_plugins\n'
            'from mmengine.runner import CheckpointLoader\n'
            'try:\n'
            "    CheckpointLoader.load_checkpoint('timm://resnet18', logger='silent')\n"
            'except registry_plugins.CheckpointError as error:\n'
            '    print(error)\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE='1'), timeout=300)
    assert 'timm could not provide the pretrained weights of resnet18' in result.stdout
    assert 'pass --pretrained FILE or none' in result.stdout
