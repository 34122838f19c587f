"""Check that a dataset is where kt looks for it, in the layout mmpretrain reads.

``check_layout`` only looks at the file tree, imports nothing heavy and runs
in milliseconds, so that a wrong data root is reported before torch loads.
``summarise_dataset`` goes further: it loads every split through mmpretrain's
own dataset classes and can open every image. ``verified_data_root`` refuses,
before ``kt train`` or ``kt ablate`` starts a stage, whatever ``kt data check``
refuses.
"""
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError, first_line
from ..reading import open_data_file
from .image_verification import unreadable_error, unreadable_images
from .specs import DatasetSpec, dataset_spec

if TYPE_CHECKING:
    from mmpretrain.datasets import BaseDataset

# The image extensions mmpretrain's CustomDataset accepts.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')

# Stanford Cars comes in two layouts; mmpretrain uses the first when
# cars_annos.mat exists.
_CAR_LAYOUTS = (
    ('cars_annos.mat', 'car_ims'),
    ('devkit/cars_train_annos.mat', 'devkit/cars_test_annos_withlabels.mat', 'cars_train',
     'cars_test'),
)
_CUB_FILES = ('images.txt', 'image_class_labels.txt', 'train_test_split.txt')
_SPLITS = {
    'cub': ('train', 'test'),
    'demo': ('train', 'test'),
    'car': ('train', 'test'),
    'air': ('trainval', 'test'),
    'custom': ('train', 'test'),
}


@dataclass(frozen=True)
class SplitSummary:
    """What one split of a dataset holds."""

    name: str
    num_images: int
    # The number of classes with at least one image in this split.
    num_classes: int
    # Images that are missing or cannot be decoded (empty when not verified).
    unreadable: tuple[Path, ...]


@dataclass(frozen=True)
class DatasetSummary:
    """What a dataset root holds, split by split."""

    name: str
    root: Path
    # The number of classes of the dataset.
    num_classes: int
    splits: tuple[SplitSummary, ...]
    images_verified: bool

    @property
    def unreadable(self) -> list[Path]:
        """The unreadable images of all splits."""
        return [path for split in self.splits for path in split.unreadable]

    def coverage_warnings(self) -> list[str]:
        """One line per split that holds images of only some of the dataset's classes."""
        title = dataset_spec(self.name).title
        return [f'warning: the {split.name} split holds images of {split.num_classes} of the '
                f'{self.num_classes} classes of {title}; the model still predicts all '
                f'{self.num_classes}, so its figures are not comparable with the whole '
                "dataset's (for a subset of classes, use --dataset custom with an ImageFolder "
                'tree)'
                for split in self.splits if split.num_classes < self.num_classes]


def _has_image(folder: Path) -> bool:
    """Whether a folder holds an image file at any depth (mmengine skips hidden files)."""
    return any(path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith('.')
               and path.is_file() for path in folder.rglob('*'))


def _class_folder_problem(split_dir: Path) -> str | None:
    """What is wrong with an ImageFolder split, or None.

    Every folder in a split is a class to mmpretrain, so an empty one would
    shift the class count (and, in test/, the labels).
    """
    if not split_dir.is_dir():
        return f'{split_dir} is not a directory'
    folders = sorted(folder for folder in split_dir.iterdir() if folder.is_dir())
    if not folders:
        return f'{split_dir} holds no class folder'
    empty = [folder for folder in folders if not _has_image(folder)]
    if empty:
        more = f' (and {len(empty) - 1} more)' if len(empty) > 1 else ''
        return f'the class folder {empty[0]}{more} holds no image; remove it or add its images'
    return None


def _required_entries(name: str, spec: DatasetSpec, root: Path) -> Sequence[str]:
    """The entries a root must hold: the spec's, or the closest car layout."""
    if name != 'car':
        return spec.required
    if (root / 'cars_annos.mat').exists():
        return _CAR_LAYOUTS[0]
    return max(_CAR_LAYOUTS, key=lambda layout: sum((root / entry).exists() for entry in layout))


def layout_problem(name: str, root: str | Path) -> str | None:
    """Describe what is wrong with a dataset root's file tree.

    Args:
        name: The dataset (cub, car, air, demo or custom).
        root: The dataset root.

    Returns:
        The first problem, naming the missing file or folder by its full path,
        or None if the root holds the dataset's layout.

    Raises:
        UserError: If ``name`` is not a known dataset.
    """
    spec = dataset_spec(name)
    root = Path(root).expanduser().resolve()
    if not root.exists():
        return f'{root} is missing'
    if not root.is_dir():
        return f'{root} is not a directory'
    for entry in _required_entries(name, spec, root):
        if not (root / entry).exists():
            return f'{root / entry} is missing'
    if name == 'custom':
        return next(filter(None, (_class_folder_problem(root / split) for split in _SPLITS[name])),
                    None)
    return None


def _remedy(name: str, spec: DatasetSpec, root: Path) -> str:
    """How to get a dataset into ``root``, or point kt at a copy elsewhere."""
    elsewhere = 'or pass --data-root with the folder of a copy you already have'
    if spec.download is not None:
        return f'get it with `kt data download {name} --data-root {root}`, {elsewhere}'
    if name == 'demo':
        return f'write it with `kt data demo --data-root {root}`, {elsewhere}'
    return f'{spec.no_download}; {elsewhere}'


