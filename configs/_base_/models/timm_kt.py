# Any timm CNN with the knowledge-transfer OR-loss, through mmpretrain's TIMMBackbone; its
# last feature map (timm's forward_features) gives the attention map. `kt train --backbone
# timm/<model name>` fills in model_name, the head's in_channels (the map's channels) and,
# with timm's pretrained weights (--pretrained default, downloaded by timm), the mean/std of
# timm's pretrained config as model.data_preprocessor. By hand: set the same three.
model = dict(
    type='KTClassifier',
    backbone=dict(type='FreezableTIMMBackbone', model_name=None, frozen_stages=-1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=None,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    attention=dict(type='SpatialAttention'),
    or_loss=dict(type='OrthogonalLoss', loss_weight=0.5, weighting='fixed'),
)
