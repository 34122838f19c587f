# ResNet-50, 448 px, the paper's recipe on Stanford Cars.
_base_ = [
    '../_base_/models/resnet50_kt.py', '../_base_/datasets/car.py',
    '../_base_/schedules/sgd_cosine_100e.py', '../_base_/default_runtime.py'
]
model = dict(head=dict(num_classes=196))
