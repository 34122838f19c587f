"""Every checkpoint is read weights-only, wherever it lies and whoever wrote it."""
import os
import random

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

from registry_plugins import (
    CheckpointError,
    UnsafeCheckpointError,
    WeightsOnlyCheckpointHook,
    load_checkpoint_file,
    resolve_checkpoint,
)
from registry_plugins.checkpoint_loading import latest_complete_checkpoint


class CodeRunningPayload:
    """Unpickling this object would run a shell command that creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_a_code_running_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'payload_ran'
    checkpoint = tmp_path / 'work' / 'epoch_1.pth'
    checkpoint.parent.mkdir()
    torch.save({'state_dict': {'w': torch.ones(2)}, 'extra': CodeRunningPayload(marker)},
               checkpoint)
    with pytest.raises(UnsafeCheckpointError, match='holds Python objects besides weights '
                       r'\(posix.system\), which kt never unpickles'):
        CheckpointLoader.load_checkpoint(str(checkpoint), map_location='cpu')
    assert not marker.exists()


def _a_name_in_scheme(prefix: str, local_file) -> str:
    """A checkpoint name that mmengine's loader sends to the loader of ``prefix``."""
    if prefix == '':
        return str(local_file)
    # The object-store schemes are patterns with an optional backend name before them.
    return prefix.replace(r'(\S+\:)?', '') + str(local_file).lstrip('/')


@pytest.mark.parametrize('prefix', sorted(CheckpointLoader._schemes))
def test_every_scheme_mmengine_knows_loads_weights_only_or_not_at_all(prefix, tmp_path,
                                                                     monkeypatch):
    """No loader mmengine registers, including onedl-mmengine's ones that fall back to a
    full unpickle, is left in front of a file: a payload is refused and never runs."""
    marker = tmp_path / 'payload_ran'
    payload = tmp_path / 'model.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'extra': CodeRunningPayload(marker)},
               payload)
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', recording_load)
    name = _a_name_in_scheme(prefix, payload)
    with pytest.raises(CheckpointError):
        CheckpointLoader.load_checkpoint(name, map_location='cpu')
    assert not marker.exists()
    assert all(calls), f'{name} was loaded with weights_only={calls}'


def test_plain_mmengine_objects_are_refused_too(tmp_path):
    checkpoint = tmp_path / 'mmengine.pth'
    torch.save({'state_dict': {}, 'message_hub': {'log_scalars': {'x': HistoryBuffer()}}},
               checkpoint)
    with pytest.raises(UnsafeCheckpointError, match='HistoryBuffer'):
        load_checkpoint_file(checkpoint)


def test_checkpoint_hook_writes_plain_data_and_restores_history_buffers(tmp_path):
    """What mmengine puts in a checkpoint (HistoryBuffers, numpy values) round-trips
    through a weights-only load; the checkpoint's own path (a folder of this machine, and
    one mmengine would follow) is not written."""
    from types import SimpleNamespace

    import numpy as np
    history = HistoryBuffer()
    for value in (0.5, 0.25, 0.125):
        history.update(value)
    checkpoint = {'meta': {'epoch': 1, 'eta': np.float64(2.5)},
                  'message_hub': {'log_scalars': {'train/loss': history},
                                  'runtime_info': {'eta': np.float64(3.0),
                                                   'last_ckpt': str(tmp_path / 'epoch_1.pth')},
                                  'resumed_keys': {'train/loss': True}}}
    hook = WeightsOnlyCheckpointHook()
    hook.before_save_checkpoint(SimpleNamespace(work_dir=str(tmp_path)), checkpoint)
    torch.save(checkpoint, tmp_path / 'epoch_1.pth')
    loaded = load_checkpoint_file(tmp_path / 'epoch_1.pth')
    assert loaded['meta']['eta'] == 2.5 and loaded['message_hub']['runtime_info']['eta'] == 3.0
    assert 'last_ckpt' not in loaded['message_hub']['runtime_info']
    assert str(tmp_path).encode() not in (tmp_path / 'epoch_1.pth').read_bytes()
    hook.after_load_checkpoint(None, loaded)
    restored = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(restored, HistoryBuffer)
    assert restored.data[0].tolist() == [0.5, 0.25, 0.125]
    assert restored.mean() == pytest.approx((0.5 + 0.25 + 0.125) / 3)


def test_plain_state_dict_loads_weights_only(tmp_path):
    checkpoint = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'w': torch.arange(3)}}, checkpoint)
    loaded = load_checkpoint_file(checkpoint)
    assert torch.equal(loaded['state_dict']['w'], torch.arange(3))


@pytest.mark.parametrize('content', [b''] + [random.Random(seed).randbytes(2000)
                                              for seed in range(8)])
def test_a_file_that_is_no_checkpoint_is_called_that(tmp_path, content):
    checkpoint = tmp_path / 'weights.pth'
    checkpoint.write_bytes(content)
    with pytest.raises(CheckpointError, match='is not a readable checkpoint') as error:
        load_checkpoint_file(checkpoint)
    assert not isinstance(error.value, UnsafeCheckpointError)


def test_truncated_checkpoint_is_reported(tmp_path):
    checkpoint = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {'w': torch.ones(1000)}}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(CheckpointError, match='not a readable checkpoint'):
        load_checkpoint_file(checkpoint)


def test_resume_skips_a_checkpoint_cut_short_by_a_kill(tmp_path):
    for epoch in (1, 2, 3):
        torch.save({'state_dict': {'w': torch.ones(100)}}, tmp_path / f'epoch_{epoch}.pth')
    newest = tmp_path / 'epoch_3.pth'
    newest.write_bytes(newest.read_bytes()[:300])
    assert latest_complete_checkpoint(tmp_path) == tmp_path / 'epoch_2.pth'
    assert latest_complete_checkpoint(tmp_path / 'nothing') is None


def test_missing_checkpoint_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_checkpoint_file(tmp_path / 'missing.pth')


def test_a_work_dir_stands_for_its_last_checkpoint_even_when_moved(tmp_path):
    checkpoint = tmp_path / 'epoch_7.pth'
    checkpoint.write_bytes(b'')
    # mmengine's record holds the absolute path the run was written to.
    (tmp_path / 'last_checkpoint').write_text('/elsewhere/work/epoch_7.pth')
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
