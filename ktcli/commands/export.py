"""``kt export``: the ensemble of a work dir as one checked ONNX or TorchScript file."""
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import UserError, exit_on_user_error
from .ensemble import Fusion
from .training_options import STAGE_DATA_ROOT

if TYPE_CHECKING:
    from ..deployment.export import Precision


class ExportFormat(str, Enum):
    onnx = 'onnx'
    torchscript = 'torchscript'


class ExportDtype(str, Enum):
    fp32 = 'fp32'
    int8 = 'int8'
    fp16 = 'fp16'


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
    dtype: ExportDtype = typer.Option(
        ExportDtype.fp32, help='fp32; int8 (ONNX only: static quantisation, calibrated on '
        'training images, for CPUs); fp16 (ONNX only: for GPUs, slow on a CPU). int8 and fp16 '
        'are kept only if they pass the accuracy check on the test split.'),
    calibration_images: Optional[int] = typer.Option(
        None, min=1, help='int8: training images to calibrate on, spread over the split '
        '(default 128).'),
    min_agreement: Optional[float] = typer.Option(
        None, min=0, max=100, help='int8/fp16: least % of test images on which the top-1 must '
        'equal the fp32 ensemble\'s (default 99).'),
    top1_tolerance: Optional[float] = typer.Option(
        None, min=0, help="int8/fp16: largest difference from the fp32 ensemble's top-1, in "
        'points, either way (default 0.5).'),
    data_root: Optional[Path] = STAGE_DATA_ROOT,
) -> None:
    """Write the ensemble of a work dir's stages to one ONNX or TorchScript file.

    The file takes a float image batch (N x 3 x H x W, any N) and returns the fused class
    probabilities (and, with --with-attention, the attention maps); input size,
    normalisation, class names, stages and precision travel in it as metadata (kt.json).
    An fp32 file is then loaded in a fresh process and must reproduce the PyTorch ensemble
    on test images (max abs difference <= 1e-4, same top-1), or it is deleted.

    --dtype int8 quantises that checked fp32 ONNX graph with ONNX Runtime's static
    quantisation (QDQ; int8 weights per channel, uint8 activations with ranges calibrated on
    training images read as the test pipeline reads them). Static, because ONNX Runtime's
    dynamic quantisation turns convolutions into ConvInteger ops that are slower than fp32
    on CPUs.
    --dtype fp16 converts it to float16. Either is judged in a fresh process on the whole
    test split: top-1 agreement with the fp32 ensemble >= 99% and top-1 within 0.5 points of
    it; the figures are printed and stored in the file, and a file that misses them is not
    kept (exit code 2).
    """
    console = Console()
    with exit_on_user_error():
        from ..deployment.ensemble_module import load_work_dir_ensemble
        from ..deployment.export import default_output, export_ensemble
        from ..stages.work_dir import parse_models

        from ..devices import checked_device
        from ..reading import no_links_below
        precision = precision_of(dtype.value, calibration_images, min_agreement,
                                 top1_tolerance)
        device = checked_device(device)
        ensemble = load_work_dir_ensemble(work_dir, parse_models(models), fusion.value,
                                          with_attention, include_preprocessing, device,
                                          data_root, data_required=dtype != ExportDtype.fp32)
        path = out or default_output(work_dir, ensemble.indices, model_format.value,
                                     dtype.value)
        if out is None:
            # WORK_DIR/exports must be a folder of the work dir (a link at the file itself is
            # replaced, not followed).
            no_links_below(work_dir, path.parent.name)
        with console.status(f'exporting {members_label(ensemble.indices)} to '
                            f'{escape(str(path))}'):
            result = export_ensemble(ensemble, model_format.value, path, batch_size, precision)
        print_check(console, result)


def precision_of(dtype: str, calibration_images: Optional[int], min_agreement: Optional[float],
                 top1_tolerance: Optional[float]) -> 'Precision':
    """The precision the options ask for (defaults where an option is not given).

    Raises:
        UserError: An option that does not apply to ``dtype``.
    """
    from ..deployment.accuracy_check import AccuracyThresholds
    from ..deployment.export import Precision

    if calibration_images is not None and dtype != 'int8':
        raise UserError(f'--calibration-images applies to --dtype int8, not {dtype}')
    thresholds = {name: value for name, value in (('min_agreement', min_agreement),
                                                  ('top1_tolerance', top1_tolerance))
                  if value is not None}
    if dtype == 'fp32' and thresholds:
        raise UserError('--min-agreement and --top1-tolerance apply to --dtype int8 and fp16; '
                        'an fp32 file must reproduce the ensemble to 1e-4')
    calibration = {} if calibration_images is None else dict(calibration_images=calibration_images)
    return Precision(dtype, thresholds=AccuracyThresholds(**thresholds), **calibration)


def members_label(indices: list) -> str:
    """``stages 1, 2, 3``, or ``the distilled student``."""
    from ..stages.records import STUDENT_INDEX
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
    kind, checked = metadata['format'], 'checked'
    if result.accuracy:
        kind, checked = f'{kind} {metadata["dtype"]}', 'its fp32 graph checked'
    console.print(f'{kind} export of {members_label(indices)} ({metadata["fusion"]} fusion), '
                  f'{checked} in a fresh process on {result.images}:', soft_wrap=True)
    table = Table()
    for column in ('batch', 'max |Δ prob|', 'top-1 agree', 'max |Δ attention|'):
        table.add_column(column, justify='right')
    for row in result.rows:
        attention = '-' if row.attention_diff is None else f'{row.attention_diff:.2e}'
        table.add_row(str(row.size), f'{row.probability_diff:.2e}',
                      f'{row.top1_agree}/{row.size}', attention)
    console.print(table)
    if result.accuracy:
        print_accuracy(console, metadata['dtype'], result.accuracy)
    size = metadata['input']['size']
    console.print(f'[green]wrote[/] {escape(str(result.path))} '
                  f'({result.bytes / 2 ** 20:.1f} MiB): input images N x 3 x {size[0]} x '
                  f'{size[1]} {metadata["input"]["channel_order"]}, '
                  f'{metadata["input"]["values"]}; outputs {", ".join(metadata["outputs"])}',
                  soft_wrap=True)


def print_accuracy(console: Console, dtype: str, accuracy) -> None:
    """The accuracy check of an int8 or fp16 file against the fp32 ensemble.

    Args:
        console (Console): Where to print.
        dtype (str): The file's precision.
        accuracy (AccuracyFigures): The figures.
    """
    from ..scoring.comparison_text import comparison_text, resolution
    console.print(f'{dtype} accuracy check in a fresh process on the {accuracy.images} test '
                  'images:', soft_wrap=True)
    comparison = accuracy.comparison
    table = Table(caption=f'Δ: {dtype} − fp32 top-1 (allowed ±{accuracy.top1_tolerance:g}), '
                  f'95% paired interval, McNemar p; {resolution([comparison], accuracy.images)}')
    for column in ('images', 'top-1 agreement', 'fp32 top-1', f'{dtype} top-1', 'Δ top-1'):
        table.add_column(column, justify='right')
    table.add_row(str(accuracy.images),
                  f'{accuracy.agreement:.2f}% (≥ {accuracy.min_agreement:g}%)',
                  f'{accuracy.fp32_top1:.2f}%', f'{accuracy.top1:.2f}%',
                  comparison_text(comparison, cell=True))
    console.print(table)
