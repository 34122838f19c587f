"""``kt predict``: classify image files with an exported ensemble or a work dir's stages.

Images are prepared as the config's test pipeline does it, from the model's metadata:
decoded by OpenCV (BGR, EXIF orientation applied, as mmcv's ``LoadImageFromFile``),
resized to the pipeline's fixed ``Resize`` size with its interpolation (the aspect ratio
is not kept), centre-cropped like mmcv's ``CenterCrop``, converted to RGB when the config
does (``to_rgb``) and normalised with its mean/std unless the model does that itself.
"""
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Tuple

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import UserError, exit_on_user_error
from .ensemble import Fusion
from .training_options import STAGE_DATA_ROOT

if TYPE_CHECKING:
    import numpy as np

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.ppm', '.pgm')
# Images run through the model at once.
CHUNK = 16
# OpenCV's flags for mmcv's interpolation names (as mmcv's cv2 backend maps them).
CV2_INTERPOLATIONS = dict(nearest='INTER_NEAREST', bilinear='INTER_LINEAR',
                          bicubic='INTER_CUBIC', area='INTER_AREA', lanczos='INTER_LANCZOS4')


def predict(
    model: Path = typer.Argument(
        ..., help='An exported .onnx or .pt file (kt export), or a kt work dir.'),
    images: List[Path] = typer.Argument(
        ..., help='Image files, or folders searched recursively for '
        f'{", ".join(IMAGE_EXTENSIONS)} files.'),
    topk: int = typer.Option(5, '--topk', min=1, help='Classes to show per image.'),
    as_json: bool = typer.Option(False, '--json', help='Print one JSON object per image '
                                 'instead of tables.'),
    attention_out: Optional[Path] = typer.Option(
        None, '--attention-out', help="Write each image with every member's attention map "
        'over it to this folder (one PNG per image).'),
    models: Optional[str] = typer.Option(
        None, '--models', help='With a work dir: the stages to ensemble, e.g. 1,3, or distilled '
        'for the student of `kt distill` (default: all finished stages).'),
    fusion: Optional[Fusion] = typer.Option(
        None, help='With a work dir: softmax (average the softmaxes; the default) or logits '
        '(softmax of the summed logits).'),
    device: str = typer.Option('cpu', help='cpu or cuda[:N].'),
    threads: Optional[int] = typer.Option(
        None, min=1, help='CPU threads of the model (default: every CPU kt may use).'),
    data_root: Optional[Path] = STAGE_DATA_ROOT,
) -> None:
    """Print the top-k classes of each image (one line on stderr per unreadable image).

    Runs an int8 or fp16 file as any other. Exits non-zero only when no image could be read.
    """
    console = Console()
    with exit_on_user_error():
        from ..devices import checked_device
        device = checked_device(device)
        paths = collect_images(images)
        run, metadata = load_model(model, models, fusion and fusion.value,
                                   attention_out is not None, device, threads, data_root)
        if attention_out is not None:
            if metadata['attention_layout'] is None:
                raise UserError(f'{model} was exported without attention maps; export it with '
                                '--with-attention, or pass its work dir, to use --attention-out')
            attention_out.mkdir(parents=True, exist_ok=True)
        written: Dict[str, int] = {}
        read = 0
        for chunk in _chunks(paths, CHUNK):
            loaded = [(path, *prepared) for path in chunk
                      if (prepared := _prepare(path, metadata)) is not None]
            if not loaded:
                continue
            read += len(loaded)
            outputs = run(_model_input([crop for _, _, crop, _ in loaded], metadata))
            for k, (path, image, _, box) in enumerate(loaded):
                ranked = _ranked(outputs[0][k], metadata['classes'], topk)
                picture = None
                if attention_out is not None:
                    caption = f'{ranked[0]["name"]} ({ranked[0]["probability"]:.0%})'
                    picture = _write_attention(attention_out, path, image, box,
                                               _member_maps(outputs, k),
                                               _member_labels(metadata), caption, written)
                _show(console, path, ranked, picture, as_json)
        if not read:
            raise UserError(f'no image could be read ({len(paths)} given); pass image files '
                            f'({", ".join(IMAGE_EXTENSIONS)}) or folders holding them')


