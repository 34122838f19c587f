"""``kt train``: the whole sequence of N models in one command."""
import json
import time
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .dataset_specs import DATASETS, dataset_spec
from .errors import UserError, exit_on_user_error


class Weighting(str, Enum):
    fixed = 'fixed'
    adaptive = 'adaptive'


class Launcher(str, Enum):
    none = 'none'
    pytorch = 'pytorch'
    slurm = 'slurm'


DatasetName = Enum('DatasetName', {name: name for name in DATASETS}, type=str)
RESULTS_NAME = 'results.json'


def train(
    dataset: DatasetName = typer.Option('cub', help='Which dataset to train on.'),
    data_root: Optional[Path] = typer.Option(
        None, help="Dataset folder (default: the dataset's usual folder under data/)."),
    backbone: str = typer.Option(
        'resnet50', help='resnet50, vgg16, or any configs/_base_/models/<name>_kt.py we ship '
        '(e.g. resnet18_tiny).'),
    n: int = typer.Option(5, min=1, help='Number of models in the sequence.'),
    alpha: float = typer.Option(0.5, min=0.0, help='Weight of the OR-loss.'),
    weighting: Weighting = typer.Option(
        Weighting.fixed, help="fixed: the paper's alpha * L_OR; adaptive: the authors' code, "
        'rescaled every step to alpha * L_CE.'),
    epochs: int = typer.Option(100, min=1, help='Epochs per model.'),
    batch_size: int = typer.Option(32, min=1, help='Total batch size over all processes.'),
    lr: float = typer.Option(0.01, min=0.0, help="Head learning rate; a pretrained backbone "
                             "learns at a tenth of it (the paper's ratio)."),
    img_size: Optional[int] = typer.Option(
        None, min=8, help='Crop size in pixels (default: 448, the paper; 64 for demo).'),
    seed: int = typer.Option(0, help='Random seed.'),
    pretrained: str = typer.Option(
        'default', help='Backbone initialisation: default (ImageNet), none, a file or a URL.'),
    work_dir: Optional[Path] = typer.Option(
        None, help='Where stages, manifest and results go '
        '(default: work_dirs/<backbone>_<dataset>).'),
    gpus: int = typer.Option(1, min=1, help='Processes per stage (one per GPU; on a CPU-only '
                             'machine, CPU processes with gloo).'),
    launcher: Launcher = typer.Option(Launcher.none, help='none: this machine (torchrun when '
                                      '--gpus > 1); pytorch: torchrun; slurm: srun.'),
    srun_args: str = typer.Option(
        '', help='Extra srun options for --launcher slurm, e.g. "-p gpu --gres=gpu:4 '
        '--ntasks-per-node=4 --cpus-per-task=5 --time=24:00:00".'),
    cfg_options: List[str] = typer.Option(
        [], '--cfg-options', help='KEY=VALUE config override passed to mmengine (repeatable).'),
    vis_backend: List[str] = typer.Option(
        [], help='Also log to tensorboard, wandb, mlflow, ... (repeatable).'),
    verbose: bool = typer.Option(False, '--verbose', '-v', help="Show the stages' full logs."),
) -> None:
    """Train model 1 with cross-entropy, then models 2..N with the OR-loss against all
    earlier ones; report each model's and the ensemble's top-1.

    Finished stages are reused (same settings, same teachers) and an interrupted stage
    resumes from its last checkpoint: rerun the same command.
    """
    console = Console()
    with exit_on_user_error('rerun the same command to resume'):
        started = time.monotonic()
        spec = dataset_spec(dataset.value)
        root = Path(data_root or spec.default_root)
        if spec.name == 'demo' and not root.exists():
            from .demo_data import make_demo_dataset
            console.print(f'writing the demo dataset to {root}')
            make_demo_dataset(root)
        from .data_check import check_layout
        root = check_layout(spec.name, root)
        if launcher == Launcher.none and gpus > 1:
            launcher = Launcher.pytorch

        from .sequence import SequenceTrainer
        from .stage_config import TrainSettings, parse_cfg_options
        settings = TrainSettings(
            dataset=spec.name, data_root=str(root), backbone=backbone, alpha=alpha,
            weighting=weighting.value, epochs=epochs, batch_size=batch_size, lr=lr,
            img_size=img_size, seed=seed, pretrained=pretrained, processes=gpus,
            num_classes=_count_classes(root) if spec.name == 'custom' else None,
            cfg_options=tuple(parse_cfg_options(cfg_options).items()),
            vis_backends=tuple(vis_backend))
        work_dir = work_dir or Path('work_dirs') / f'{backbone}_{spec.name}'
        trainer = SequenceTrainer(work_dir, settings, launcher.value, srun_args, verbose, console)
        results = trainer.train(n)
        print_results(console, results, f'{backbone} on {spec.title}, alpha {alpha} '
                      f'({weighting.value}), {epochs} epochs')
        write_results(trainer.work_dir, settings, results)
        console.print(f'results: {trainer.work_dir / RESULTS_NAME} '
                      f'({time.monotonic() - started:.0f} s)')


def _count_classes(root: Path) -> int:
    classes = [path for path in (root / 'train').iterdir() if path.is_dir()]
    if not classes:
        raise UserError(f'{root / "train"} holds no class folders')
    return len(classes)


def print_results(console: Console, results: list, title: str) -> None:
    """The per-stage table: single and ensemble top-1, training time."""
    table = Table(title=title)
    for column in ('stage', 'top-1 (single)', 'top-1 (ensemble 1..k)', 'training time'):
        table.add_column(column, justify='right')
    for result in results:
        minutes, seconds = divmod(round(result.train_seconds), 60)
        table.add_row(f'{result.index}', f'{result.top1:.2f}', f'{result.ensemble_top1:.2f}',
                      f'{minutes}:{seconds:02d}' + (' (reused)' if result.reused else ''))
    console.print(table)


def write_results(work_dir: Path, settings, results: list) -> None:
    """Write results.json: the settings and, per stage, the figures of the table."""
    (work_dir / RESULTS_NAME).write_text(json.dumps(dict(
        settings={key: value for key, value in vars(settings).items()
                  if key != 'cfg_options'} | dict(cfg_options=dict(settings.cfg_options)),
        stages=[vars(result) for result in results]), indent=2, default=str))
