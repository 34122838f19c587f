"""``kt data``: write the demo data, download a dataset, check a dataset root."""
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..data.check import DatasetSummary, summarise_dataset
from ..data.download import download_dataset
from ..data.image_verification import unreadable_error
from ..data.specs import DATASETS, DEMO_TEST_PER_CLASS, DEMO_TRAIN_PER_CLASS
from ..errors import UserError, exit_on_user_error

DatasetName = Enum('DatasetName', [(name, name) for name in DATASETS], type=str)

data_app = typer.Typer(
    help='Get the datasets kt trains on and check that they load: write the synthetic demo '
    'data, download CUB-200-2011 or FGVC-Aircraft, check a dataset root.',
    no_args_is_help=True)


def older_spelling(value: Optional[Path], old: Optional[Path], name: str) -> Optional[Path]:
    """``--data-root`` from itself or from the older option ``name`` (hidden), not both."""
    if old is None:
        return value
    if value is not None:
        raise UserError(f'pass --data-root alone; {name} is its older spelling')
    return old


@data_app.command()
def demo(
    data_root: Optional[Path] = typer.Option(
        None, '--data-root', help='The folder to write the demo dataset to (default: '
        'data/kt_demo).'),
    out: Optional[Path] = typer.Option(None, '--out', hidden=True,
                                       help='Older spelling of --data-root.'),
    seed: int = typer.Option(0, '--seed', min=0, help='The random seed.'),
    img_size: int = typer.Option(80, '--img-size', min=32,
                                 help='The side of the square images, in pixels.'),
    train_per_class: int = typer.Option(DEMO_TRAIN_PER_CLASS, '--train-per-class', min=1,
                                        help='Training images per species.'),
    test_per_class: int = typer.Option(
        DEMO_TEST_PER_CLASS, '--test-per-class', min=1,
        help='Test images per species. More only add images: the training split and the '
        'first test images stay the same.'),
) -> None:
    """Write the synthetic demo dataset: 20 species in CUB-200-2011's layout."""
    with exit_on_user_error():
        from ..data.demo import DEMO_CLASSES, make_demo_dataset
        start = time.perf_counter()
        data_root = older_spelling(data_root, out, '--out') or Path(DATASETS['demo'].default_root)
        path = make_demo_dataset(data_root, seed=seed, img_size=img_size,
                                 train_per_class=train_per_class, test_per_class=test_per_class)
        seconds = time.perf_counter() - start
    images = len(DEMO_CLASSES) * (train_per_class + test_per_class)
    Console().print(f'[green]demo dataset[/] at {escape(str(path.resolve()))}: {images} images '
                    f'of {len(DEMO_CLASSES)} species in {seconds:.1f} s', soft_wrap=True)


@data_app.command()
def download(
    dataset: DatasetName = typer.Argument(
        ..., help='cub or air (car cannot be downloaded: the command says what to do instead).'),
    data_root: Optional[Path] = typer.Option(
        None, '--data-root', help="The dataset folder to create (default: the dataset's usual "
        'folder, data/CUB_200_2011 or data/fgvc-aircraft-2013b); the archive is kept in the '
        'folder above it.'),
    root: Optional[Path] = typer.Option(None, '--root', hidden=True,
                                        help='Older spelling: the folder above the dataset.'),
    url: Optional[str] = typer.Option(
        None, '--url', help='A mirror of the archive instead of the official URL, or '
        'file:///path/to/archive of a copy already on this machine (checked and unpacked where '
        'it lies).'),
    md5: Optional[str] = typer.Option(None, '--md5',
                                      help="The MD5 of the mirror's archive, when it differs "
                                      'from the official one.'),
) -> None:
    """Download, verify and unpack a dataset; an interrupted download resumes."""
    with exit_on_user_error('run the same command again to resume the download'):
        if root is not None:
            download = DATASETS[dataset.value].download
            data_root = older_spelling(data_root, root / (download.unpacks_to if download
                                                          else dataset.value), '--root')
        download_dataset(dataset.value, data_root, url=url, md5=md5, console=Console())


def _summary_table(summary: DatasetSummary) -> Table:
    """A table of the images, classes and unreadable images of each split."""
    spec = DATASETS[summary.name]
    table = Table(title=f'{escape(spec.title)} at {escape(str(summary.root))}',
                  caption=f'{summary.num_classes} classes')
    for column in ('split', 'images', 'classes', 'unreadable'):
        table.add_column(column, justify='left' if column == 'split' else 'right')
    for split in summary.splits:
        unreadable = str(len(split.unreadable)) if summary.images_verified else 'not checked'
        table.add_row(split.name, str(split.num_images),
                      f'{split.num_classes}/{summary.num_classes}', unreadable)
    return table


@data_app.command()
def check(
    dataset: DatasetName = typer.Argument(..., help='The dataset to check.'),
    data_root: Optional[Path] = typer.Option(
        None, '--data-root',
        help="The dataset root. Defaults to the dataset's usual folder (e.g. data/CUB_200_2011 "
        'for cub, data/kt_demo for demo).'),
    verify_images: bool = typer.Option(True, '--verify-images/--no-verify-images',
                                       help='Open every image and report unreadable ones.'),
) -> None:
    """Check that a dataset loads as training will load it; exit 2 if it does not."""
    console = Console()
    with exit_on_user_error():
        root = data_root or Path(DATASETS[dataset.value].default_root)
        with console.status(f'loading {escape(str(root))}'):
            summary = summarise_dataset(dataset.value, root, verify_images=verify_images)
        console.print(_summary_table(summary))
        for warning in summary.coverage_warnings():
            console.print(warning, style='yellow', markup=False, highlight=False)
        if summary.unreadable:
            raise unreadable_error(summary.root, summary.unreadable)
