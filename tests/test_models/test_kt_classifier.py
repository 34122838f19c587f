import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmpretrain.models import ImageClassifier
from mmpretrain.structures import DataSample

from registry_plugins import build_model_from_config, orthogonal_loss, spatial_attention_map

from ..conftest import REPO

TINY_MODEL = REPO / 'configs' / '_base_' / 'models' / 'resnet18_tiny_kt.py'


@pytest.fixture
def student():
    torch.manual_seed(0)
    return build_model_from_config(TINY_MODEL)


def make_teacher(seed: int):
    torch.manual_seed(seed)
    model = build_model_from_config(TINY_MODEL)
    model.init_weights()
    return model


def batch(size: int = 4):
    inputs = torch.randn(size, 3, 32, 32)
    samples = [DataSample().set_gt_label(label) for label in range(size)]
    return inputs, samples


def test_without_teachers_only_cross_entropy_is_returned(student):
    losses = student.loss(*batch())
    assert set(losses) == {'loss_ce'}


def test_or_loss_is_computed_on_student_and_teacher_maps(student):
    teacher = make_teacher(1)
    student.add_teacher(teacher)
    inputs, samples = batch()
    student.eval()  # fixed BatchNorm statistics, so the recomputation below is exact
    losses = student.loss(inputs, samples)
    assert set(losses) == {'loss_ce', 'loss_or'}
    student_map = spatial_attention_map(student.backbone(inputs)[-1])
    teacher_map = spatial_attention_map(teacher.backbone(inputs)[-1])
    expected = 0.5 * orthogonal_loss(student_map, [teacher_map])
    torch.testing.assert_close(losses['loss_or'], expected)
    assert losses['loss_or'].item() > 0


def test_teachers_are_frozen_hidden_and_stay_in_eval_mode(student):
    keys = set(student.state_dict())
    num_params = len(list(student.parameters()))
    teacher = make_teacher(1)
    student.add_teacher(teacher)
    assert student.teachers == (teacher, )
    assert set(student.state_dict()) == keys
    assert len(list(student.parameters())) == num_params
    student.train()
    assert not any(module.training for module in teacher.modules())
    assert all(module.training for module in student.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    student.loss(*batch())['loss_or'].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.backbone.conv1.weight.grad is not None


def test_teachers_move_with_the_student(student):
    student.add_teacher(make_teacher(1))
    student.to(torch.float64)
    assert next(student.teachers[0].parameters()).dtype == torch.float64


def test_predict_and_tensor_modes_match_image_classifier(student):
    student.add_teacher(make_teacher(1))
    plain = ImageClassifier(
        backbone=dict(type='ResNet', depth=18, stem_channels=16, base_channels=16,
                      strides=(1, 1, 2, 1), out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=20, in_channels=128))
    plain.load_state_dict(student.state_dict())
    student.eval(), plain.eval()
    inputs, _ = batch()
    torch.testing.assert_close(student(inputs, mode='tensor'), plain(inputs, mode='tensor'))
    ours, theirs = student.predict(inputs), plain.predict(inputs)
    torch.testing.assert_close(torch.stack([s.pred_score for s in ours]),
                               torch.stack([s.pred_score for s in theirs]))


def test_attention_map_is_the_student_map(student):
    student.eval()
    inputs, _ = batch(2)
    maps = student.attention_map(inputs)
    assert maps.shape == (2, 4, 4)  # 32 px / 8
    torch.testing.assert_close(maps, spatial_attention_map(student.backbone(inputs)[-1]))


def test_logits_and_attention_come_from_one_pass(student):
    student.eval()
    inputs, _ = batch(2)
    logits, maps = student.logits_and_attention(inputs)
    torch.testing.assert_close(logits, student(inputs, mode='tensor'))
    torch.testing.assert_close(maps, student.attention_map(inputs))


def test_channels_last_training_steps_match_the_default_format():
    data = dict(inputs=torch.randn(4, 3, 32, 32),
                data_samples=[DataSample().set_gt_label(label) for label in range(4)])
    runs = {}
    for channels_last in (False, True):
        cfg = Config.fromfile(str(TINY_MODEL))
        cfg.model.channels_last = channels_last
        torch.manual_seed(0)
        model = build_model_from_config(cfg)
        model.init_weights()
        model.add_teacher(make_teacher(1))
        optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        losses = [model.train_step(data, optim_wrapper) for _ in range(2)]
        runs[channels_last] = model, losses
    (plain, plain_losses), (nhwc, nhwc_losses) = runs[False], runs[True]
    for model in (nhwc, nhwc.teachers[0]):
        assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for expected, actual in zip(plain_losses, nhwc_losses):
        assert set(actual) == {'loss', 'loss_ce', 'loss_or'}
        for name in expected:
            torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)
    for (name, expected), actual in zip(plain.state_dict().items(), nhwc.state_dict().values()):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5, msg=name)
    plain.eval(), nhwc.eval()
    torch.testing.assert_close(nhwc(data['inputs']), plain(data['inputs']), rtol=1e-4, atol=1e-5)


