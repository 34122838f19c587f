# ResNet-50 with the knowledge-transfer OR-loss. Its attention map comes from
# layer4 (2048 x 14 x 14 at 448 px). ImageNet-1k initialisation from
# OpenMMLab's public checkpoint (76.55 top-1); without network access, download
# it elsewhere and set init_cfg.checkpoint to the local file. Any checkpoint
# whose keys carry the 'backbone.' prefix works; for torchvision's
# resnet50-0676ba61.pth drop the prefix (prefix=None).
model = dict(
    type='KTClassifier',
    # The normalisation the ImageNet weights were trained with (overrides the dataset's).
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
            'resnet50_8xb32_in1k_20210831-ea4938fc.pth',
            prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    attention=dict(type='SpatialAttention'),
    or_loss=dict(type='OrthogonalLoss', loss_weight=0.5, weighting='fixed'),
)