def collect_images(arguments: List[Path]) -> List[Path]:
    """The image files named or found (recursively, sorted) in folders.

    Args:
        arguments (list[Path]): Files and folders.

    Returns:
        list[Path]: Paths named directly (whatever their suffix, even missing
        ones: they are reported when read) and the image files under the folders.

    Raises:
        UserError: Nothing to classify.
    """
    paths: List[Path] = []
    for argument in arguments:
        if argument.is_dir():
            paths += sorted(path for path in argument.rglob('*')
                            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())
        else:
            paths.append(argument)
    if not paths:
        raise UserError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in '
                        f'{", ".join(map(str, arguments))}')
    return paths


def load_model(model: Path, models: Optional[str], fusion: Optional[str],
               with_attention: bool, device: str, threads: Optional[int] = None,
               data_root: Optional[Path] = None) -> Tuple[Callable, dict]:
    """A function from model inputs to outputs, and the model's metadata.

    Args:
        model (Path): An exported file or a work dir.
        models (str, optional): ``--models`` (work dirs only).
        fusion (str, optional): The fusion (work dirs only; default softmax).
        with_attention (bool): Compute attention maps (work dirs only; an
            exported file has them or not).
        device (str): Where to run.
        threads (int, optional): CPU threads. Defaults to None (every CPU
            this process may use).
        data_root (Path, optional): With a work dir: its data, for the class
            names of an ImageFolder tree. Defaults to None (found if at hand).

    Returns:
        tuple: ``run(inputs) -> [outputs]`` on numpy arrays, and the metadata.

    Raises:
        UserError: No such model, or a file ``kt export`` did not write.
    """
    from ..cpus import available_cpus
    from ..deployment.export_verifier import FORMATS, ExportedModel, torch_runner
    from ..reading import open_regular

    threads = threads or available_cpus()
    if model.is_dir():
        import torch
        torch.set_num_threads(threads)
        from ..deployment.ensemble_module import load_work_dir_ensemble
        from ..deployment.export import ensemble_metadata
        from ..stages.work_dir import parse_models
        ensemble = load_work_dir_ensemble(model, parse_models(models), fusion or 'softmax',
                                          with_attention, device=device, data_root=data_root)
        return torch_runner(ensemble.module, device), ensemble_metadata(ensemble, 'pytorch')
    if not model.is_file():
        raise UserError(f'{model} does not exist; pass a file written by `kt export` or a kt '
                        'work dir')
    if model.suffix.lower() not in FORMATS:
        raise UserError(f'{model} is neither an exported .onnx or .pt file nor a work dir; '
                        'pass a file written by `kt export` or a kt work dir')
    if models or fusion or data_root:
        raise UserError('--models, --fusion and --data-root apply to work dirs; an exported '
                        'file has its stages, fusion and class names fixed (see `kt export '
                        '--models --fusion`)')
    # A received file is run only as the regular file it is (no link elsewhere, FIFO, device).
    os.close(open_regular(model))
    try:
        exported = ExportedModel(model, device, threads)
    except UserError:
        raise
    except Exception as error:  # a corrupt or foreign file fails in the runtime's own way
        message = str(error).strip().splitlines()
        reason = message[0] if message else type(error).__name__
        raise UserError(f'{model} cannot be loaded ({reason}); pass a file written by '
                        '`kt export`') from None
    return exported, exported.metadata


