"""The on-disk contract (ktcli/stages/records.py): the layout, stage.json, and the checks of
every value read back."""
import json

import pytest

from ktcli.stages.records import (CONFIG_DATA, FORMAT_VERSION, MANIFEST_NAME, STAGE_RECORD,
                                  STAGES_DIR, OlderWorkDirError, RecordError, check_manifest,
                                  check_record, check_settings, read_stage_record, record_paths,
                                  stage_paths, write_stage_record)
from ktcli.stages.settings import TrainSettings

DIGEST = '0123456789abcdef'
OTHER = 'fedcba9876543210'


def record(**fields) -> dict:
    return dict(dict(digest=DIGEST, **stage_paths(DIGEST, 'epoch_3.pth'), status='done',
                     epochs=3, index=1, teachers=[]), **fields)


def test_the_layout_is_stages_digest_with_its_config_and_checkpoint():
    assert STAGES_DIR == 'stages' and CONFIG_DATA == 'config.json'
    assert stage_paths(DIGEST) == dict(dir=f'stages/{DIGEST}',
                                       config=f'stages/{DIGEST}/config.json',
                                       checkpoint=f'stages/{DIGEST}/epoch_1.pth')
    # The checkpoint a record names, in the stage's own folder whatever folder it says.
    assert record_paths(DIGEST, dict(checkpoint='elsewhere/best.pth'))['checkpoint'] == \
        f'stages/{DIGEST}/best.pth'
    assert record_paths(DIGEST, None) == stage_paths(DIGEST)


def test_a_record_as_kt_writes_it_is_accepted():
    written = record(settings=TrainSettings('demo', backbone='resnet18_tiny').to_record())
    assert check_record(written, 'stage.json') is written


@pytest.mark.parametrize('field, value, message', [
    ('digest', '../../etc', 'digest must be 16 hex digits'),
    ('dir', '/tmp/elsewhere', "dir must be 'stages/0123456789abcdef'"),
    ('config', f'stages/{OTHER}/config.json', 'config must be'),
    ('checkpoint', f'stages/{DIGEST}/../../x.pth', 'checkpoint must be an epoch_N.pth'),
    ('checkpoint', f'stages/{DIGEST}/model.pkl', 'checkpoint must be an epoch_N.pth'),
    ('status', 'adopted', 'status must be one of queued, running'),
    ('epochs', 0, 'epochs must be a number of epochs'),
    ('epochs', True, 'epochs must be a number of epochs'),
    ('teachers', ['not a digest'], 'teachers must be a list of stage digests'),
    ('top1', 101, 'top1 must be an accuracy'),
    ('job_id', '12; rm -rf ~', 'job_id must be a Slurm job id'),
    ('kind', 'teacher', "kind must be 'distilled'"),
])
def test_a_field_kt_cannot_use_is_refused_naming_it(field, value, message):
    with pytest.raises(RecordError, match=message):
        check_record(record(**{field: value}), 'stage.json')


@pytest.mark.parametrize('change, message', [
    (dict(data_root='/home/someone/data'), 'data_root is never recorded'),
    (dict(backbone='../../model'), 'backbone must be'),
    (dict(pretrained='https://example.org/w.pth'), 'pretrained must be'),
    (dict(epochs='10'), 'epochs must be an integer'),
    (dict(dataset='imagenet'), 'dataset must be one of'),
    (dict(checkpoint='best-train'), 'checkpoint must be one of last, best-val, best-test'),
])
def test_settings_of_another_type_or_meaning_are_refused(change, message):
    settings = dict(TrainSettings('demo').to_record(), **change)
    with pytest.raises(RecordError, match=message):
        check_settings(settings, 'stage.json: settings')


def test_stage_json_round_trips_and_must_be_its_folders(tmp_path):
    folder = tmp_path / STAGES_DIR / DIGEST
    folder.mkdir(parents=True)
    assert read_stage_record(folder) is None
    write_stage_record(folder, record())
    assert json.loads((folder / STAGE_RECORD).read_text())['digest'] == DIGEST
    assert read_stage_record(folder) == record()
    moved = tmp_path / STAGES_DIR / OTHER
    (folder).rename(moved)
    with pytest.raises(RecordError, match="is not its folder's"):
        read_stage_record(moved)


def test_the_manifest_is_checked_whole():
    stages = {DIGEST: record()}
    good = dict(format=FORMAT_VERSION, stages=stages, chain=[DIGEST])
    assert check_manifest(good, MANIFEST_NAME) is good
    assert check_manifest(dict(good, format=2), MANIFEST_NAME)['format'] == 2
    with pytest.raises(OlderWorkDirError, match='format 1.*train again in a new work dir'):
        check_manifest(dict(good, format=1), MANIFEST_NAME)
    with pytest.raises(RecordError, match=f'chain names stage {OTHER}, which has no record'):
        check_manifest(dict(good, chain=[DIGEST, OTHER]), MANIFEST_NAME)
    with pytest.raises(RecordError, match=f'stages.{OTHER} records stage {DIGEST}'):
        check_manifest(dict(good, stages={OTHER: record()}), MANIFEST_NAME)
    with pytest.raises(RecordError, match='sequence_command must be one of'):
        check_manifest(dict(good, sequence_command='export'), MANIFEST_NAME)