def _nested_root_hint(spec: DatasetSpec, root: Path) -> str:
    """A hint when ``root`` is the parent of the dataset's usual folder."""
    nested = root / Path(spec.default_root).name
    return f' (did you mean {nested}?)' if nested.is_dir() else ''


def check_layout(name: str, root: str | Path) -> Path:
    """Check that a dataset root holds the dataset's files, cheaply.

    Looks at the file tree only: the spec's required files, one of the two
    Stanford Cars layouts, or for ``custom`` a ``train/`` and a ``test/``
    folder of class folders that each hold an image.

    Args:
        name: The dataset (cub, car, air, demo or custom).
        root: The dataset root.

    Returns:
        The resolved root.

    Raises:
        UserError: If the dataset is unknown or its root is incomplete; the
            one-line message names the first missing file or folder, the
            expected layout and how to get the data.
    """
    spec = dataset_spec(name)
    resolved = Path(root).expanduser().resolve()
    problem = layout_problem(name, resolved)
    if problem is not None:
        raise UserError(f'{spec.title}: {problem}{_nested_root_hint(spec, resolved)}; expected '
                        f'{spec.layout}; {_remedy(name, spec, resolved)}')
    return resolved


def _cub_file_ids(path: Path) -> tuple[dict[int, str], str | None]:
    """Read a CUB ``<id> <value>`` file; return its entries or its first bad line."""
    entries: dict[int, str] = {}
    with open_data_file(path) as file:
        lines = file.read().decode(errors='replace').splitlines()
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            return entries, f'{path} line {number}: expected "<image id> <value>", got {line!r}'
        entries[int(fields[0])] = fields[1]
    return entries, None


def _only_in(name: str, items: set, other_name: str, other_items: set) -> str:
    """Describe how two sets differ: how many items only each holds, and the first."""
    return ', '.join(f'{len(extra)} only in {label} (first: {min(extra)!r})'
                     for label, extra in ((name, items - other_items),
                                          (other_name, other_items - items)) if extra)


def _cub_problem(root: Path) -> str | None:
    """Find what makes CUB's three files unreadable together, or None."""
    tables = {}
    for file_name in _CUB_FILES:
        entries, problem = _cub_file_ids(root / file_name)
        if problem is not None:
            return problem
        tables[file_name] = entries
    images = root / _CUB_FILES[0]
    for file_name in _CUB_FILES[1:]:
        ids, reference_ids = set(tables[file_name]), set(tables[_CUB_FILES[0]])
        if ids != reference_ids:
            return (f'{root / file_name} and {images} list different image ids: '
                    f'{_only_in(file_name, ids, images.name, reference_ids)}')
    labels = root / 'image_class_labels.txt'
    for image_id, label in tables[labels.name].items():
        if not label.lstrip('-').isdigit():
            return f'{labels}: the label {label!r} of image {image_id} is not a number'
    return None


def _annotation_files(name: str, root: Path, split: str) -> list[Path]:
    """The files or folders that mmpretrain reads a split's samples from."""
    if name in ('cub', 'demo'):
        return [root / file_name for file_name in _CUB_FILES]
    if name == 'air':
        return [root / 'data' / f'images_variant_{split}.txt']
    if name == 'car':
        if (root / 'cars_annos.mat').exists():
            return [root / 'cars_annos.mat']
        suffix = '_withlabels' if split == 'test' else ''
        return [root / 'devkit' / f'cars_{split}_annos{suffix}.mat']
    return [root / split]


def _load_failure(name: str, root: Path, split: str, error: Exception) -> UserError:
    """Turn an error raised while mmpretrain loads a split into a UserError."""
    spec = dataset_spec(name)
    problem = _cub_problem(root) if name in ('cub', 'demo') else None
    if problem is None:
        files = ', '.join(str(path) for path in _annotation_files(name, root, split))
        detail = (f'{error.filename} is missing' if isinstance(error, FileNotFoundError)
                  else first_line(error))
        problem = f'cannot read the {split} split from {files}: {detail}'
    return UserError(f'{spec.title}: {problem}; fix the files to match {spec.layout}')


def _build_split(name: str, root: Path, split: str,
                 classes: Sequence[str] | None) -> 'BaseDataset':
    """Load one split through mmpretrain's dataset class, with no pipeline.

    Its samples stay a list: mmengine would serialise them for data loader workers, after a
    full garbage collection that costs most of a second once torch is loaded.
    """
    import registry_plugins  # noqa: F401  (first: keeps mmpretrain's import prints off stdout)
    from mmpretrain.datasets import CUB, CustomDataset, FGVCAircraft, StanfordCars

    common = dict(data_root=str(root), serialize_data=False)
    if name == 'cub':
        return CUB(split=split, **common)
    if name == 'demo':
        from .demo import DEMO_CLASSES
        return CUB(split=split, metainfo=dict(classes=list(DEMO_CLASSES)), **common)
    if name == 'car':
        return StanfordCars(split=split, **common)
    if name == 'air':
        return FGVCAircraft(split=split, **common)
    metainfo = None if classes is None else dict(classes=list(classes))
    return CustomDataset(data_prefix=split, metainfo=metainfo, **common)


