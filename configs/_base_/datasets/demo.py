# The built-in demo dataset (``kt data demo`` / ``python tools/make_demo_data.py``):
# 20 synthetic bird species, each a combination of five parts (head shape and colour, wing
# pattern, tail shape, leg colour), 80 px. CUB's on-disk layout, read by mmpretrain's CUB class.
_base_ = ['./fgvc_448.py']

data_root = 'data/kt_demo'
demo_classes = [
    'round-red-plain-forktail-paleleg',
    'round-red-barred-spiketail-orangeleg',
    'round-blue-plain-fantail-paleleg',
    'round-blue-barred-forktail-orangeleg',
    'round-blue-spotted-forktail-blackleg',
    'round-yellow-plain-fantail-orangeleg',
    'crested-red-barred-spiketail-paleleg',
    'crested-red-spotted-fantail-blackleg',
    'crested-red-spotted-forktail-paleleg',
    'crested-blue-plain-spiketail-blackleg',
    'crested-yellow-plain-fantail-blackleg',
    'crested-yellow-barred-forktail-paleleg',
    'crested-yellow-spotted-forktail-orangeleg',
    'pointed-red-barred-fantail-blackleg',
    'pointed-blue-plain-spiketail-orangeleg',
    'pointed-blue-barred-fantail-orangeleg',
    'pointed-blue-spotted-spiketail-blackleg',
    'pointed-yellow-plain-forktail-orangeleg',
    'pointed-yellow-barred-fantail-paleleg',
    'pointed-yellow-spotted-spiketail-paleleg',
]

data_preprocessor = dict(
    num_classes=20,
    # Trained from scratch: the authors' normalisation, (x / 255 - 0.5) / 0.5.
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
)

# The paper's steps at demo scale: 72 x 72, random 64 crop (padding 4), flip.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(72, 72)),
    dict(type='RandomCrop', crop_size=64, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(72, 72)),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]

demo_dataset = dict(type='CUB', data_root=data_root, metainfo=dict(classes=demo_classes))
train_dataloader = dict(
    num_workers=2, dataset=dict(**demo_dataset, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=2, dataset=dict(**demo_dataset, split='test', pipeline=test_pipeline))
test_dataloader = val_dataloader
