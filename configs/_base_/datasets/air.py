# FGVC-Aircraft 2013b: 100 variants, trained on trainval (6,667 images) and
# scored on test (3,333), read by mmpretrain's FGVCAircraft class from
# data_root (fgvc-aircraft-2013b, holding data/images/, data/variants.txt,
# data/images_variant_*.txt).
_base_ = ['./fgvc_448.py']

data_root = 'data/fgvc-aircraft-2013b'
data_preprocessor = dict(num_classes=100)

train_dataloader = dict(
    dataset=dict(type='FGVCAircraft', data_root=data_root, split='trainval'))
val_dataloader = dict(dataset=dict(type='FGVCAircraft', data_root=data_root, split='test'))
test_dataloader = val_dataloader
