"""Write an ensemble to one ONNX or TorchScript file and prove, in a fresh process, that it works.

The file holds the whole :class:`~ktcli.deployment.ensemble_module.EnsembleModule` (all members
and the fusion) with a dynamic batch axis, plus one JSON blob of metadata (``kt.json``: input size,
normalisation, channel order, class names, stages, fusion, outputs) as an ONNX
``metadata_props`` entry or a TorchScript extra file. After writing, ``python -m
ktcli.deployment.export_verifier`` loads it in a new process and runs it on the first test images
(random images when the test split cannot be read) at the chosen batch size and at batch 1;
its outputs must match the eager ensemble's. A file that fails is deleted.
"""
import json
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import __version__
from ..errors import UserError
from ..resources import IMPORT_ROOT
from .ensemble_module import EnsembleModule, StageEnsemble
from .export_verifier import METADATA_KEY, to_model_input

ONNX_OPSET = 18
# Protobuf cannot hold a file of 2 GiB or more: larger models keep their weights beside it.
ONNX_SINGLE_FILE_LIMIT = 2 ** 31 - 2 ** 24
SUFFIXES = {'onnx': '.onnx', 'torchscript': '.pt'}
# The fp32 check: largest allowed difference from the eager ensemble.
PROBABILITY_TOLERANCE = 1e-4
ATTENTION_TOLERANCE = 1e-3


class ExportCheckError(UserError):
    """An exported file that does not reproduce the eager ensemble (it has been deleted)."""


@dataclass(frozen=True)
class CheckRow:
    """How a file's outputs compared with the eager ensemble on one batch."""

    batch: str
    size: int
    probability_diff: float
    top1_agree: int
    attention_diff: Optional[float]


@dataclass(frozen=True)
class ExportResult:
    """A written and checked file."""

    path: Path
    bytes: int
    images: str
    rows: List[CheckRow]
    metadata: dict


def ensemble_metadata(ensemble: StageEnsemble, model_format: str) -> dict:
    """Everything a caller needs to feed the ensemble and read its outputs.

    Args:
        ensemble (StageEnsemble): The ensemble.
        model_format (str): ``'onnx'``, ``'torchscript'`` or ``'pytorch'`` (eager).

    Returns:
        dict: JSON-ready metadata.
    """
    module = ensemble.module
    preprocessing = ensemble.preprocessing
    attention_layout = None
    if module.with_attention:
        attention_layout = ('stacked: (N, members, h, w)' if module.stack_attention
                            else 'one output per member: (N, h, w)')
    in_model = module.include_preprocessing
    return dict(
        kt_version=__version__,
        format=model_format,
        fusion=module.fusion,
        stages=[dict(index=index, digest=digest, attention_size=list(size),
                     mean=list(mean), std=list(std))
                for index, digest, size, (mean, std) in zip(
                    ensemble.indices, ensemble.digests, ensemble.attention_sizes,
                    ensemble.normalisations)],
        classes=list(ensemble.class_names),
        input=dict(name='images', layout='NCHW', dtype='float32', batch='dynamic',
                   size=list(preprocessing.input_size),
                   channel_order=preprocessing.channel_order,
                   normalised_in_model=in_model,
                   values='0..255 (uint8 cast to float32)' if in_model
                   else '(x - mean) / std of 0..255 values'),
        preprocessing=preprocessing.to_dict(),
        outputs=module.output_names(),
        attention_layout=attention_layout,
    )


def default_output(work_dir: Path, indices: List[int], model_format: str) -> Path:
    """``WORK_DIR/exports/ensemble_<stages>.<onnx|pt>`` (``student.<onnx|pt>`` for a distilled
    student)."""
    from ..stages.work_dir import STUDENT_INDEX
    if list(indices) == [STUDENT_INDEX]:
        name = 'student'
    else:
        name = 'ensemble_' + '-'.join(map(str, indices))
    return Path(work_dir) / 'exports' / f'{name}{SUFFIXES[model_format]}'


