"""The figures of kt report, checked against hand-computed values (no work dir needed)."""
import numpy as np
import pytest
import torch

from ktcli.errors import UserError
from ktcli.reports.calibration import (expected_calibration_error, negative_log_likelihood,
                                       reliability_bins)
from ktcli.reports.gallery import BOTH_RIGHT, BOTH_WRONG, BROKEN, FIXED, pick_gallery
from ktcli.reports.html_page import table, tag
from ktcli.reports.per_class import per_class_figures
from ktcli.reports.prediction_panels import _font, wrap


def test_ece_of_a_two_bin_case():
    # Bin [0, 0.5): confidences 0.4, 0.4, one right: |0.5 - 0.4| = 0.1 over half the images.
    # Bin [0.5, 1]: confidences 0.9, 0.7, one right: |0.5 - 0.8| = 0.3 over the other half.
    probabilities = torch.tensor([[0.4, 0.3, 0.3], [0.4, 0.35, 0.25],
                                  [0.9, 0.05, 0.05], [0.7, 0.2, 0.1]])
    labels = torch.tensor([0, 1, 0, 2])
    assert expected_calibration_error(probabilities, labels, bins=2) == pytest.approx(
        0.5 * 0.1 + 0.5 * 0.3, abs=1e-6)
    bins = reliability_bins(probabilities, labels, bins=2)
    assert [b['count'] for b in bins] == [2, 2]
    assert bins[0]['confidence'] == pytest.approx(0.4) and bins[0]['accuracy'] == 0.5
    assert bins[1]['confidence'] == pytest.approx(0.8) and bins[1]['accuracy'] == 0.5
    assert negative_log_likelihood(probabilities, labels) == pytest.approx(
        -np.mean(np.log([0.4, 0.35, 0.9, 0.1])), rel=1e-6)


def test_reliability_bins_reproduce_torchmetrics_ece():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.randn(500, 7, generator=generator).mul(2).softmax(dim=1)
    labels = torch.randint(0, 7, (500,), generator=generator)
    bins = reliability_bins(probabilities, labels)
    ece = sum(b['count'] * abs(b['accuracy'] - b['confidence']) for b in bins if b['count'])
    assert ece / 500 == pytest.approx(expected_calibration_error(probabilities, labels),
                                      abs=1e-6)


def test_per_class_accuracy_confusion_gains_and_pairs():
    classes = ['a', 'b', 'c']
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    first = torch.eye(3)[torch.tensor([0, 1, 0, 0, 2, 2])]  # a 1/2, b 0/2, c 2/2
    ensemble = torch.eye(3)[torch.tensor([0, 0, 1, 0, 2, 1])]  # a 2/2, b 1/2, c 1/2
    figures = per_class_figures({'stage 1': first}, ensemble, labels, classes)
    accuracy = {row['name']: row['accuracy'] for row in figures['classes']}
    assert accuracy['a'] == {'stage 1': 50.0, 'ensemble': 100.0}
    assert accuracy['b'] == {'stage 1': 0.0, 'ensemble': 50.0}
    assert accuracy['c'] == {'stage 1': 100.0, 'ensemble': 50.0}
    assert [(g['name'], g['change']) for g in figures['gains']] == [('a', 50.0), ('b', 50.0)]
    assert [(g['name'], g['change']) for g in figures['losses']] == [('c', -50.0)]
    assert np.asarray(figures['confusion']).sum() == len(labels)
    assert {(c['true'], c['predicted'], c['count']) for c in figures['confused']} == {
        ('b', 'a', 1), ('c', 'b', 1)}


def test_gallery_rule_takes_each_kind_in_its_share():
    # 12 images of each kind: model 1 right on the first half, the ensemble on alternate ones.
    labels = torch.zeros(48, dtype=torch.long)
    first_right = torch.arange(48) < 24
    ensemble_right = torch.arange(48) % 2 == 0
    first = torch.where(first_right[:, None], torch.tensor([0.6, 0.4]), torch.tensor([0.4, 0.6]))
    # The ensemble's true-class probability grows with the index among the right ones.
    ensemble = torch.stack([torch.where(ensemble_right, 0.5 + torch.arange(48) / 200,
                                        torch.full((48,), 0.3))], dim=1)
    ensemble = torch.cat([ensemble, 1 - ensemble], dim=1)
    picks = pick_gallery(first, ensemble, labels, 12)
    kinds = [pick.kind for pick in picks]
    assert kinds == [FIXED] * 4 + [BROKEN] * 2 + [BOTH_WRONG] * 3 + [BOTH_RIGHT] * 3
    # Model 1 wrong, ensemble right: the largest rise of the true class first.
    assert [pick.index for pick in picks[:4]] == [46, 44, 42, 40]
    assert pick_gallery(first, ensemble, labels, 12) == picks
    # No image of a kind: its share goes to the next kinds, and the count still holds.
    only_right = pick_gallery(first[:24:2], ensemble[:24:2], labels[:12], 5)
    assert [pick.kind for pick in only_right] == [BOTH_RIGHT] * 5


def test_class_names_wrap_without_losing_a_character():
    name = 'crested-yellow-plain-fantail-blackleg of the Averyveryverylongislandname 87%'
    lines = wrap(name, 120)
    assert all(_font().getlength(line) <= 120 for line in lines)
    assert ''.join(lines).replace(' ', '') == name.replace(' ', '')


def test_html_escapes_what_it_reads():
    cell = '<script>alert(1)</script>'
    html = table(['class'], [[cell]]) + tag('b', cell, data_true='"><img src=x>')
    assert '<script>' not in html and '<img' not in html
    assert '&lt;script&gt;' in html


def test_gradcam_maps_have_the_input_shape_and_repeat_exactly():
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from ktcli.reports.gradcam import gradcam_maps, gradcam_target_layer
    from registry_plugins.trained_model import build_model_from_config
    from .conftest import TINY_CONFIG

    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = build_model_from_config(Config.fromfile(str(TINY_CONFIG))).eval()
    name, _ = gradcam_target_layer(model)
    assert name == 'backbone.layer4'
    inputs = torch.randn(3, 3, 48, 40)
    classes = torch.tensor([0, 5, 19])
    first = gradcam_maps(model, inputs, classes)
    assert first.shape == (3, 48, 40) and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1 and first.max() > 0
    assert np.array_equal(first, gradcam_maps(model, inputs, classes))
    assert not np.array_equal(first[0], gradcam_maps(model, inputs[:1], classes[1:2])[0])


def test_gradcam_refuses_an_unknown_backbone():
    from ktcli.reports.gradcam import gradcam_target_layer
    model = torch.nn.Module()
    model.backbone = torch.nn.Linear(2, 2)
    with pytest.raises(UserError, match='no target layer for a Linear backbone'):
        gradcam_target_layer(model)


@pytest.mark.parametrize('model_format', ['onnx', 'torchscript'])
def test_export_metadata_is_read_without_loading_the_model(exported, model_format, tmp_path):
    from ktcli.reports.run_facts import export_metadata
    from .test_export import read_back

    path = exported[model_format]
    assert export_metadata(path) == read_back(path)
    link = tmp_path / path.name
    link.symlink_to(path)
    assert export_metadata(link) is None
