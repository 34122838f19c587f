# The paper's data recipe, shared by the fine-grained datasets (cub.py,
# car.py, air.py, custom.py set the dataset itself). Train: resize to
# 600 x 600, random 448 crop with 8 px padding, horizontal flip. Test: resize
# to 600 x 600, centre 448 crop. The whole test set is scored (no dropped
# batch). Batch 32 in total. Loader workers are seeded per epoch and started
# afresh each epoch, so that a resumed run repeats an uninterrupted one exactly
# (registry_plugins/epoch_seeding.py); kt caps them at the CPUs available.
# Normalisation: pretrained backbones bring the mean/std of their weights in
# model.data_preprocessor (ImageNet's for ResNet-50 and VGG-16; the authors'
# code used 0.5/0.5 for those); the one below, ImageNet's, applies to
# backbones trained from scratch.
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(600, 600)),
    dict(type='RandomCrop', crop_size=448, padding=8),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(600, 600)),
    dict(type='CenterCrop', crop_size=448),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=False,
    worker_init_fn=dict(type='seed_loader_worker'),
    dataset=dict(pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=False,
    worker_init_fn=dict(type='seed_loader_worker'),
    dataset=dict(pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