def write_model(module: EnsembleModule, example: torch.Tensor, path: Path, metadata: dict,
                model_format: str) -> None:
    """Trace ``module`` on ``example`` and write it with its metadata to ``path``.

    Args:
        module (EnsembleModule): The ensemble, in eval mode.
        example (Tensor): An input batch of at least 2 images (batch 1
            would fix the batch size in the ONNX graph).
        path (Path): The file to write.
        metadata (dict): See :func:`ensemble_metadata`.
        model_format (str): ``'onnx'`` or ``'torchscript'``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metadata)
    if model_format == 'onnx':
        _write_onnx(module, example, path, text)
    else:
        with torch.no_grad(), warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.export, but still what
            # torch.jit.load-only deployments read.
            warnings.filterwarnings('ignore', category=FutureWarning, message='`torch.jit')
            traced = torch.jit.trace(module, example, check_trace=True,
                                     check_inputs=[(example[:1],)])
            torch.jit.save(traced, str(path), _extra_files={METADATA_KEY: text})


def _write_onnx(module: EnsembleModule, example: torch.Tensor, path: Path, text: str) -> None:
    data_file = path.with_name(path.name + '.data')
    data_file.unlink(missing_ok=True)
    weights = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    external_data = weights >= ONNX_SINGLE_FILE_LIMIT
    program = torch.onnx.export(
        module, (example,), dynamo=True, opset_version=ONNX_OPSET, input_names=['images'],
        output_names=module.output_names(),
        dynamic_shapes=({0: torch.export.Dim('batch', min=1)},), verbose=False)
    program.model.metadata_props[METADATA_KEY] = text
    program.save(str(path), external_data=external_data)
    if not external_data and data_file.exists():
        data_file.unlink()
        path.unlink()
        raise ExportCheckError(f'the ONNX exporter wrote its weights to {data_file} instead of '
                               f'into {path}; both were removed (please report this)')


def check_batches(ensemble: StageEnsemble, metadata: dict,
                  batch_size: int) -> Tuple[Dict[str, np.ndarray], str]:
    """The inputs an export is checked on: ``batch_size`` images, and the first alone.

    Args:
        ensemble (StageEnsemble): The ensemble (its first config names the test split).
        metadata (dict): Its metadata (the input convention).
        batch_size (int): Images in the larger batch (at least 2).

    Returns:
        tuple: ``{'batch N': inputs, 'batch 1': inputs}`` as float32 model
        inputs, and where the images came from.
    """
    images = _test_images(ensemble, batch_size)
    if images is not None and len(images) >= 2:
        source = f'the first {len(images)} test images'
    else:
        height, width = ensemble.preprocessing.input_size
        images = np.random.default_rng(0).integers(0, 256, (batch_size, 3, height, width),
                                                   dtype=np.uint8)
        source = f'{batch_size} random images (the test split could not be read)'
    inputs = to_model_input(images, metadata)
    return {f'batch {len(inputs)}': inputs, 'batch 1': inputs[:1]}, source


def _test_images(ensemble: StageEnsemble, count: int) -> Optional[np.ndarray]:
    """The first ``count`` images of the test split after its pipeline (uint8 BGR NCHW)."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    cfg = ensemble.config
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    try:
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        images = [dataset[k]['inputs'].numpy() for k in range(min(count, len(dataset)))]
    except (OSError, ValueError, RuntimeError, AssertionError):
        return None
    return np.stack(images) if images else None


def verify_export(path: Path, ensemble: StageEnsemble, metadata: dict,
                  batches: Dict[str, np.ndarray]) -> List[CheckRow]:
    """Run ``path`` in a fresh process and compare it with the eager ensemble.

    The probabilities must agree within :data:`PROBABILITY_TOLERANCE` with
    the same top-1 class for every image, the attention maps within
    :data:`ATTENTION_TOLERANCE`, and the metadata read back must equal
    ``metadata``. A file that fails is deleted.

    Args:
        path (Path): The written file.
        ensemble (StageEnsemble): The eager ensemble it was written from.
        metadata (dict): The metadata it should carry.
        batches (dict): Named float32 input batches (see :func:`check_batches`).

    Returns:
        list[CheckRow]: One row per batch.

    Raises:
        ExportCheckError: The file does not load, run or match.
    """
    try:
        outputs, read_metadata = _run_fresh(path, batches, str(ensemble.device))
        if read_metadata != metadata:
            raise ExportCheckError('its metadata did not read back as written')
        from .export_verifier import torch_runner
        eager = torch_runner(ensemble.module, str(ensemble.device))
        return [_compare(name, eager(inputs), outputs[name]) for name, inputs in batches.items()]
    except ExportCheckError as error:
        path.unlink(missing_ok=True)
        raise ExportCheckError(f'{path.name} failed its check and was removed: {error}; '
                               'try the other --format and please report this') from None


