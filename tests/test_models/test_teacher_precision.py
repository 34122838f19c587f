"""Teachers in bfloat16: their maps and the OR-loss against float32 on a real trained model.

Student and teacher are EfficientNet-Lite0 with its ImageNet weights (shipped by a pip
package), at the demo's setting (128 px, output stride 16: 8 x 8 maps, the student's first
five stages frozen), on 8 demo images of 8 species. Measured on the CPU (bf16 autocast,
torch 2.14), bf16 against fp32 teachers:

- teacher maps (normalised: mean 0, std 1 per image): max |diff| 0.070, mean |diff| 0.015;
- OR-loss (student in training mode, alpha 0.5): relative difference 2.1e-3;
- the student's gradient (CE + OR): |g_bf16 - g_fp32| / |g_fp32| = 3.9e-3.

The tolerances leave margins of 3.3x (maps), 4.8x (OR-loss) and 7.7x (gradient) over these
numbers, for CPUs whose bf16 kernels round differently. (fp16 is about ten times closer:
max |diff| 0.009; ``auto`` picks bf16 on GPUs for its float32 range.)
"""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample
from PIL import Image

from registry_plugins import build_model_from_config, orthogonal_loss
from registry_plugins.efficientnet_lite_weights import efficientnet_lite0_state_dict
from registry_plugins.teacher_precision import teacher_autocast_dtype, teacher_precision_name

from ..conftest import REPO

LITE0 = REPO / 'configs' / '_base_' / 'models' / 'efficientnet_lite0_kt.py'
TINY_MODEL = REPO / 'configs' / '_base_' / 'models' / 'resnet18_tiny_kt.py'
MAP_MAX_ABS, MAP_MEAN_ABS = 0.25, 0.05
OR_LOSS_RTOL = 1e-2
GRADIENT_RTOL = 3e-2


def lite0(frozen_stages: int = -1) -> torch.nn.Module:
    cfg = Config.fromfile(str(LITE0))
    cfg.model.backbone.update(init_cfg=None, output_stride=16, frozen_stages=frozen_stages)
    cfg.model.head.num_classes = 20
    model = build_model_from_config(cfg)
    weights = {name: value for name, value in efficientnet_lite0_state_dict().items()
               if not name.startswith('classifier.')}
    model.backbone.timm_model.load_state_dict(weights, strict=True)
    return model


@pytest.fixture(scope='module')
def student_and_batch(tmp_path_factory):
    """An ImageNet Lite0 student with an ImageNet Lite0 teacher, and 8 preprocessed demo
    images."""
    from ktcli.data.demo import make_demo_dataset
    root = make_demo_dataset(tmp_path_factory.mktemp('demo128'), seed=0, img_size=128,
                             train_per_class=1, test_per_class=1)
    paths = sorted((root / 'images').glob('*/*.jpg'))[::2][:8]  # one per species
    # BGR, as mmpretrain's LoadImageFromFile reads images.
    images = torch.stack([torch.from_numpy(np.array(Image.open(path).convert('RGB'))[..., ::-1]
                                           .copy()).permute(2, 0, 1) for path in paths])
    student = lite0(frozen_stages=5)  # the demo's setting: only the last two stages train
    student.add_teacher(lite0())
    inputs = student.data_preprocessor(dict(inputs=images), False)['inputs']
    samples = [DataSample().set_gt_label(label) for label in range(len(paths))]
    return student, inputs, samples


def teacher_maps(student, inputs, precision):
    student.teacher_precision = precision
    (maps, ) = student.teacher_attention_maps(inputs)
    return maps


def test_auto_is_float32_on_the_cpu_and_names_resolve():
    cpu = torch.device('cpu')
    assert teacher_autocast_dtype('auto', cpu) is None
    assert teacher_autocast_dtype('bf16', cpu) is torch.bfloat16
    assert [teacher_precision_name(p, cpu) for p in ('auto', 'fp32', 'fp16', 'bf16')] == [
        'fp32', 'fp32', 'fp16', 'bf16']
    with pytest.raises(ValueError, match="teacher_precision must be one of"):
        teacher_autocast_dtype('fp64', cpu)
    cfg = Config.fromfile(str(TINY_MODEL))
    cfg.model.teacher_precision = 'half'
    with pytest.raises(ValueError, match="got 'half'"):
        build_model_from_config(cfg)


def test_bf16_teacher_maps_agree_with_fp32(student_and_batch):
    student, inputs, _ = student_and_batch
    exact, rounded = teacher_maps(student, inputs, 'fp32'), teacher_maps(student, inputs, 'bf16')
    assert exact.shape == (8, 8, 8)
    assert rounded.dtype == torch.float32
    assert not rounded.is_inference() and not rounded.requires_grad
    difference = (rounded - exact).abs()
    assert 0 < difference.max() <= MAP_MAX_ABS
    assert difference.mean() <= MAP_MEAN_ABS


def test_or_loss_with_bf16_teachers_matches_fp32_and_backpropagates(student_and_batch):
    student, inputs, samples = student_and_batch
    student.train()
    results = {}
    for precision in ('fp32', 'bf16'):
        student.teacher_precision = precision
        student.zero_grad()
        losses = student.loss(inputs, samples)
        (losses['loss_ce'] + losses['loss_or']).backward()
        gradient = torch.cat([p.grad.flatten() for p in student.parameters()
                              if p.grad is not None])
        results[precision] = losses['loss_or'].detach(), gradient
    (exact, exact_gradient), (rounded, rounded_gradient) = results['fp32'], results['bf16']
    torch.testing.assert_close(rounded, exact, rtol=OR_LOSS_RTOL, atol=0)
    assert torch.isfinite(rounded_gradient).all()
    assert (rounded_gradient - exact_gradient).norm() <= GRADIENT_RTOL * exact_gradient.norm()


def test_fp32_teachers_ignore_the_students_autocast():
    torch.manual_seed(0)
    student, teacher = (build_model_from_config(TINY_MODEL) for _ in range(2))
    student.add_teacher(teacher)
    student.teacher_precision = 'fp32'
    inputs = torch.randn(2, 3, 32, 32)
    (expected, ) = student.teacher_attention_maps(inputs)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        (actual, ) = student.teacher_attention_maps(inputs)
        student_map = student.attention_map(inputs)
    assert torch.equal(actual, expected)
    assert student_map.dtype == torch.float32
    orthogonal_loss(student_map, [actual]).backward()
