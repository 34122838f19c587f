"""Members and teachers whose weights expect different input normalisations share one batch."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ktcli.deployment.ensemble_module import EnsembleModule
from registry_plugins import InputRenormalisation, build_model_from_config

from ..conftest import TINY_CONFIG

IMAGENET = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
HALF = ([127.5] * 3, [127.5] * 3)


def tiny(normalisation, seed, to_rgb=True):
    cfg = Config.fromfile(str(TINY_CONFIG))
    mean, std = normalisation
    cfg.model.data_preprocessor = dict(mean=mean, std=std, to_rgb=to_rgb)
    init_default_scope('mmpretrain')
    torch.manual_seed(seed)
    model = build_model_from_config(cfg)
    model.init_weights()
    return model.eval()


def normalised(images, normalisation):
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalisation)
    return (images - mean) / std


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.rand(4, 3, 32, 32) * 255


def test_renormalisation_maps_one_normalisation_onto_another(images):
    renormalise = InputRenormalisation(IMAGENET, HALF)
    torch.testing.assert_close(renormalise(normalised(images, IMAGENET)),
                               normalised(images, HALF), rtol=0, atol=1e-5)
    same = InputRenormalisation(HALF, HALF)
    batch = normalised(images, HALF)
    assert same.identity and same(batch) is batch


def test_teacher_sees_the_batch_normalised_its_own_way(images):
    student, teacher = tiny(HALF, seed=1), tiny(IMAGENET, seed=2)
    student.add_teacher(teacher)
    (actual, ) = student.teacher_attention_maps(normalised(images, HALF))
    with torch.no_grad():
        expected = teacher.attention(teacher.backbone(normalised(images, IMAGENET))[-1])
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_teacher_with_another_channel_order_is_refused():
    student = tiny(HALF, seed=1)
    with pytest.raises(ValueError, match='RGB input and the other BGR'):
        student.add_teacher(tiny(HALF, seed=2, to_rgb=False))


def test_ensemble_feeds_each_member_its_own_normalisation(images):
    first, second = tiny(HALF, seed=1), tiny(IMAGENET, seed=2)
    with torch.no_grad():
        expected = torch.stack([
            first(normalised(images, HALF), mode='tensor').softmax(1),
            second(normalised(images, IMAGENET), mode='tensor').softmax(1)]).mean(0)
        module = EnsembleModule([first, second]).eval()
        torch.testing.assert_close(module(normalised(images, HALF)), expected,
                                   rtol=1e-4, atol=1e-6)
        raw = EnsembleModule([first, second], include_preprocessing=True).eval()
        torch.testing.assert_close(raw(images), expected, rtol=1e-4, atol=1e-6)
