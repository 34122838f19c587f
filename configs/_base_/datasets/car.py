# Stanford Cars: 196 models, 8,144 train / 8,041 test images, read by
# mmpretrain's StanfordCars class from data_root (car_ims/ + cars_annos.mat,
# or cars_train/, cars_test/ and devkit/).
_base_ = ['./fgvc_448.py']

data_root = 'data/stanford_cars'
data_preprocessor = dict(num_classes=196)

train_dataloader = dict(dataset=dict(type='StanfordCars', data_root=data_root, split='train'))
val_dataloader = dict(dataset=dict(type='StanfordCars', data_root=data_root, split='test'))
test_dataloader = val_dataloader
