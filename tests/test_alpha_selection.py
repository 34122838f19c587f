"""``kt ablate alpha --select-on``: the alpha chosen from hand-built validation outputs, the
mean over seeds, ties, and the labels of a choice made on the test set."""
import numpy as np
import pytest
import torch

from ktcli.commands.ablate import choice_text, marked_row_note
from ktcli.errors import UserError
from ktcli.reports.alpha_selection import choose_alpha, validation_ensembles
from ktcli.scoring.ensemble_figures import ensemble_rows
from ktcli.scoring.paired_statistics import compare_replicates
from ktcli.sequencing.sequence import SplitScores, StageResult

LABELS = torch.tensor([0, 1, 2, 0, 1])


def outputs(predictions, confidence):
    """Validation outputs whose top-1 predictions are ``predictions``, with the logit
    ``confidence`` above the other classes."""
    logits = torch.zeros(len(predictions), 3)
    logits[torch.arange(len(predictions)), torch.tensor(predictions)] = confidence
    return dict(logits=logits, labels=LABELS, attention=torch.rand(len(predictions), 2, 2))


def last_result(first, second):
    """A 2-stage sequence's last result, scored on validation from its outputs."""
    rows = ensemble_rows([outputs(first, 1.0), outputs(second, 6.0)], [1, 2],
                         ['a' * 16, 'b' * 16])
    row = rows[-1]
    hits = np.ones(5, dtype=bool)
    return StageResult(2, 'b' * 16, False, 0.0, 0.0, None, 0.0, hits, hits,
                       SplitScores(row.top1, row.ensemble_top1, row.correct,
                                   row.ensemble_correct))


def test_val_picks_the_alpha_the_validation_outputs_say():
    shared = [0, 1, 2, 0, 1]  # stage 1, right on all five
    # The ensemble averages softmaxes, and model 2 is far more confident than model 1: the
    # ensemble answers as model 2 does.
    last = {0.0: [last_result(shared, [1, 0, 0, 1, 0]), last_result(shared, [0, 1, 2, 0, 1])],
            0.5: [last_result(shared, [0, 1, 2, 0, 1]), last_result(shared, [0, 1, 2, 0, 1])],
            1.0: [last_result(shared, [0, 0, 0, 0, 0]), last_result(shared, [0, 1, 2, 0, 1])]}
    scores = validation_ensembles(last)
    assert scores[0.5] == [100.0, 100.0]
    assert scores[0.0] == [0.0, 100.0] and scores[1.0] == [40.0, 100.0]
    choice = choose_alpha(scores, 'val')
    assert choice.alpha == 0.5 and choice.scores == {0.0: 50.0, 0.5: 100.0, 1.0: 70.0}
    assert choice.to_dict()['label'] == 'alpha chosen on validation'


def test_the_mean_over_seeds_decides_and_a_tie_keeps_the_smaller_alpha():
    # alpha 1 wins one seed by far, alpha 0.5 wins on the mean.
    assert choose_alpha({0.0: [70, 70], 0.5: [80, 79], 1.0: [90, 60]}, 'val').alpha == 0.5
    assert choose_alpha({0.0: [80.0], 0.5: [80.0], 1.0: [79.0]}, 'val').alpha == 0.0
    with pytest.raises(UserError, match='--select-on takes val or test'):
        choose_alpha({0.0: [1.0]}, 'train')


def test_val_without_a_validation_split_is_one_line():
    hits = np.ones(3, dtype=bool)
    plain = StageResult(2, 'b' * 16, False, 0.0, 0.0, None, 0.0, hits, hits)
    with pytest.raises(UserError, match='^--select-on val needs a validation split: add '
                       '--val-split 0.2'):
        validation_ensembles({0.0: [plain]})


def test_a_choice_on_test_is_labelled_in_the_table_the_line_and_the_json():
    choice = choose_alpha({0.0: [70.0], 1.0: [72.5]}, 'test')
    assert choice.alpha == 1.0
    assert 'selected on the test set' in choice.to_dict()['label']
    assert marked_row_note(choice) == '* selected on the test set; '
    assert marked_row_note(choose_alpha({0.0: [1.0]}, 'val')) == '* not used for the choice; '
    assert marked_row_note(None) == ''
    correct = np.zeros((1, 40), dtype=bool)
    correct[0, :29] = True
    reference = np.zeros((1, 40), dtype=bool)
    reference[0, :28] = True
    line = choice_text(choice, {1.0: compare_replicates(correct, reference, 'alpha 1',
                                                        'alpha 0')}, 1)
    assert line.startswith('alpha chosen on the test set (selected on the test set): alpha 1 '
                           '(mean test ensemble top-1 72.50 over 1 seed); its test ensemble '
                           'vs alpha 0: ')
    assert '+2.50' in line and 'not resolved' in line
    val = choose_alpha({0.0: [70.0], 1.0: [60.0]}, 'val')
    assert choice_text(val, {}, 2).endswith('alpha 0 is the reference: the OR-loss is not '
                                            'chosen')