def lite0_student() -> torch.nn.Module:
    """The demo's model (random weights): EfficientNet-Lite0, five stages frozen, stride 16."""
    cfg = Config.fromfile(str(REPO / 'configs' / '_base_' / 'models' / 'efficientnet_lite0_kt.py'))
    cfg.model.backbone.update(init_cfg=None, output_stride=16, frozen_stages=5)
    cfg.model.head.num_classes = 20
    return build_model_from_config(cfg)


def test_teachers_with_the_students_frozen_weights_start_from_its_frozen_features():
    """A teacher of the same frozen weights (a later stage of one pretrained model) skips its
    frozen pass and gets the maps of its whole backbone; a teacher whose frozen weights
    differ runs all of it; the OR-loss is the one of the maps computed in full."""
    torch.manual_seed(0)
    student = lite0_student()
    sharing = lite0_student()
    sharing.backbone.load_state_dict(student.backbone.state_dict())
    with torch.no_grad():
        for parameter in sharing.backbone.timm_model.blocks[5].parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))  # trained apart from the student
    other = lite0_student()
    other.backbone.load_state_dict(sharing.backbone.state_dict())
    with torch.no_grad():
        other.backbone.timm_model.blocks[0][0].conv_dw.weight.mul_(1.01)  # a frozen weight
    for teacher in (sharing, other):
        student.add_teacher(teacher)
    assert student._teacher_shares_frozen == [True, False]

    stems = {name: 0 for name in ('sharing', 'other')}
    for name, teacher in (('sharing', sharing), ('other', other)):
        teacher.backbone.timm_model.conv_stem.register_forward_hook(
            lambda *_, name=name: stems.__setitem__(name, stems[name] + 1))
    inputs = torch.randn(2, 3, 64, 64)
    samples = [DataSample().set_gt_label(label) for label in range(2)]
    student.eval()  # fixed statistics: the maps below are recomputed exactly
    losses = student.loss(inputs, samples)
    assert stems == {'sharing': 0, 'other': 1}
    with torch.inference_mode():
        full_maps = [spatial_attention_map(t.backbone(inputs)[-1]) for t in (sharing, other)]
    assert stems == {'sharing': 1, 'other': 2}
    shared_maps = student.teacher_attention_maps(inputs, student.backbone.frozen_features(inputs))
    for shared, full in zip(shared_maps, full_maps):
        torch.testing.assert_close(shared, full, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(full_maps[0], full_maps[1])
    student_map = spatial_attention_map(student.backbone(inputs)[-1])
    torch.testing.assert_close(losses['loss_or'],
                               0.5 * orthogonal_loss(student_map, [m.clone() for m in full_maps]),
                               rtol=1e-4, atol=1e-6)
