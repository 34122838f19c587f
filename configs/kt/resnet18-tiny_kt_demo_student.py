# Stage 2 of the demo sequence: the same model trained with the OR-loss
# against stage 1. Run from the repository root after stage 1:
#   python tools/train.py configs/kt/resnet18-tiny_kt_demo.py
#   python tools/train.py configs/kt/resnet18-tiny_kt_demo_student.py
_base_ = ['./resnet18-tiny_kt_demo.py']

custom_hooks = [
    dict(
        type='SequentialTeacherHook',
        teachers=[
            dict(
                config='configs/kt/resnet18-tiny_kt_demo.py',
                # A work dir stands for its newest checkpoint (the last epoch's);
                # relative paths start at this run's work dir.
                checkpoint='../resnet18-tiny_kt_demo'),
        ]),
]
