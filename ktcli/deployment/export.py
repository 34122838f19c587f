"""Write an ensemble to one ONNX or TorchScript file and prove, in a fresh process, that it works.

The file holds the whole :class:`~ktcli.deployment.ensemble_module.EnsembleModule` (all members
and the fusion) with a dynamic batch axis, plus one JSON blob of metadata (``kt.json``: input size,
normalisation, channel order, class names, stages, fusion, outputs, precision) as an ONNX
``metadata_props`` entry or a TorchScript extra file. After writing, ``python -m
ktcli.deployment.export_verifier`` loads it in a new process and runs it on the first test images
(random images when the test split cannot be read) at the chosen batch size and at batch 1;
its outputs must match the eager ensemble's (:mod:`~ktcli.deployment.export_check`). A file
that fails is deleted.

An int8 or fp16 ONNX file (:mod:`~ktcli.deployment.quantisation`) is made from an fp32 file
written and checked as above in a temporary folder; it is then judged by its accuracy on the
whole test split (:mod:`~ktcli.deployment.accuracy_check`), its figures are stored in its
metadata, and it is written to its path only if it passes.
"""
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import torch

from ktbase.writing import private_temporary_folder, write_atomically

from .. import __version__
from ..errors import UserError
from .accuracy_check import AccuracyFigures, AccuracyThresholds, check_accuracy
from .ensemble_module import EnsembleModule, StageEnsemble
from .export_check import CheckRow, ExportCheckError, check_batches, verify_export
from .export_verifier import METADATA_KEY, to_model_input
from .quantisation import convert_fp16, quantise_int8
from .split_images import calibration_images

ONNX_OPSET = 18
# Protobuf cannot hold a file of 2 GiB or more: larger models keep their weights beside it.
ONNX_SINGLE_FILE_LIMIT = 2 ** 31 - 2 ** 24
SUFFIXES = {'onnx': '.onnx', 'torchscript': '.pt'}
# Training images int8 calibration reads by default.
CALIBRATION_IMAGES = 128


@dataclass(frozen=True)
class Precision:
    """The precision of an export and, below fp32, how it is made and judged.

    Args:
        dtype (str): ``'fp32'``, ``'int8'`` or ``'fp16'``. Defaults to ``'fp32'``.
        calibration_images (int): Training images int8 calibrates on.
            Defaults to :data:`CALIBRATION_IMAGES`.
        thresholds (AccuracyThresholds): What an int8 or fp16 file must reach
            on the test split. Defaults to the standard thresholds.
    """

    dtype: str = 'fp32'
    calibration_images: int = CALIBRATION_IMAGES
    thresholds: AccuracyThresholds = AccuracyThresholds()


@dataclass(frozen=True)
class ExportResult:
    """A written and checked file.

    Attributes:
        path (Path): The file.
        bytes (int): Its size.
        images (str): What the fp32 check ran on.
        rows (list[CheckRow]): The fp32 check (of the fp32 file an int8 or
            fp16 file was made from).
        metadata (dict): The metadata stored in it.
        accuracy (AccuracyFigures, optional): The accuracy check of an int8
            or fp16 file; None for fp32.
    """

    path: Path
    bytes: int
    images: str
    rows: List[CheckRow]
    metadata: dict
    accuracy: Optional[AccuracyFigures] = None


