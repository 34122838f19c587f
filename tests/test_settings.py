"""What a user sets (ktcli/stages/settings.py): seeds, backbones per stage, the record form."""
import dataclasses
import hashlib

import pytest

from ktcli.data.fingerprint import DataFingerprint
from ktcli.errors import UserError
from ktcli.stages.records import check_settings
from ktcli.stages.settings import SEEDS_PER_SEQUENCE, TrainSettings, parse_cfg_options, stage_seed

FINGERPRINT = DataFingerprint('demo', '0123456789abcdef', 'fedcba9876543210', 300)


def test_stage_seeds_are_consecutive_in_a_sequence_and_disjoint_between_seeds():
    assert SEEDS_PER_SEQUENCE == 1000
    assert [stage_seed(0, k) for k in (1, 2, 3)] == [0, 1, 2]
    assert [stage_seed(2, k) for k in (1, 5)] == [2000, 2004]
    assert stage_seed(1, SEEDS_PER_SEQUENCE) == 1999  # the last of seed 1, below seed 2's
    with pytest.raises(UserError, match='seeds are non-negative'):
        stage_seed(-1, 1)
    with pytest.raises(UserError, match='at most 1000 stages'):
        stage_seed(0, SEEDS_PER_SEQUENCE + 1)


def test_each_stage_takes_its_backbone_and_the_last_repeats():
    settings = TrainSettings('demo', backbone=' resnet18_tiny , ,efficientnet_lite0')
    assert [settings.backbone_of(k) for k in (1, 2, 3)] == [
        'resnet18_tiny', 'efficientnet_lite0', 'efficientnet_lite0']
    with pytest.raises(UserError, match='names no backbone'):
        TrainSettings('demo', backbone=' , ').backbone_of(1)


def test_cfg_options_are_parsed_like_mmengine():
    assert parse_cfg_options(['a.b=1', 'c=[1,2]', 'd=x']) == {'a.b': 1, 'c': [1, 2], 'd': 'x'}
    with pytest.raises(UserError, match='KEY=VALUE'):
        parse_cfg_options(['novalue'])


def test_the_record_names_no_folder_and_reads_back_as_the_same_settings(tmp_path):
    weights = tmp_path / 'weights.pth'
    weights.write_bytes(b'some weights')
    settings = TrainSettings('demo', data_root=str(tmp_path / 'data'), pretrained=str(weights),
                             cfg_options=(('model.head.loss.loss_weight', 2.0), ),
                             vis_backends=('tensorboard', ), data_fingerprint=FINGERPRINT)
    record = settings.to_record()
    assert 'data_root' not in record and str(tmp_path) not in repr(record)
    # A file by the sha256 of its bytes: the same weights anywhere give the same record.
    assert record['pretrained'] == ('pretrained-file:'
                                    + hashlib.sha256(b'some weights').hexdigest()[:16])
    assert record['cfg_options'] == [['model.head.loss.loss_weight', 2.0]]
    assert record['data_fingerprint'] == dict(dataset='demo', train='0123456789abcdef',
                                              test='fedcba9876543210', images=300)
    assert check_settings(record, 'stage.json') is record
    back = TrainSettings.from_record(record)
    assert back == dataclasses.replace(settings, data_root='', pretrained=record['pretrained'])


def test_a_url_is_recorded_by_its_digest_and_unknown_settings_are_refused():
    url = 'https://example.org/weights.pth'
    record = TrainSettings('demo', pretrained=url).to_record()
    assert record['pretrained'] == 'pretrained-url:' + hashlib.sha256(url.encode()).hexdigest()[:16]
    with pytest.raises(UserError, match=r"unknown training settings \['future_option'\]"):
        TrainSettings.from_record(dict(record, future_option=1))
