# The README's demo at mmengine level: EfficientNet-Lite0 from its ImageNet weights,
# fine-tuned on the built-in demo data at 128 px with the stem and the first five of its
# seven stages frozen (CPU-sized), the last stage dilated (output stride 16: an 8 x 8
# attention map instead of 4 x 4), 3 epochs, head lr 0.1 and backbone lr 0.01 (the paper's
# ratio). Stage 1 of a sequence; later stages add a SequentialTeacherHook.
_base_ = [
    '../_base_/models/efficientnet_lite0_kt.py', '../_base_/datasets/demo.py',
    '../_base_/schedules/sgd_cosine_100e.py', '../_base_/default_runtime.py'
]

max_epochs = 3
model = dict(
    backbone=dict(frozen_stages=5, output_stride=16), head=dict(num_classes=20))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(144, 144)),
    dict(type='RandomCrop', crop_size=128, padding=8),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(144, 144)),
    dict(type='CenterCrop', crop_size=128),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=0.1))
param_scheduler = dict(T_max=max_epochs, end=max_epochs)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10))
