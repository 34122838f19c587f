# VGG-16-BN, 448 px, the paper's recipe on FGVC-Aircraft.
_base_ = [
    '../_base_/models/vgg16bn_kt.py', '../_base_/datasets/air.py',
    '../_base_/schedules/sgd_cosine_100e.py', '../_base_/default_runtime.py'
]
model = dict(head=dict(num_classes=100))
