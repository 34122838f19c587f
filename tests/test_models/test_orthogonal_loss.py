import pytest
import torch
from mmpretrain.registry import MODELS

import registry_plugins  # noqa: F401

STUDENT = torch.tensor([[[-1.0, 0.5], [2.0, -0.3]]])
TEACHER = torch.tensor([[[0.4, -2.0], [-1.0, 0.0]]])


def build_loss(**kwargs):
    return MODELS.build(dict(type='OrthogonalLoss', **kwargs))


def test_single_teacher_matches_hand_computation():
    # |T| * max(S, 0) = [[0.4 * 0, 2 * 0.5], [1 * 2, 0 * 0]] -> mean 3 / 4 = 0.75.
    assert build_loss(loss_weight=1.0)(STUDENT, [TEACHER]).item() == pytest.approx(0.75)
    assert build_loss()(STUDENT, [TEACHER]).item() == pytest.approx(0.5 * 0.75)


def test_teachers_are_averaged():
    second = torch.full((1, 2, 2), -0.5)  # |T| = 0.5 -> (0.5 * 0.5 + 0.5 * 2) / 4 = 0.3125
    loss = build_loss(loss_weight=0.5)(STUDENT, [TEACHER, second])
    assert loss.item() == pytest.approx(0.5 * (0.75 + 0.3125) / 2)


def test_mean_runs_over_batch_height_and_width_together():
    student = torch.cat([STUDENT, torch.ones(1, 2, 2)])
    teacher = torch.cat([TEACHER, torch.full((1, 2, 2), 2.0)])
    # Sample 2 contributes 2 at each of its 4 positions: (3 + 8) / 8.
    assert build_loss(loss_weight=1.0)(student, [teacher]).item() == pytest.approx(11 / 8)


def test_smaller_teacher_map_is_resized_bilinearly_before_the_absolute_value():
    student = torch.ones(1, 1, 4)
    teacher = torch.tensor([[[-2.0, 2.0]]])
    # Bilinear (align_corners=False) 2 -> 4: [-2, -1, 1, 2]; |.| = [2, 1, 1, 2] -> mean 1.5.
    # Taking |.| first would give 2.0.
    assert build_loss(loss_weight=1.0)(student, [teacher]).item() == pytest.approx(1.5)


def test_adaptive_weighting_equals_alpha_times_ce_in_value_and_scales_the_gradient():
    student = STUDENT.clone().requires_grad_()
    ce = torch.tensor(2.4, requires_grad=True)
    loss = build_loss(loss_weight=0.1, weighting='adaptive')(student, [TEACHER], ce_loss=ce)
    assert loss.item() == pytest.approx(0.1 * 2.4)
    loss.backward()
    assert ce.grad is None  # the rescaling constant is detached
    # d/dS of w * mean(|T| * relu(S)) with w = 0.1 * 2.4 / 0.75.
    expected = 0.1 * 2.4 / 0.75 * TEACHER.abs() * (STUDENT > 0) / 4
    torch.testing.assert_close(student.grad, expected)


def test_adaptive_weighting_needs_the_ce_loss():
    with pytest.raises(ValueError, match='ce_loss'):
        build_loss(weighting='adaptive')(STUDENT, [TEACHER])


def test_adaptive_weighting_of_a_zero_overlap_stays_zero():
    loss = build_loss(weighting='adaptive')(-STUDENT.abs(), [TEACHER], ce_loss=torch.tensor(1.0))
    assert loss.item() == 0.0


def test_gradient_reaches_the_student_and_not_the_teacher():
    student = STUDENT.clone().requires_grad_()
    teacher = TEACHER.clone().requires_grad_()
    build_loss(loss_weight=1.0)(student, [teacher]).backward()
    assert teacher.grad is None
    torch.testing.assert_close(student.grad, TEACHER.abs() * (STUDENT > 0) / 4)


def test_no_teachers_gives_a_graph_connected_zero():
    student = STUDENT.clone().requires_grad_()
    loss = build_loss()(student, [])
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


def test_unknown_weighting_is_rejected():
    with pytest.raises(ValueError, match='weighting'):
        build_loss(weighting='dynamic')
