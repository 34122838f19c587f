# VGG-16 with batch norm and the knowledge-transfer OR-loss. Its attention map
# comes from the last stage including its max pool (512 x 14 x 14 at 448 px).
# ImageNet-1k initialisation from OpenMMLab's public checkpoint (73.38 top-1);
# without network access, set init_cfg.checkpoint to a local copy.
model = dict(
    type='KTClassifier',
    # The normalisation the ImageNet weights were trained with (overrides the dataset's).
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(
        type='VGG',
        depth=16,
        norm_cfg=dict(type='BN'),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/vgg/'
            'vgg16_bn_batch256_imagenet_20210208-7e55cd29.pth',
            prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    attention=dict(type='SpatialAttention'),
    or_loss=dict(type='OrthogonalLoss', loss_weight=0.5, weighting='fixed'),
)
