import math

import pytest
import torch
from mmpretrain.structures import DataSample

from registry_plugins import build_model_from_config, ensemble_distillation_loss
from registry_plugins.distillation_loss import attention_transfer_loss, union_attention_map

from ..conftest import REPO

TINY_MODEL = REPO / 'configs' / '_base_' / 'models' / 'resnet18_tiny_kt.py'


def softmax(values, temperature):
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def test_distillation_loss_equals_a_hand_computation():
    """Two classes, one image, two teachers, T = 2: T^2 * KL(mean teacher soft || student)."""
    student, teachers, t = [1.0, 0.0], [[2.0, 0.0], [0.0, 2.0]], 2.0
    targets = [sum(p) / 2 for p in zip(*(softmax(z, t) for z in teachers))]
    assert targets == pytest.approx([0.5, 0.5])
    q = softmax(student, t)  # e^0.5 / (e^0.5 + 1) = 0.6225, 0.3775
    kl = sum(p * math.log(p / qi) for p, qi in zip(targets, q))
    loss = ensemble_distillation_loss(torch.tensor([student]),
                                      [torch.tensor([z]) for z in teachers], temperature=t)
    assert loss.item() == pytest.approx(t**2 * kl, rel=1e-6)
    # 0.5 ln(0.5 / 0.62246) + 0.5 ln(0.5 / 0.37754) = 0.030930, times T^2 = 4.
    assert loss.item() == pytest.approx(4 * 0.030930, rel=1e-4)


def test_distillation_loss_is_zero_when_the_student_matches_and_averages_over_the_batch():
    teachers = [torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 5.0]])]
    assert ensemble_distillation_loss(teachers[0].clone(), teachers, 4.0).item() == \
        pytest.approx(0.0, abs=1e-7)
    one = ensemble_distillation_loss(torch.zeros(1, 3), [teachers[0][:1]], 4.0)
    two = ensemble_distillation_loss(torch.zeros(2, 3), [teachers[0][:1].repeat(2, 1)], 4.0)
    assert two.item() == pytest.approx(one.item())


def test_union_map_is_the_renormalised_mean_of_the_resized_maps():
    first = torch.tensor([[[1.0, -1.0], [1.0, -1.0]]])
    second = torch.tensor([[[1.0, 1.0], [-1.0, -1.0]]])
    union = union_attention_map([first, second], torch.Size([2, 2]))
    # mean = [[1, 0], [0, -1]]: zero mean, unbiased std sqrt(2/3).
    expected = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]]) / math.sqrt(2 / 3)
    assert torch.allclose(union, expected)
    # A coarser map is resized to the student's size first.
    coarse = torch.tensor([[[1.0, -1.0]]])
    assert torch.allclose(union_attention_map([coarse], torch.Size([2, 2])),
                          union_attention_map([first], torch.Size([2, 2])))
    student = torch.zeros(1, 2, 2, requires_grad=True)
    loss = attention_transfer_loss(student, [first, second])
    assert loss.item() == pytest.approx((expected**2).mean().item())
    loss.backward()
    assert student.grad is not None


def test_distiller_trains_the_student_only_against_frozen_teachers():
    from mmengine.config import Config
    cfg = Config.fromfile(str(TINY_MODEL))
    cfg.model.type = 'KTDistiller'
    cfg.model.distill_loss = dict(type='EnsembleDistillationLoss', temperature=4.0,
                                  loss_weight=0.9, attention_weight=0.5)
    torch.manual_seed(0)
    student = build_model_from_config(cfg)
    teachers = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        teachers.append(build_model_from_config(TINY_MODEL))
        student.add_teacher(teachers[-1])
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    student.train()
    inputs = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(label) for label in range(4)]
    losses = student.loss(inputs, samples)
    assert set(losses) == {'loss_ce', 'loss_kd', 'loss_at'}
    sum(losses.values()).backward()
    assert all(p.grad is None for t in teachers for p in t.parameters())
    assert all(not t.training for t in teachers)
    assert not any(k.startswith('_teachers') for k in student.state_dict())
    assert len(list(student.parameters())) == len(list(
        build_model_from_config(TINY_MODEL).parameters()))
    for teacher, state in zip(teachers, before):
        assert all(torch.equal(teacher.state_dict()[k], v) for k, v in state.items())
    expected_kd = 0.9 * ensemble_distillation_loss(
        student.head(student.neck(student.backbone(inputs))),
        [t.head(t.neck(t.backbone(inputs))) for t in teachers], 4.0)
    assert losses['loss_kd'].item() == pytest.approx(expected_kd.item(), rel=1e-4)


def test_distiller_without_teachers_is_an_error():
    from mmengine.config import Config
    cfg = Config.fromfile(str(TINY_MODEL))
    cfg.model.type = 'KTDistiller'
    student = build_model_from_config(cfg)
    with pytest.raises(RuntimeError, match='attach them with SequentialTeacherHook'):
        student.loss(torch.randn(2, 3, 32, 32), [DataSample().set_gt_label(0)] * 2)
