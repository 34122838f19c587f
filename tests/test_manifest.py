"""The work dir's manifest (ktcli/stages/manifest.py): a locked cache of the stage records,
rebuilt from the stage directories, never written by a read-only command."""
import json

import pytest

from ktcli.stages.manifest import Manifest
from ktcli.stages.records import LOCK_NAME, MANIFEST_NAME, RESULTS_NAME, STAGE_LINK, stage_paths

FIRST, SECOND = '0123456789abcdef', 'fedcba9876543210'


def trained(work_dir, *digests) -> Manifest:
    """A work dir whose stages are done, chained in order and linked as kt train links them."""
    work_dir.mkdir(exist_ok=True)
    manifest = Manifest(work_dir)
    for index, digest in enumerate(digests, start=1):
        paths = stage_paths(digest)
        (work_dir / paths['dir']).mkdir(parents=True)
        (work_dir / paths['checkpoint']).write_bytes(b'weights')
        manifest.update(digest, **paths, index=index, status='done', epochs=1)
        (work_dir / STAGE_LINK.format(index)).symlink_to(paths['dir'])
    manifest.set_sequence(list(digests), 'train')
    return manifest


def test_an_update_is_written_to_the_stage_and_the_manifest(tmp_path):
    manifest = trained(tmp_path, FIRST, SECOND)
    saved = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert saved['chain'] == [FIRST, SECOND] and saved['sequence_command'] == 'train'
    assert json.loads((tmp_path / stage_paths(FIRST)['dir'] / 'stage.json').read_text())[
        'status'] == 'done'
    assert manifest.is_done(FIRST)
    (tmp_path / stage_paths(SECOND)['checkpoint']).unlink()
    assert not manifest.is_done(SECOND)  # done, but its checkpoint is gone


def test_another_writers_change_is_kept(tmp_path):
    first, second = trained(tmp_path, FIRST), Manifest(tmp_path)
    second.update(SECOND, label='from the other writer')
    first.update(FIRST, top1=50.0)  # rereads under the lock: the other change survives
    assert Manifest(tmp_path).stage(SECOND)['label'] == 'from the other writer'
    assert Manifest(tmp_path).stage(FIRST)['top1'] == 50.0


def test_a_failed_check_leaves_the_record_as_it_was(tmp_path):
    manifest = trained(tmp_path, FIRST)

    def refuse(record):
        assert record['status'] == 'done'
        raise RuntimeError('claimed elsewhere')

    with pytest.raises(RuntimeError, match='claimed elsewhere'):
        manifest.update(FIRST, check=refuse, status='running')
    assert Manifest(tmp_path).stage(FIRST)['status'] == 'done'


def test_an_ablation_does_not_replace_the_sequence_kt_train_made_current(tmp_path):
    manifest = trained(tmp_path, FIRST)
    assert not manifest.set_sequence([SECOND], 'ablate')
    assert Manifest(tmp_path).chain == [FIRST]
    fresh = Manifest(tmp_path / 'other')
    fresh.update(SECOND, status='done')
    # Where kt train made no sequence current, the ablation's becomes it.
    assert fresh.set_sequence([SECOND], 'ablate') and fresh.sequence_command == 'ablate'


def test_a_broken_manifest_is_rebuilt_from_the_stage_directories(tmp_path, capsys):
    trained(tmp_path, FIRST, SECOND)
    (tmp_path / RESULTS_NAME).write_text('{}')
    (tmp_path / MANIFEST_NAME).write_text('{"format": 3, "stag')
    manifest = Manifest(tmp_path)
    assert 'rebuilt it from 2 stage directories' in capsys.readouterr().err
    assert manifest.chain == [FIRST, SECOND] and manifest.sequence_command == 'train'
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())['chain'] == [FIRST, SECOND]


def test_a_read_only_manifest_rebuilds_in_memory_and_never_writes(tmp_path, capsys):
    trained(tmp_path, FIRST, SECOND)
    (tmp_path / MANIFEST_NAME).write_text('not json')
    (tmp_path / LOCK_NAME).unlink()
    manifest = Manifest(tmp_path, writable=False)
    assert 'rebuilt it from 2 stage directories' in capsys.readouterr().err
    assert manifest.chain == [FIRST, SECOND] and manifest.is_done(SECOND)
    assert (tmp_path / MANIFEST_NAME).read_text() == 'not json'
    assert not (tmp_path / LOCK_NAME).exists()
    with pytest.raises(RuntimeError, match='opened read-only'):
        manifest.update(FIRST, top1=1.0)
    with pytest.raises(RuntimeError, match='opened read-only'):
        manifest.set_sequence([FIRST], 'train')
    assert (tmp_path / MANIFEST_NAME).read_text() == 'not json'
