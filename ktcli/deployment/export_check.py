"""Check an exported file in a fresh process: does it reproduce the eager ensemble?

``python -m ktcli.deployment.export_verifier`` loads the file in a new process, so that
nothing of the exporting process (modules, registries, caches) can help it along, runs it on
the inputs it is given and sends its outputs back. :func:`verify_export` is the check of an
fp32 file (a few test images, outputs within :data:`PROBABILITY_TOLERANCE`);
:mod:`~ktcli.deployment.accuracy_check` runs reduced-precision files over the whole test split
through the same :func:`run_fresh`.
"""
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from ktbase.writing import private_temporary_folder

from ..errors import UserError
from ..resources import IMPORT_ROOT
from .ensemble_module import StageEnsemble
from .export_verifier import to_model_input, torch_runner
from .split_images import first_test_images

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
    images = first_test_images(ensemble.config, batch_size)
    if images is not None and len(images) >= 2:
        source = f'the first {len(images)} test images'
    else:
        height, width = ensemble.preprocessing.input_size
        images = np.random.default_rng(0).integers(0, 256, (batch_size, 3, height, width),
                                                   dtype=np.uint8)
        source = f'{batch_size} random images (the test split could not be read)'
    inputs = to_model_input(images, metadata)
    return {f'batch {len(inputs)}': inputs, 'batch 1': inputs[:1]}, source


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
        outputs, read_metadata = run_fresh(path, batches.items(), str(ensemble.device))
        if read_metadata != metadata:
            raise ExportCheckError('its metadata did not read back as written')
        eager = torch_runner(ensemble.module, str(ensemble.device))
        return [_compare(name, eager(inputs), outputs[name]) for name, inputs in batches.items()]
    except ExportCheckError as error:
        path.unlink(missing_ok=True)
        raise ExportCheckError(f'{path.name} failed its check and was removed: {error}; '
                               'try the other --format and please report this') from None


def run_fresh(path: Path, batches: Iterable[Tuple[str, np.ndarray]],
              device: str) -> Tuple[Dict[str, List[np.ndarray]], dict]:
    """Run the exported file ``path`` on named batches in a new process.

    The batches are written to a temporary file one at a time (the caller may
    produce them lazily, so a whole test split never sits in memory), then
    ``python -m ktcli.deployment.export_verifier`` runs the file on each.

    Args:
        path (Path): An exported ``.onnx`` or ``.pt`` file.
        batches (Iterable[tuple[str, np.ndarray]]): ``(name, batch)`` pairs:
            float32 model inputs, or uint8 images (N, 3, H, W) in the test
            pipeline's BGR order, which the fresh process prepares as the
            file's metadata says.
        device (str): ``'cpu'`` or a CUDA device.

    Returns:
        tuple: ``{name: [outputs]}`` and the metadata read back from the file.

    Raises:
        ExportCheckError: The fresh process could not load or run the file.
    """
    with private_temporary_folder('kt_export_check_') as folder:
        inputs, results = Path(folder) / 'inputs.npz', Path(folder) / 'outputs.npz'
        names = _write_npz(inputs, batches)
        # It runs in the folder kt is imported from (so that it imports this kt), so the
        # file is named by its absolute path: a relative one means the caller's folder. Not
        # resolved: the file being written is a link to a descriptor (see write_atomically).
        process = subprocess.run(
            [sys.executable, '-m', 'ktcli.deployment.export_verifier', str(Path(path).absolute()),
             str(inputs), str(results), '--device', device],
            capture_output=True, text=True, cwd=IMPORT_ROOT)
        if process.returncode != 0:
            lines = process.stderr.strip().splitlines()
            raise ExportCheckError('a fresh process could not run it '
                                   f'({lines[-1] if lines else f"exit code {process.returncode}"})')
        with np.load(results) as saved:
            metadata = json.loads(str(saved['metadata']))
            count = len(metadata['outputs'])
            outputs = {name: [saved[f'{name}/{k}'] for k in range(count)] for name in names}
    return outputs, metadata


def _write_npz(path: Path, batches: Iterable[Tuple[str, np.ndarray]]) -> List[str]:
    """Write named arrays into an ``.npz`` as ``np.savez`` does, one at a time; their names."""
    names = []
    with zipfile.ZipFile(path, 'w', allowZip64=True) as archive:
        for name, batch in batches:
            with archive.open(f'{name}.npy', 'w', force_zip64=True) as file:
                np.lib.format.write_array(file, np.ascontiguousarray(batch), allow_pickle=False)
            names.append(name)
    return names


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
