# A narrow ResNet-18 trained from scratch on the built-in demo data at 64 px:
# the CPU-sized member of a demo sequence (stage 1: no teachers).
_base_ = [
    '../_base_/models/resnet18_tiny_kt.py', '../_base_/datasets/demo.py',
    '../_base_/schedules/sgd_cosine_100e.py', '../_base_/default_runtime.py'
]

max_epochs = 20
# Trained from scratch, so the backbone learns at the head's rate.
optim_wrapper = dict(
    optimizer=dict(lr=0.05), paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
param_scheduler = dict(T_max=max_epochs, end=max_epochs)
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
default_hooks = dict(logger=dict(interval=20))
