# ResNet-50, 448 px, the paper's recipe on an ImageFolder tree (see
# ../_base_/datasets/custom.py). Set the class count:
#   --cfg-options model.head.num_classes=<number of class folders>
_base_ = [
    '../_base_/models/resnet50_kt.py', '../_base_/datasets/custom.py',
    '../_base_/schedules/sgd_cosine_100e.py', '../_base_/default_runtime.py'
]
