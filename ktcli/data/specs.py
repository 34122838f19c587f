"""What kt knows about each dataset: where it lives, its layout, where to get it.

Kept free of heavy imports so that the CLI can check data in well under a
second, before torch and mmengine load.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

# The demo's default split (`kt data demo`): 60 training images per species and 200 test
# images (4,000 in all), enough for the README's 3-seed ablation to resolve about one point
# between Ours' and Base's ensembles (docs/demo-results.md).
DEMO_TRAIN_PER_CLASS = 60
DEMO_TEST_PER_CLASS = 200


@dataclass(frozen=True)
class Download:
    """An official archive and how it unpacks."""

    url: str
    md5: str
    # The folder the archive unpacks to, relative to the download root.
    unpacks_to: str


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset kt trains on."""

    name: str
    title: str
    # The folder under data/ where the dataset is looked for by default.
    default_root: str
    # Files or folders (relative to the root) whose absence means a wrong root.
    required: Tuple[str, ...]
    # The layout, as a user should see it in an error message.
    layout: str
    num_classes: Optional[int]
    download: Optional[Download] = None
    # Why there is no download, and what to do instead.
    no_download: str = ''

    @property
    def base_config(self) -> str:
        """The dataset config under configs/_base_/datasets/."""
        return f'{self.name}.py'


DATASETS = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name='cub',
            title='CUB-200-2011',
            default_root='data/CUB_200_2011',
            required=('images.txt', 'image_class_labels.txt', 'train_test_split.txt',
                      'images'),
            layout='CUB_200_2011/{images/, images.txt, image_class_labels.txt, '
            'train_test_split.txt, classes.txt}',
            num_classes=200,
            download=Download(
                url='https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz',
                md5='97eceeb196236b17998738112f37df78',
                unpacks_to='CUB_200_2011')),
        DatasetSpec(
            name='car',
            title='Stanford Cars',
            default_root='data/stanford_cars',
            required=(),
            layout='stanford_cars/{car_ims/, cars_annos.mat} or '
            'stanford_cars/{cars_train/, cars_test/, devkit/}',
            num_classes=196,
            no_download='Stanford Cars has no working official download (its URLs are dead); '
            'bring your own copy in one of the layouts mmpretrain reads'),
        DatasetSpec(
            name='air',
            title='FGVC-Aircraft 2013b',
            default_root='data/fgvc-aircraft-2013b',
            required=('data/images', 'data/variants.txt', 'data/images_variant_trainval.txt',
                      'data/images_variant_test.txt'),
            layout='fgvc-aircraft-2013b/data/{images/, variants.txt, '
            'images_variant_{train,val,trainval,test}.txt}',
            num_classes=100,
            download=Download(
                url='https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/'
                'fgvc-aircraft-2013b.tar.gz',
                md5='d4acdd33327262359767eeaa97a4f732',
                unpacks_to='fgvc-aircraft-2013b')),
        DatasetSpec(
            name='demo',
            title='kt demo (synthetic)',
            default_root='data/kt_demo',
            required=('images.txt', 'image_class_labels.txt', 'train_test_split.txt',
                      'images'),
            layout='kt_demo/ in CUB layout (written by `kt data demo`)',
            num_classes=20,
            no_download='the demo data are generated, not downloaded: run `kt data demo`'),
        DatasetSpec(
            name='custom',
            title='ImageFolder tree',
            default_root='data/custom',
            required=('train', 'test'),
            layout='custom/train/<class>/*.jpg and custom/test/<class>/*.jpg',
            num_classes=None,
            no_download='custom data are your own ImageFolder tree'),
    )
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (cub, car, air, demo or custom)."""
    from ..errors import UserError
    if name not in DATASETS:
        raise UserError(f'unknown dataset {name!r}; choose one of {", ".join(DATASETS)}')
    return DATASETS[name]
