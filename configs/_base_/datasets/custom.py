# Any ImageFolder-style tree: data_root/train/<class>/*.jpg and
# data_root/test/<class>/*.jpg, read by mmpretrain's CustomDataset (classes
# sorted by folder name). Set model.head.num_classes to the number of class
# folders.
_base_ = ['./fgvc_448.py']

data_root = 'data/custom'

train_dataloader = dict(
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train'))
val_dataloader = dict(
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='test'))
test_dataloader = val_dataloader