def _run_fresh(path: Path, batches: Dict[str, np.ndarray],
               device: str) -> Tuple[Dict[str, List[np.ndarray]], dict]:
    with tempfile.TemporaryDirectory(prefix='kt_export_check_') as folder:
        inputs, results = Path(folder) / 'inputs.npz', Path(folder) / 'outputs.npz'
        np.savez(inputs, **batches)
        process = subprocess.run(
            [sys.executable, '-m', 'ktcli.deployment.export_verifier', str(path), str(inputs),
             str(results), '--device', device],
            capture_output=True, text=True, cwd=IMPORT_ROOT)
        if process.returncode != 0:
            lines = process.stderr.strip().splitlines()
            raise ExportCheckError('a fresh process could not run it '
                                   f'({lines[-1] if lines else f"exit code {process.returncode}"})')
        with np.load(results) as saved:
            metadata = json.loads(str(saved['metadata']))
            count = len(metadata['outputs'])
            outputs = {name: [saved[f'{name}/{k}'] for k in range(count)] for name in batches}
    return outputs, metadata


def _compare(name: str, expected: List[np.ndarray], actual: List[np.ndarray]) -> CheckRow:
    shapes = [e.shape for e in expected], [a.shape for a in actual]
    if shapes[0] != shapes[1]:
        raise ExportCheckError(f'at {name} its outputs have shapes {shapes[1]} instead of '
                               f'{shapes[0]}')
    probability_diff = float(np.abs(expected[0] - actual[0]).max())
    top1_agree = int((expected[0].argmax(axis=1) == actual[0].argmax(axis=1)).sum())
    attention_diff = (max(float(np.abs(e - a).max()) for e, a in zip(expected[1:], actual[1:]))
                      if len(expected) > 1 else None)
    size = len(expected[0])
    if not probability_diff <= PROBABILITY_TOLERANCE or top1_agree != size:
        raise ExportCheckError(f'at {name} its probabilities differ from the eager ensemble by '
                               f'up to {probability_diff:.2e} (allowed '
                               f'{PROBABILITY_TOLERANCE:.0e}) and its top-1 agrees on '
                               f'{top1_agree}/{size} images')
    if attention_diff is not None and not attention_diff <= ATTENTION_TOLERANCE:
        raise ExportCheckError(f'at {name} its attention maps differ from the eager ensemble by '
                               f'up to {attention_diff:.2e} (allowed {ATTENTION_TOLERANCE:.0e})')
    return CheckRow(name, size, probability_diff, top1_agree, attention_diff)


def export_ensemble(ensemble: StageEnsemble, model_format: str, path: Path,
                    batch_size: int = 8) -> ExportResult:
    """Write ``ensemble`` to ``path`` and check the file in a fresh process.

    Args:
        ensemble (StageEnsemble): The ensemble.
        model_format (str): ``'onnx'`` or ``'torchscript'``.
        path (Path): The file to write.
        batch_size (int): Images in the check's larger batch (at least 2).
            Defaults to 8.

    Returns:
        ExportResult: The file, its size and the check's figures.

    Raises:
        UserError: ``path`` has the wrong suffix for the format.
        ExportCheckError: The file failed its check (and was deleted).
    """
    if path.suffix.lower() != SUFFIXES[model_format]:
        raise UserError(f'--out {path} must end in {SUFFIXES[model_format]} for --format '
                        f'{model_format} (kt predict tells the formats apart by it)')
    metadata = ensemble_metadata(ensemble, model_format)
    batches, source = check_batches(ensemble, metadata, batch_size)
    example = torch.from_numpy(next(iter(batches.values()))).to(ensemble.device)
    write_model(ensemble.module, example, path, metadata, model_format)
    rows = verify_export(path, ensemble, metadata, batches)
    return ExportResult(path, path.stat().st_size, source, rows, metadata)
