"""``kt export``: the ensemble of a work dir as one checked ONNX or TorchScript file."""
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import exit_on_user_error
from .ensemble import Fusion


class ExportFormat(str, Enum):
    onnx = 'onnx'
    torchscript = 'torchscript'


def export(
    work_dir: Path = typer.Argument(..., help='A work dir written by `kt train`.'),
    model_format: ExportFormat = typer.Option(..., '--format', help='onnx (opset 18, for '
                                              'onnxruntime) or torchscript (torch.jit.load).'),
    models: Optional[str] = typer.Option(
        None, '--models', help='Stages to ensemble, e.g. 1,2,3, or distilled for the student of '
        '`kt distill` alone (default: all finished stages).'),
    out: Optional[Path] = typer.Option(
        None, '--out', help='The file to write (default: WORK_DIR/exports/ensemble_<stages>'
        '.onnx or .pt).'),
    fusion: Fusion = typer.Option(
        Fusion.softmax, help="softmax: average the members' softmax; logits: softmax of the "
        "summed logits (the authors' fusion)."),
    with_attention: bool = typer.Option(
        False, '--with-attention', help="Also output each member's normalised attention map."),
    include_preprocessing: bool = typer.Option(
        False, '--include-preprocessing', help='Normalise in the graph: callers pass 0..255 '
        'images (uint8 cast to float32) instead of normalised ones.'),
    batch_size: int = typer.Option(
        8, min=2, help='Test images the check runs at once (it also runs batch 1).'),
    device: str = typer.Option('cpu', help='Where to trace and check: cpu or cuda[:N].'),
) -> None:
    """Write the ensemble of a work dir's stages to one ONNX or TorchScript file.

    The file takes a float image batch (N x 3 x H x W, any N) and returns the fused class
    probabilities (and, with --with-attention, the attention maps); input size,
    normalisation, class names and stages travel in it as metadata (kt.json). The file is
    then loaded in a fresh process and must reproduce the PyTorch ensemble on test images
    (max abs difference <= 1e-4, same top-1), or it is deleted.
    """
    console = Console()
    with exit_on_user_error():
        from ..deployment.ensemble_module import load_work_dir_ensemble
        from ..deployment.export import default_output, export_ensemble
        from ..stages.work_dir import parse_models

        ensemble = load_work_dir_ensemble(work_dir, parse_models(models), fusion.value,
                                          with_attention, include_preprocessing, device)
        path = out or default_output(work_dir, ensemble.indices, model_format.value)
        with console.status(f'exporting {members_label(ensemble.indices)} to '
                            f'{escape(str(path))}'):
            result = export_ensemble(ensemble, model_format.value, path, batch_size)
        print_check(console, result)


def members_label(indices: list) -> str:
    """``stages 1, 2, 3``, or ``the distilled student``."""
    from ..stages.work_dir import STUDENT_INDEX
    if list(indices) == [STUDENT_INDEX]:
        return 'the distilled student'
    return 'stages ' + ', '.join(str(index) for index in indices)


def print_check(console: Console, result) -> None:
    """The check's figures: one row per batch, the file and its size in the caption.

    Args:
        console (Console): Where to print.
        result (ExportResult): What :func:`ktcli.deployment.export.export_ensemble` returned.
    """
    metadata = result.metadata
    indices = [stage['index'] for stage in metadata['stages']]
    console.print(f'{metadata["format"]} export of {members_label(indices)} ({metadata["fusion"]} '
                  f'fusion), checked in a fresh process on {result.images}:', soft_wrap=True)
    table = Table()
    for column in ('batch', 'max |Δ prob|', 'top-1 agree', 'max |Δ attention|'):
        table.add_column(column, justify='right')
    for row in result.rows:
        attention = '-' if row.attention_diff is None else f'{row.attention_diff:.2e}'
        table.add_row(str(row.size), f'{row.probability_diff:.2e}',
                      f'{row.top1_agree}/{row.size}', attention)
    console.print(table)
    size = metadata['input']['size']
    console.print(f'[green]wrote[/] {escape(str(result.path))} '
                  f'({result.bytes / 2 ** 20:.1f} MiB): input images N x 3 x {size[0]} x '
                  f'{size[1]} {metadata["input"]["channel_order"]}, '
                  f'{metadata["input"]["values"]}; outputs {", ".join(metadata["outputs"])}',
                  soft_wrap=True)
