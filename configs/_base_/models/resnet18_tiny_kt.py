# A narrow ResNet-18 (16 base channels, 0.7M parameters) for CPU runs on
# small images: the demo data and the tests. Only the stem (4) and layer3 (2)
# downsample, so a 64 px input still gives an 8 x 8 attention map. Randomly
# initialised.
model = dict(
    type='KTClassifier',
    backbone=dict(
        type='ResNet',
        depth=18,
        stem_channels=16,
        base_channels=16,
        strides=(1, 1, 2, 1),
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=20,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    attention=dict(type='SpatialAttention'),
    or_loss=dict(type='OrthogonalLoss', loss_weight=0.5, weighting='fixed'),
)
