"""A checkpoint picked on the test set is labelled wherever kt prints or writes its figures."""
import io
import json

import numpy as np
from rich.console import Console

from ktcli.commands.ablate import checkpoint_record
from ktcli.commands.train import print_results, write_results
from ktcli.sequencing.sequence import SplitScores, StageResult
from ktcli.stages.settings import TrainSettings
from ktcli.stages.validation_config import checkpoint_note

HITS = np.array([True, False, True, True])


def results(validated=False):
    scores = SplitScores(50.0, 50.0, HITS[:2], HITS[:2]) if validated else None
    return [StageResult(1, 'a' * 16, False, 75.0, 75.0, None, 61.0, HITS, HITS, scores)]


def printed(title, stage_results):
    console = Console(file=io.StringIO(), width=200)
    print_results(console, stage_results, title)
    return console.file.getvalue()


def test_best_test_is_labelled_in_the_table_and_results_json(tmp_path):
    settings = TrainSettings(dataset='demo', checkpoint='best-test')
    text = printed(f'demo{checkpoint_note("best-test")}', results())
    assert 'demo; checkpoint: best epoch on test (selected on the test set)' in text
    data = json.loads(write_results(tmp_path, settings, results()).read_text())
    assert data['checkpoint'] == dict(rule='best-test',
                                      label='best epoch on test (selected on the test set)')
    assert checkpoint_record('best-test')['label'].endswith('(selected on the test set)')


def test_the_last_epoch_adds_nothing_and_validation_sits_beside_test(tmp_path):
    assert checkpoint_note('last') == ''
    data = json.loads(write_results(tmp_path, TrainSettings(dataset='demo'),
                                    results()).read_text())
    assert 'checkpoint' not in data and 'val_top1' not in data['stages'][0]
    data = json.loads(write_results(tmp_path, TrainSettings(dataset='demo', val_split='0.2'),
                                    results(validated=True)).read_text())
    assert data['stages'][0]['val_top1'] == 50.0 and data['stages'][0]['top1'] == 75.0
    assert data['stages'][0]['val_images'] == 2 and data['settings']['val_split'] == '0.2'
    text = printed('demo', results(validated=True))
    assert 'val top-1 (single)' in text and 'test top-1 (single)' in text


def test_the_report_names_a_val_loop_on_the_test_set_as_such():
    from ktcli.reports.training_curves import TEST_CURVE, VALIDATION_CURVE, val_loop_curve
    scalars = {VALIDATION_CURVE: [(1, 50.0), (2, 60.0)], 'loss_ce': [(5, 1.0)]}
    assert val_loop_curve(scalars, 'test') == {TEST_CURVE: [(1, 50.0), (2, 60.0)],
                                               'loss_ce': [(5, 1.0)]}
    assert TEST_CURVE == 'test top-1 (selected on the test set)'
    assert val_loop_curve(scalars, 'validation') == scalars
    assert val_loop_curve(scalars, None) == scalars
