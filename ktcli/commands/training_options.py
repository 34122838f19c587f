"""The training options shared by ``kt train`` and ``kt ablate``, declared once."""
import functools
import inspect
import math
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, NamedTuple, Optional

import typer
from rich.console import Console

from ..data.specs import DATASETS, DatasetSpec, dataset_spec
from ..errors import EXIT_USER_ERROR

if TYPE_CHECKING:
    from ..data.fingerprint import DataFingerprint

DatasetName = Enum('DatasetName', {name: name for name in DATASETS}, type=str)


class Weighting(str, Enum):
    fixed = 'fixed'
    adaptive = 'adaptive'


class CheckpointRule(str, Enum):
    last = 'last'
    best_val = 'best-val'
    best_test = 'best-test'


class OutputStride(str, Enum):
    s8 = '8'
    s16 = '16'
    s32 = '32'


class Launcher(str, Enum):
    none = 'none'
    pytorch = 'pytorch'
    slurm = 'slurm'


class PreparedData(NamedTuple):
    """A dataset root that passed the data check, and what it holds."""

    root: Path
    fingerprint: 'DataFingerprint'


# ``--data-root`` of the commands that read a work dir's stages and their data.
STAGE_DATA_ROOT = typer.Option(
    None, '--data-root', help='The dataset folder the stages were trained on, wherever it is '
    'now (default: a folder where kt has seen that data on this machine, or the '
    "dataset's usual folder under data/).")


