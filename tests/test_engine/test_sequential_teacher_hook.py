import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from registry_plugins import CheckpointError, build_model_from_config

from ..conftest import write_tiny_config

# A second teacher whose layer2 downsamples too: a 2 x 2 map against the student's 4 x 4.
OTHER_BACKBONE = "model = dict(backbone=dict(strides=(1, 2, 2, 1)))"


class TeacherModeRecorder(Hook):
    """Records, at every teacher forward, whether any teacher module was training."""

    priority = 'LOW'

    def __init__(self):
        self.training_flags = []
        self.forwards = 0

    def before_train(self, runner):
        for teacher in runner.model.teachers:
            teacher.backbone.register_forward_pre_hook(self._record)

    def _record(self, module, args):
        self.forwards += 1
        self.training_flags.append(any(m.training for m in module.modules()))


def save_random_teacher(config, path, seed):
    torch.manual_seed(seed)
    model = build_model_from_config(config)
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def two_teachers(tmp_path, demo_root):
    first = write_tiny_config(tmp_path / 'teacher1.py', demo_root)
    second = write_tiny_config(tmp_path / 'teacher2.py', demo_root, extra=OTHER_BACKBONE)
    specs, weights = [], []
    for seed, config in enumerate((first, second), start=1):
        checkpoint = tmp_path / f'teacher{seed}.pth'
        weights.append(save_random_teacher(config, checkpoint, seed))
        specs.append(dict(config=str(config), checkpoint=str(checkpoint)))
    return specs, weights


def build_runner(tmp_path, demo_root, teachers, work_dir='student'):
    config = write_tiny_config(
        tmp_path / f'{work_dir}.py', demo_root,
        extra=f"custom_hooks = [dict(type='SequentialTeacherHook', teachers={teachers!r})]")
    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(tmp_path / work_dir)
    return Runner.from_cfg(cfg)


def test_one_stage_with_two_frozen_teachers_trains_through_runner(tmp_path, demo_root,
                                                                   two_teachers):
    specs, original_weights = two_teachers
    runner = build_runner(tmp_path, demo_root, specs)
    recorder = TeacherModeRecorder()
    runner.register_hook(recorder)
    runner.train()

    student = runner.model
    assert len(student.teachers) == 2
    assert recorder.forwards == 2 * runner.train_loop.max_iters
    assert not any(recorder.training_flags)
    for teacher, weights in zip(student.teachers, original_weights):
        for name, value in teacher.state_dict().items():
            assert torch.equal(value, weights[name]), name

    checkpoint = torch.load(tmp_path / 'student' / 'epoch_1.pth', weights_only=True)
    assert set(checkpoint['state_dict']) == set(student.state_dict())
    optimizer_params = sum(len(g['params']) for g in checkpoint['optimizer']['param_groups'])
    assert optimizer_params == len(list(student.parameters()))

    scalars = runner.message_hub.log_scalars
    assert 'train/loss_or' in scalars and 'train/loss_ce' in scalars
    assert scalars['train/loss_or'].current() > 0
    log = next((tmp_path / 'student').glob('*/*.log')).read_text()
    assert 'Teacher 1/2: teacher1.py' in log and 'Teacher 2/2: teacher2.py' in log
    assert 'Teachers run in inference mode, fp32 on cpu, contiguous memory format' in log
    assert 'loss_or:' in log


def test_teacher_with_another_class_count_is_rejected(tmp_path, demo_root):
    config = write_tiny_config(tmp_path / 'teacher.py', demo_root,
                               extra='model = dict(head=dict(num_classes=7))')
    checkpoint = tmp_path / 'teacher.pth'
    save_random_teacher(config, checkpoint, seed=1)
    runner = build_runner(tmp_path, demo_root,
                          [dict(config=str(config), checkpoint=str(checkpoint))])
    with pytest.raises(ValueError, match='predicts 7 classes but the student predicts 20'):
        runner.train()


def test_checkpoint_that_does_not_fit_the_teacher_config_is_rejected(tmp_path, demo_root):
    config = write_tiny_config(tmp_path / 'teacher.py', demo_root)
    other = write_tiny_config(tmp_path / 'other.py', demo_root, extra=OTHER_BACKBONE.replace(
        'strides=(1, 2, 2, 1)', 'base_channels=8'))
    checkpoint = tmp_path / 'other.pth'
    save_random_teacher(other, checkpoint, seed=1)
    runner = build_runner(tmp_path, demo_root,
                          [dict(config=str(config), checkpoint=str(checkpoint))])
    with pytest.raises(CheckpointError, match='does not fit the model of its config'):
        runner.train()


def test_teacher_spec_without_checkpoint_is_rejected():
    from registry_plugins import SequentialTeacherHook
    with pytest.raises(ValueError, match="lacks \\['checkpoint'\\]"):
        SequentialTeacherHook(teachers=[dict(config='x.py')])


def test_channels_last_student_and_teachers_train_through_runner(tmp_path, demo_root,
                                                                 two_teachers):
    specs, _ = two_teachers
    config = write_tiny_config(
        tmp_path / 'student.py', demo_root,
        extra=f"model = dict(channels_last=True)\n"
              f"custom_hooks = [dict(type='SequentialTeacherHook', teachers={specs[:1]!r})]")
    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(tmp_path / 'student')
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    torch.backends.cudnn.benchmark = False
    runner = Runner.from_cfg(cfg)
    assert torch.backends.cudnn.benchmark  # set from default_runtime.py's env_cfg
    runner.train()

    for model in (runner.model, runner.model.teachers[0]):
        assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert runner.message_hub.log_scalars['train/loss_or'].current() > 0
    log = next((tmp_path / 'student').glob('*/*.log')).read_text()
    assert 'fp32 on cpu, channels_last memory format' in log
    checkpoint = torch.load(tmp_path / 'student' / 'epoch_1.pth', weights_only=True)
    assert set(checkpoint['state_dict']) == set(runner.model.state_dict())
