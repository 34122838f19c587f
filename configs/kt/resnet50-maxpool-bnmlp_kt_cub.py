# ResNet-50 on CUB with the authors' classifier instead of mmpretrain's linear
# head: global max pooling -> BN -> Linear(2048, 512) -> BN -> ELU ->
# Linear(512, 200).
_base_ = ['./resnet50_kt_cub.py']
model = dict(
    neck=dict(_delete_=True, type='GlobalMaxPooling'),
    head=dict(
        _delete_=True,
        type='BNMLPClsHead',
        num_classes=200,
        in_channels=2048,
        hidden_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