def fit_to_input(image: 'np.ndarray',
                 preprocessing: dict) -> Tuple['np.ndarray', Tuple[int, int, int, int]]:
    """Resize and centre-crop a decoded image as the config's test pipeline does.

    Args:
        image (np.ndarray): The image (H, W, 3), uint8, BGR.
        preprocessing (dict): The metadata's ``preprocessing``.

    Returns:
        tuple: The crop (h, w, 3) and the box (x1, y1, x2, y2) it covers in
        the original image.
    """
    import cv2

    height, width = image.shape[:2]
    scale_x = scale_y = 1.0
    if preprocessing['resize']:
        resize = tuple(preprocessing['resize'])
        interpolation = getattr(cv2, CV2_INTERPOLATIONS[preprocessing['interpolation']])
        image = cv2.resize(image, resize, interpolation=interpolation)
        scale_x, scale_y = resize[0] / width, resize[1] / height
    x1 = y1 = 0
    if preprocessing['crop']:
        crop_width, crop_height = preprocessing['crop']
        x1 = max(0, int(round((image.shape[1] - crop_width) / 2.)))
        y1 = max(0, int(round((image.shape[0] - crop_height) / 2.)))
        image = image[y1:y1 + crop_height, x1:x1 + crop_width]
    box = (round(x1 / scale_x), round(y1 / scale_y),
           round((x1 + image.shape[1]) / scale_x), round((y1 + image.shape[0]) / scale_y))
    return image, box


def _prepare(path: Path, metadata: dict) -> Optional[tuple]:
    """Decode and fit one image; None (and one line on stderr) when that fails."""
    import cv2
    import numpy as np

    try:
        image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    except FileNotFoundError:
        print(f'error: {path} does not exist; skipped', file=sys.stderr)
        return None
    except (OSError, cv2.error):
        image = None
    if image is None:
        print(f'error: cannot read {path} as an image; skipped', file=sys.stderr)
        return None
    crop, box = fit_to_input(image, metadata['preprocessing'])
    height, width = metadata['input']['size']
    if crop.shape[:2] != (height, width):
        print(f'error: {path} is smaller than the {width} x {height} input crop; skipped',
              file=sys.stderr)
        return None
    return image, crop, box


def _model_input(crops: list, metadata: dict) -> 'np.ndarray':
    import numpy as np

    from ..deployment.export_verifier import to_model_input
    return to_model_input(np.stack(crops).transpose(0, 3, 1, 2), metadata)


def _chunks(items: List[Path], size: int) -> Iterator[List[Path]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _ranked(probabilities: 'np.ndarray', classes: List[str], topk: int) -> List[dict]:
    order = probabilities.argsort()[::-1][:topk]
    return [dict(rank=rank, index=int(index), name=classes[index],
                 probability=float(probabilities[index]))
            for rank, index in enumerate(order, start=1)]


def _member_maps(outputs: list, k: int) -> list:
    """Image k's attention maps, one per member, stacked or separate outputs alike."""
    if outputs[1].ndim == 4:
        return list(outputs[1][k])
    return [output[k] for output in outputs[1:]]


def _member_labels(metadata: dict) -> List[str]:
    """``stage k`` for each member (``student`` for a distilled student)."""
    return [f'stage {stage["index"]}' if stage['index'] else 'student'
            for stage in metadata['stages']]


def _write_attention(folder: Path, path: Path, image: 'np.ndarray', box: tuple, maps: list,
                     labels: List[str], caption: str, written: Dict[str, int]) -> Path:
    """Write the image and one named overlay per member side by side, under the
    ensemble's prediction, as ``<stem>.png``."""
    from PIL import Image

    from ..reports.attention_overlay import attention_strip

    count = written.get(path.stem, 0)
    written[path.stem] = count + 1
    target = folder / (f'{path.stem}.png' if not count else f'{path.stem}-{count + 1}.png')
    Image.fromarray(attention_strip(image[..., ::-1], maps, labels, f'ensemble: {caption}',
                                    box)).save(target)
    return target


def _show(console: Console, path: Path, ranked: List[dict], picture: Optional[Path],
          as_json: bool) -> None:
    if as_json:
        record = dict(image=str(path), predictions=ranked)
        if picture is not None:
            record['attention'] = str(picture)
        print(json.dumps(record), flush=True)
        return
    console.print(f'[bold]{escape(str(path))}[/]', soft_wrap=True)
    table = Table()
    table.add_column('#', justify='right')
    table.add_column('class')
    table.add_column('probability', justify='right')
    for r in ranked:
        table.add_row(str(r['rank']), escape(r['name']), f"{r['probability']:.4f}")
    console.print(table)
    if picture is not None:
        console.print(f'attention: {escape(str(picture))}', soft_wrap=True)
