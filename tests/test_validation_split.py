"""The validation split: stratified, deterministic from the data, K per class, refusals, and
FGVC-Aircraft's official list read from a fake of its layout."""
import collections

import pytest

from ktcli.data.validation_split import (SplitChoice, is_val_split, official_split,
                                         parse_val_split, read_name_list, split_training_set,
                                         stratified_split)
from ktcli.errors import UserError

# 3 classes of 10, 7 and 3 images, interleaved as a list file might order them.
LABELS = [0, 1, 2] * 3 + [0, 1] * 4 + [0] * 3


@pytest.mark.parametrize('text,choice', [
    ('none', SplitChoice()), ('official', SplitChoice(official=True)),
    ('0.2', SplitChoice(fraction=0.2)), ('5', SplitChoice(per_class=5)),
    (' Official ', SplitChoice(official=True)), ('1', SplitChoice(per_class=1))])
def test_parse(text, choice):
    assert parse_val_split(text) == choice


@pytest.mark.parametrize('text', ['0', '1.0', '-0.2', 'nan', 'inf', '0x5', '', 'best',
                                  '2.5e0', '-3'])
def test_parse_refuses(text):
    with pytest.raises(UserError, match='--val-split takes none, official, a fraction'):
        parse_val_split(text)


def test_canonical_text_is_what_a_record_may_hold():
    for text in ('none', 'official', '0.2', '5'):
        assert is_val_split(text) and parse_val_split(text).text() == text
    for value in ('0.20', ' 5', '0', 5, 0.2, None, '../x', 'x' * 40):
        assert not is_val_split(value)


def test_fraction_is_stratified_and_disjoint():
    train, val = stratified_split(LABELS, SplitChoice(fraction=0.3), 'fingerprint-a')
    assert sorted(train + val) == list(range(len(LABELS)))
    assert not set(train) & set(val)
    # round(0.3 * 10) = 3, round(0.3 * 7) = 2, max(1, round(0.9)) = 1.
    assert collections.Counter(LABELS[i] for i in val) == {0: 3, 1: 2, 2: 1}
    assert train == sorted(train) and val == sorted(val)


def test_k_per_class_is_honoured():
    train, val = stratified_split(LABELS, SplitChoice(per_class=2), 'fingerprint-a')
    assert collections.Counter(LABELS[i] for i in val) == {0: 2, 1: 2, 2: 2}
    assert collections.Counter(LABELS[i] for i in train) == {0: 8, 1: 5, 2: 1}


def test_same_fingerprint_same_split_another_fingerprint_another():
    choice = SplitChoice(fraction=0.5)
    first = stratified_split(LABELS, choice, 'fingerprint-a')
    assert stratified_split(LABELS, choice, 'fingerprint-a') == first
    others = {tuple(stratified_split(LABELS, choice, f'fingerprint-{n}')[1]) for n in range(8)}
    assert len(others) > 1


def test_class_with_too_few_images_is_refused_in_one_line():
    with pytest.raises(UserError) as error:
        stratified_split(LABELS, SplitChoice(per_class=3), 'fingerprint-a')
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith('class 2 has 3 training images, too few to validate on 3')
    # K + 1 images are enough.
    stratified_split(LABELS, SplitChoice(per_class=2), 'fingerprint-a')
    with pytest.raises(UserError, match='class 0 has 1 training image, too few'):
        stratified_split([0, 1, 1], SplitChoice(fraction=0.5), 'fingerprint-a')
    with pytest.raises(UserError, match='class red has 1 training image, too few'):
        stratified_split([0, 1, 1], SplitChoice(fraction=0.5), 'fingerprint-a', ('red', 'blue'))


def test_official_split_of_a_fake_aircraft_layout(tmp_path):
    data = tmp_path / 'fgvc-aircraft-2013b' / 'data'
    data.mkdir(parents=True)
    names = ['0001', '0002', '0003', '0004', '0005']
    (data / 'images_variant_trainval.txt').write_text(
        ''.join(f'{name} 707-320\n' for name in names))
    (data / 'images_variant_val.txt').write_text('0004 707-320\n0002 707-320\n')
    val_names = read_name_list(data / 'images_variant_val.txt')
    assert official_split(names, val_names, 'val.txt') == ([0, 2, 4], [1, 3])
    with pytest.raises(UserError, match=r'lists 1 image\(s\) that are not in the training'):
        official_split(names, ['0009'], 'val.txt')
    with pytest.raises(UserError, match='leaves no image to validate or none to train on'):
        official_split(names, names, 'val.txt')


def test_official_is_refused_where_there_is_none(tmp_path):
    with pytest.raises(UserError, match='demo has no official validation split'):
        split_training_set('demo', tmp_path, SplitChoice(official=True), 'x')


def test_a_student_keeps_its_members_split_unless_told_otherwise():
    from types import SimpleNamespace

    from ktcli.stages.settings import DistillSettings, TrainSettings
    from ktcli.stages.stage_config import student_settings
    members = [SimpleNamespace(index=1)]
    settings = TrainSettings(dataset='demo', val_split='0.2', checkpoint='best-val')
    student = student_settings(settings, members, DistillSettings())
    assert (student.val_split, student.checkpoint) == ('0.2', 'best-val')
    assert student_settings(settings, members, DistillSettings(val_split='5')).val_split == '5'


def test_official_split_of_aircraft_as_mmpretrain_reads_its_trainval(tmp_path):
    """A fake FGVC-Aircraft layout (empty images: only the lists are read): the validation
    part is exactly images_variant_val.txt, the training part images_variant_train.txt."""
    data = tmp_path / 'fgvc-aircraft-2013b' / 'data'
    (data / 'images').mkdir(parents=True)
    (data / 'variants.txt').write_text('707-320\nA300B4\n')
    train = ['0001 707-320', '0003 A300B4', '0004 707-320']
    val = ['0002 A300B4', '0005 707-320']
    (data / 'images_variant_trainval.txt').write_text('\n'.join(sorted(train + val)) + '\n')
    (data / 'images_variant_train.txt').write_text('\n'.join(train) + '\n')
    (data / 'images_variant_val.txt').write_text('\n'.join(val) + '\n')
    (data / 'images_variant_test.txt').write_text('0006 707-320\n')
    for number in range(1, 7):
        (data / 'images' / f'000{number}.jpg').write_bytes(b'')
    assert split_training_set('air', data.parent, SplitChoice(official=True), 'x') == (
        [0, 2, 3], [1, 4])