def finite_non_negative(param: typer.CallbackParam, value: float) -> float:
    """Refuse nan, inf and negative values of a float option while the command line is
    parsed, in one line."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        typer.echo(f'error: {param.opts[0]} takes a finite number >= 0, got {value}', err=True)
        raise typer.Exit(EXIT_USER_ERROR)
    return value


# The panels of `kt train --help` and `kt ablate ... --help`.
DATA_PANEL = 'Data'
MODEL_PANEL = 'Model'
SCHEDULE_PANEL = 'Schedule'
SEQUENCE_PANEL = 'Sequence'
RUNNER_PANEL = 'Runner and output'


def _options_template(
    dataset: DatasetName = typer.Option('cub', help='Which dataset to train on.',
                                        rich_help_panel=DATA_PANEL),
    data_root: Optional[Path] = typer.Option(
        None, help="Dataset folder (default: the dataset's usual folder under data/).",
        rich_help_panel=DATA_PANEL),
    val_split: str = typer.Option(
        'none', help='Images of the training split held out for validation, scored every '
        'epoch and used by --select-on val: none (train on all, as the paper), a fraction '
        '(0.2) or a number per class (5), stratified and fixed by the data; official: '
        "FGVC-Aircraft's own val list. Never taken from the test split.",
        rich_help_panel=DATA_PANEL),
    backbone: str = typer.Option(
        'resnet50', help='resnet50, vgg16, efficientnet_lite0, resnet18_tiny (any '
        'configs/_base_/models/<name>_kt.py), or timm/<model name> for any timm CNN; a '
        'comma-separated list gives stage k the k-th (the last one repeats).',
        rich_help_panel=MODEL_PANEL),
    weighting: Weighting = typer.Option(
        Weighting.fixed, help="fixed: the paper's alpha * L_OR; adaptive: the authors' code, "
        'rescaled every step to alpha * L_CE.', rich_help_panel=SEQUENCE_PANEL),
    epochs: int = typer.Option(100, min=1, help='Epochs per model.',
                               rich_help_panel=SCHEDULE_PANEL),
    batch_size: int = typer.Option(32, min=1, help='Total batch size over all processes.',
                                   rich_help_panel=SCHEDULE_PANEL),
    lr: float = typer.Option(0.01, callback=finite_non_negative,
                             help='Head learning rate; a pretrained backbone learns at a '
                             "tenth of it (the paper's ratio).", rich_help_panel=SCHEDULE_PANEL),
    img_size: Optional[int] = typer.Option(
        None, min=8, help='Crop size in pixels (default: 448, the paper; 64 for demo).',
        rich_help_panel=SCHEDULE_PANEL),
    pretrained: str = typer.Option(
        'default', help="Backbone initialisation: default (the backbone's ImageNet weights; "
        "timm's own for timm/...), none (from scratch), a checkpoint file or a URL.",
        rich_help_panel=MODEL_PANEL),
    frozen_stages: Optional[int] = typer.Option(
        None, min=-1, help='Freeze the backbone stem and this many stages after it (-1: '
        "nothing; default: the backbone config's choice).", rich_help_panel=MODEL_PANEL),
    output_stride: Optional[OutputStride] = typer.Option(
        None, help='Stride of the last feature map of a timm backbone: 16 or 8 dilate its '
        'last stages for a 2x or 4x larger attention map (default: its own, usually 32).',
        rich_help_panel=MODEL_PANEL),
    amp: bool = typer.Option(False, '--amp', help='Mixed-precision training (needs a GPU).',
                             rich_help_panel=SCHEDULE_PANEL),
    checkpoint: CheckpointRule = typer.Option(
        'last', help='The epoch each model hands on and is scored with: last (default); '
        'best-val, the best on the --val-split images; best-test, the best on the test set '
        "(the authors' protocol; every figure says \"selected on the test set\").",
        rich_help_panel=SCHEDULE_PANEL),
    work_dir: Optional[Path] = typer.Option(
        None, help='Where stages, manifest and results go '
        '(default: work_dirs/<backbone>_<dataset>).', rich_help_panel=RUNNER_PANEL),
    gpus: int = typer.Option(1, min=1, help='Processes per stage (one per GPU; on a CPU-only '
                             'machine, CPU processes with gloo).', rich_help_panel=RUNNER_PANEL),
    launcher: Launcher = typer.Option(
        Launcher.none, help='none: this machine (torchrun when --gpus > 1); pytorch: torchrun; '
        "slurm: one sbatch job per stage, each after its teachers' jobs (follow them with "
        '`kt status`, then rerun the command to score).', rich_help_panel=RUNNER_PANEL),
    parallel: int = typer.Option(
        1, min=1, help='Train up to this many independent stages at once on this machine, '
        'each on its own --gpus GPUs or, without GPUs, its share of the CPUs.',
        rich_help_panel=RUNNER_PANEL),
    slurm_args: str = typer.Option(
        '', help='sbatch options for every stage job of --launcher slurm, e.g. "-p gpu '
        '--gres=gpu:4 --cpus-per-task=5 --time=24:00:00"; --cpus-per-task=K gives each '
        'process K torch threads and at most K data loader workers (default: 1 CPU).',
        rich_help_panel=RUNNER_PANEL),
    cfg_options: List[str] = typer.Option(
        [], '--cfg-options', help='KEY=VALUE config overrides passed to mmengine, several '
        'after one --cfg-options as in mmengine\'s tools (a=1 b=2).',
        rich_help_panel=RUNNER_PANEL),
    vis_backend: List[str] = typer.Option(
        [], help='Also log to tensorboard, wandb, mlflow, ... (repeatable).',
        rich_help_panel=RUNNER_PANEL),
    verbose: bool = typer.Option(False, '--verbose', '-v', help="Show the stages' full logs.",
                                 rich_help_panel=RUNNER_PANEL),
    dry_run: bool = typer.Option(False, '--dry-run', help='Say how many stages are planned, '
                                 'reused and to train, then exit.', rich_help_panel=RUNNER_PANEL),
) -> None:
    """Declares the shared options (never called)."""


@dataclass(frozen=True)
class TrainingOptions:
    """The values of the shared options of one command line."""

    dataset: DatasetName
    data_root: Optional[Path]
    val_split: str
    checkpoint: CheckpointRule
    backbone: str
    weighting: Weighting
    epochs: int
    batch_size: int
    lr: float
    img_size: Optional[int]
    pretrained: str
    frozen_stages: Optional[int]
    output_stride: Optional[OutputStride]
    amp: bool
    work_dir: Optional[Path]
    gpus: int
    launcher: Launcher
    parallel: int
    slurm_args: str
    cfg_options: List[str]
    vis_backend: List[str]
    verbose: bool
    dry_run: bool

    def spec(self) -> DatasetSpec:
        """The chosen dataset."""
        return dataset_spec(self.dataset.value)

    def default_work_dir(self, prefix: str = '') -> Path:
        """``work_dir``, else ``work_dirs/<prefix><backbone>_<dataset>`` (timm/x as timm-x)."""
        backbone = self.backbone.replace('/', '-').replace(',', '+')
        return self.work_dir or Path('work_dirs') / f'{prefix}{backbone}_{self.dataset.value}'

    def prepared_data_root(self, console: Console) -> PreparedData:
        """Check the data as ``kt data check`` does (writing the demo data on first use),
        before any stage starts; return its root and its fingerprint (and remember, on
        this machine, that the root holds that data)."""
        spec = self.spec()
        root = Path(self.data_root or spec.default_root)
        if spec.name == 'demo' and not root.exists():
            from ..data.demo import make_demo_dataset
            console.print(f'writing the demo dataset to {root}')
            make_demo_dataset(root)
        from ..data.check import verified_data_root
        from ..data.data_folders import remember_folder
        from ..data.fingerprint import dataset_fingerprint
        root = verified_data_root(spec.name, root, warn=lambda line: console.print(
            line, style='yellow', markup=False, highlight=False))
        fingerprint = dataset_fingerprint(spec.name, root)
        remember_folder(fingerprint, root)
        return PreparedData(root, fingerprint)

    def settings(self, data: PreparedData, alpha: float, seed: int):
        """The :class:`TrainSettings` of a sequence with this alpha and seed."""
        from ..stages.settings import TrainSettings, parse_cfg_options
        spec = self.spec()
        data_root = data.root
        return TrainSettings(
            dataset=spec.name, data_root=str(data_root), backbone=self.backbone, alpha=alpha,
            weighting=self.weighting.value, epochs=self.epochs, batch_size=self.batch_size,
            lr=self.lr, img_size=self.img_size, seed=seed, pretrained=self.pretrained,
            frozen_stages=self.frozen_stages,
            output_stride=int(self.output_stride.value) if self.output_stride else None,
            amp=self.amp, processes=self.gpus,
            num_classes=_count_classes(data_root) if spec.name == 'custom' else None,
            cfg_options=tuple(parse_cfg_options(self.cfg_options).items()),
            vis_backends=tuple(self.vis_backend), data_fingerprint=data.fingerprint,
            val_split=self.validation().text(), checkpoint=self.checkpoint.value)

    def validation(self):
        """``--val-split`` as a :class:`~ktcli.data.validation_split.SplitChoice`."""
        from ..data.validation_split import parse_val_split
        return parse_val_split(self.val_split)

    def scheduler(self, console: Console):
        """What trains the stages: Slurm jobs, or this machine ``--parallel`` at a time."""
        return make_scheduler(self.launcher, self.gpus, self.parallel, self.slurm_args,
                              self.verbose, console)

    def sequences(self, work_dir: Path, console: Console):
        """The :class:`~ktcli.sequencing.sequence.WorkDirSequences` this command trains in
        ``work_dir``, with the scheduler these options choose."""
        from ..sequencing.sequence import WorkDirSequences
        return WorkDirSequences(work_dir, self.scheduler(console), console)


def with_training_options(command: Callable) -> Callable:
    """Give a Typer command the shared options, passed to it as ``options``.

    The command declares its own options and one ``options:
    TrainingOptions`` parameter; the shared ones are appended to its
    signature, so each is declared once for all commands.
    """
    own = [p for p in inspect.signature(command).parameters.values() if p.name != 'options']
    shared = list(inspect.signature(_options_template).parameters.values())
    names = [f.name for f in fields(TrainingOptions)]

    @functools.wraps(command)
    def wrapper(**kwargs):
        options = TrainingOptions(**{name: kwargs.pop(name) for name in names})
        return command(options=options, **kwargs)

    wrapper.__signature__ = inspect.Signature(own + shared)
    return wrapper


def make_scheduler(launcher: Launcher, processes: int = 1, parallel: int = 1,
                   slurm_args: str = '', verbose: bool = False,
                   console: Optional[Console] = None):
    """A :class:`SlurmScheduler` for ``--launcher slurm``, else a :class:`LocalScheduler`
    (torchrun when a stage has several processes)."""
    if launcher == Launcher.slurm:
        from ..sequencing.slurm import SlurmScheduler
        return SlurmScheduler(processes, slurm_args, console)
    from ..sequencing.scheduler import LocalScheduler
    if launcher == Launcher.none and processes > 1:
        launcher = Launcher.pytorch
    return LocalScheduler(processes, launcher.value, parallel, verbose, console)


def _count_classes(root: Path) -> int:
    """Class folders under train/ (check_layout has made sure there are some)."""
    return sum(1 for path in (root / 'train').iterdir() if path.is_dir())