def ensemble_metadata(ensemble: StageEnsemble, model_format: str, dtype: str = 'fp32') -> dict:
    """Everything a caller needs to feed the ensemble and read its outputs.

    ``quantisation`` (how an int8 or fp16 file was made) and ``accuracy_check``
    (its figures on the test split) stay None here; the export fills them in.

    Args:
        ensemble (StageEnsemble): The ensemble.
        model_format (str): ``'onnx'``, ``'torchscript'`` or ``'pytorch'`` (eager).
        dtype (str): The precision of the weights and computation: ``'fp32'``,
            ``'int8'`` or ``'fp16'`` (input and outputs are float32 in all).
            Defaults to ``'fp32'``.

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
        dtype=dtype,
        quantisation=None,
        accuracy_check=None,
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


def default_output(work_dir: Path, indices: List[int], model_format: str,
                   dtype: str = 'fp32') -> Path:
    """``WORK_DIR/exports/ensemble_<stages>[_<dtype>].<onnx|pt>`` (``student...`` for a
    distilled student; the dtype only below fp32)."""
    from ..stages.records import STUDENT_INDEX
    if list(indices) == [STUDENT_INDEX]:
        name = 'student'
    else:
        name = 'ensemble_' + '-'.join(map(str, indices))
    if dtype != 'fp32':
        name = f'{name}_{dtype}'
    return Path(work_dir) / 'exports' / f'{name}{SUFFIXES[model_format]}'


def serialised_model(module: EnsembleModule, example: torch.Tensor, metadata: dict,
                     model_format: str) -> bytes:
    """Trace ``module`` on ``example`` into the bytes of an ONNX or TorchScript file that
    carries ``metadata``, in memory (nothing is written, so no disk can fail half-way).

    Args:
        module (EnsembleModule): The ensemble, in eval mode.
        example (Tensor): An input batch of at least 2 images (batch 1
            would fix the batch size in the ONNX graph).
        metadata (dict): See :func:`ensemble_metadata`.
        model_format (str): ``'onnx'`` or ``'torchscript'``.

    Returns:
        bytes: The file's content.
    """
    text = json.dumps(metadata)
    if model_format == 'onnx':
        program = _onnx_program(module, example)
        program.model.metadata_props[METADATA_KEY] = text
        return program.model_proto.SerializeToString()
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, but still what
        # torch.jit.load-only deployments read.
        warnings.filterwarnings('ignore', category=FutureWarning, message='`torch.jit')
        traced = torch.jit.trace(module, example, check_trace=True,
                                 check_inputs=[(example[:1],)])
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={METADATA_KEY: text})
    return buffer.getvalue()


def write_model(module: EnsembleModule, example: torch.Tensor, path: Path, metadata: dict,
                model_format: str, check: Optional[Callable[[Path], None]] = None) -> None:
    """Trace ``module`` on ``example`` and write it with its metadata to ``path``, atomically.

    The new file replaces ``path`` (never following a link there) only once it is
    complete and ``check`` has passed on it; on any failure ``path`` is as it was and no
    part of the new file is left.

    Args:
        module (EnsembleModule): The ensemble, in eval mode.
        example (Tensor): An input batch of at least 2 images.
        path (Path): The file to write.
        metadata (dict): See :func:`ensemble_metadata`.
        model_format (str): ``'onnx'`` or ``'torchscript'``.
        check (callable, optional): Called with a path that reads the new
            file before it replaces ``path``. Defaults to None.
    """
    weights = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    if model_format == 'onnx' and weights >= ONNX_SINGLE_FILE_LIMIT:
        _write_onnx_with_external_data(module, example, path, json.dumps(metadata), check)
    else:
        write_atomically(path, serialised_model(module, example, metadata, model_format), check)


def _onnx_program(module: EnsembleModule, example: torch.Tensor):
    return torch.onnx.export(
        module, (example,), dynamo=True, opset_version=ONNX_OPSET, input_names=['images'],
        output_names=module.output_names(),
        dynamic_shapes=({0: torch.export.Dim('batch', min=1)},), verbose=False)


def _write_onnx_with_external_data(module: EnsembleModule, example: torch.Tensor, path: Path,
                                   text: str, check: Optional[Callable[[Path], None]]) -> None:
    """A model of 2 GiB or more: its weights in ``NAME.data`` beside it, both written in a
    hidden folder beside ``path``, checked there, then moved into place."""
    program = _onnx_program(module, example)
    program.model.metadata_props[METADATA_KEY] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f'.{path.name}.', dir=path.parent) as folder:
        staged = Path(folder) / path.name
        program.save(str(staged), external_data=True)
        if check is not None:
            check(staged)
        data = staged.with_name(staged.name + '.data')
        os.replace(data, path.with_name(data.name))
        os.replace(staged, path)


def export_ensemble(ensemble: StageEnsemble, model_format: str, path: Path,
                    batch_size: int = 8, precision: Precision = Precision()) -> ExportResult:
    """Write ``ensemble`` to ``path`` and check the file in a fresh process.

    Args:
        ensemble (StageEnsemble): The ensemble.
        model_format (str): ``'onnx'`` or ``'torchscript'``.
        path (Path): The file to write.
        batch_size (int): Images in the check's larger batch (at least 2),
            and per call of the accuracy check. Defaults to 8.
        precision (Precision): fp32 (the default), or int8 / fp16 (ONNX only).

    Returns:
        ExportResult: The file, its size and the check's figures.

    Raises:
        UserError: int8 / fp16 was asked of TorchScript, or ``path`` has the
            wrong suffix for the format.
        ExportCheckError: The file failed its check (and was deleted), or an
            int8 / fp16 file missed its accuracy thresholds (and was not kept).
    """
    if precision.dtype != 'fp32' and model_format != 'onnx':
        raise UserError(f'--dtype {precision.dtype} needs --format onnx (kt makes it with ONNX '
                        'Runtime); TorchScript exports are fp32')
    if path.suffix.lower() != SUFFIXES[model_format]:
        raise UserError(f'--out {path} must end in {SUFFIXES[model_format]} for --format '
                        f'{model_format} (kt predict tells the formats apart by it)')
    metadata = ensemble_metadata(ensemble, model_format, precision.dtype)
    batches, source = check_batches(ensemble, metadata, batch_size)
    example = torch.from_numpy(next(iter(batches.values()))).to(ensemble.device)
    if precision.dtype == 'fp32':
        rows: List[CheckRow] = []
        write_model(ensemble.module, example, path, metadata, model_format,
                    check=lambda written: rows.extend(
                        verify_export(written, ensemble, metadata, batches)))
        return ExportResult(path, path.stat().st_size, source, rows, metadata)
    return _export_reduced(ensemble, path, batch_size, precision, metadata, batches, example,
                           source)


def _export_reduced(ensemble: StageEnsemble, path: Path, batch_size: int, precision: Precision,
                    metadata: dict, batches: dict, example: torch.Tensor,
                    source: str) -> ExportResult:
    """An int8 or fp16 ONNX file, made from a checked fp32 one and judged by its accuracy."""
    with private_temporary_folder('kt_export_') as folder:
        fp32_path = Path(folder) / f'{path.stem}.fp32.onnx'
        fp32_metadata = dict(metadata, dtype='fp32')
        write_model(ensemble.module, example, fp32_path, fp32_metadata, 'onnx')
        rows = verify_export(fp32_path, ensemble, fp32_metadata, batches)
        reduced = Path(folder) / path.name
        if precision.dtype == 'int8':
            calibration = to_model_input(
                calibration_images(ensemble.config, precision.calibration_images), metadata)
            metadata['quantisation'] = quantise_int8(fp32_path, reduced, calibration)
        else:
            metadata['quantisation'] = convert_fp16(fp32_path, reduced)
        store_onnx_metadata(reduced, reduced, metadata)
        accuracy = check_accuracy(reduced, ensemble, metadata, precision.thresholds, batch_size)
        if not accuracy.passed:
            calibrate = 'try another --calibration-images, ' if precision.dtype == 'int8' else ''
            raise ExportCheckError(
                f'{path.name} ({precision.dtype}) missed its accuracy check and was not kept: '
                f'{accuracy.summary()}; {calibrate}accept these figures with --min-agreement / '
                '--top1-tolerance, or export --dtype fp32')
        metadata['accuracy_check'] = accuracy.to_dict()
        store_onnx_metadata(reduced, path, metadata)
    return ExportResult(path, path.stat().st_size, source, rows, metadata, accuracy)


def store_onnx_metadata(source: Path, target: Path, metadata: dict) -> None:
    """Write the ONNX file ``source`` to ``target`` (atomically) with ``metadata`` as its kt.json.

    Args:
        source (Path): An ONNX file (weights inside it).
        target (Path): Where to write; may be ``source``.
        metadata (dict): The metadata, replacing any kt.json it holds.
    """
    import onnx

    model = onnx.load(str(source))
    kept = [prop for prop in model.metadata_props if prop.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata))
    write_atomically(target, model.SerializeToString())