def _load_split(name: str, root: Path, split: str,
                classes: Sequence[str] | None) -> 'BaseDataset':
    """Load a split, turning the errors of a broken layout into a UserError."""
    from mat4py.loadmat import ParseError

    if name == 'custom' and classes is not None:
        folders = {path.name for path in (root / split).iterdir() if path.is_dir()}
        if folders != set(classes):
            raise UserError(
                f'the class folders of {root / split} and {root / "train"} differ: '
                f'{_only_in(f"{split}/", folders, "train/", set(classes))}; give both splits '
                'the same class folders')
    try:
        return _build_split(name, root, split, classes)
    except (AssertionError, KeyError, ValueError, IndexError, RuntimeError, OSError,
            ParseError) as error:
        raise _load_failure(name, root, split, error) from None


def _check_labels(name: str, root: Path, split: str, labels: Iterable[int],
                  num_classes: int) -> None:
    """Raise a UserError if a label lies outside the dataset's classes."""
    bad = next((label for label in labels if not 0 <= label < num_classes), None)
    if bad is not None:
        files = _annotation_files(name, root, split)
        source = files[1] if name in ('cub', 'demo') else files[0]
        raise UserError(f'{source}: the class label {bad + 1} of the {split} split is outside '
                        f'1..{num_classes}; fix the labels or the file')


def summarise_dataset(name: str, root: str | Path, verify_images: bool = True) -> DatasetSummary:
    """Load every split of a dataset as training would, and count what it holds.

    Runs ``check_layout`` first, then builds each split with mmpretrain's own
    dataset class (CUB, StanfordCars, FGVCAircraft or CustomDataset; the demo
    data through CUB with the demo's class names; custom test data with the
    class names of the train folder).

    Args:
        name: The dataset (cub, car, air, demo or custom).
        root: The dataset root.
        verify_images: Whether to open every image and report the ones that
            are missing or cannot be decoded. Defaults to True.

    Returns:
        The number of images and classes present in each split, the
        dataset's class count and the unreadable images.

    Raises:
        UserError: If the layout is incomplete or a file cannot be read as
            the dataset; the one-line message names the file and the problem.
    """
    resolved = check_layout(name, root)
    splits = []
    for split in split_samples(name, resolved):
        labels = [label for _, label in split.samples]
        unreadable = (unreadable_images(path for path, _ in split.samples)
                      if verify_images else [])
        splits.append(SplitSummary(name=split.name, num_images=len(split.samples),
                                   num_classes=len(set(labels)), unreadable=tuple(unreadable)))
    return DatasetSummary(name=name, root=resolved, num_classes=len(split.classes),
                          splits=tuple(splits), images_verified=verify_images)


@dataclass(frozen=True)
class SplitSamples:
    """One split as training reads it: its samples in the dataset's order."""

    name: str
    # (image file, class index) per sample.
    samples: tuple[tuple[Path, int], ...]
    # The dataset's class names (the train split's, for every split).
    classes: tuple[str, ...]


def dataset_splits(name: str) -> tuple[str, str]:
    """The names of a dataset's training and test splits, e.g. ``('trainval', 'test')``."""
    dataset_spec(name)
    return _SPLITS[name]


def split_samples(name: str, root: Path) -> Iterable[SplitSamples]:
    """Load each split of a dataset root (already through ``check_layout``) as training
    would, the training split first.

    Raises:
        UserError: A file cannot be read as the dataset, or a label lies
            outside its classes.
    """
    classes = None
    for split in _SPLITS[name]:
        dataset = _load_split(name, root, split, classes)
        if classes is None:
            classes = tuple(dataset.CLASSES)
        infos = [dataset.get_data_info(index) for index in range(len(dataset))]
        samples = tuple((Path(info['img_path']), int(info['gt_label'])) for info in infos)
        _check_labels(name, root, split, [label for _, label in samples], len(classes))
        yield SplitSamples(split, samples, classes)


def verified_data_root(name: str, root: str | Path,
                       warn: Callable[[str], None] | None = None) -> Path:
    """Check a dataset as ``kt data check`` does, before training starts.

    Runs ``summarise_dataset`` with every image verified: the layout, the
    loading of each split by mmpretrain, the labels, the class folders of
    custom data, and every image (cached, so an unchanged dataset's images
    are decoded once).

    Args:
        name: The dataset (cub, car, air, demo or custom).
        root: The dataset root.
        warn: Called with each warning of a dataset that trains but holds
            images of only some of its classes. Defaults to None (silent).

    Returns:
        The resolved root.

    Raises:
        UserError: If the dataset would not train correctly; the one-line
            message names the first bad file or folder and how many more
            images are bad.
    """
    summary = summarise_dataset(name, root, verify_images=True)
    if summary.unreadable:
        raise unreadable_error(summary.root, summary.unreadable)
    for warning in summary.coverage_warnings() if warn else ():
        warn(warning)
    return summary.root
