"""Run an exported kt ensemble (ONNX or TorchScript) with nothing of kt's training stack.

``kt predict`` and ``tools/benchmark_inference.py`` load exported files with
:class:`ExportedModel`. ``kt export`` runs this module in a fresh process to check a file it
has just written, so that nothing of the exporting process (modules, registries, caches)
can help the file along::

    python -m ktcli.deployment.export_verifier MODEL INPUTS.npz OUTPUTS.npz [--device cpu]

loads MODEL, runs it on every array of INPUTS and writes to OUTPUTS, for each input
``NAME``, its outputs ``NAME/0``, ``NAME/1``, ... and the metadata read back from the file
under ``metadata`` (a JSON string). A float32 array is the model's input as it is; a uint8
array holds images as the test pipeline leaves them (N, 3, H, W, BGR), prepared here with
:func:`to_model_input` from the metadata read back. Only numpy, the format's runtime
(onnxruntime for ONNX, torch for TorchScript) and kt's standard-library helpers
(``ktcli.cpus``, ``ktcli.reading``, the metadata schema and the TorchScript check) are
imported. Every file is checked before it runs: its metadata field by field
(:mod:`~ktcli.deployment.export_metadata`) and, for TorchScript, every operator of every
method (:mod:`~ktcli.deployment.torchscript_check`).

ONNX Runtime sessions are set up for speed (:func:`onnx_session_options`): every graph
optimisation, as many intra-op threads as this process may use CPUs, and one chain of
operators at a time (sequential execution, one inter-op thread), so that the threads work
inside each convolution instead of competing between operators.
"""
import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..cpus import available_cpus
from ..errors import UserError
from .export_metadata import parse_metadata
from .torchscript_check import check_archive, check_module

if TYPE_CHECKING:
    import onnxruntime

# The key of the JSON metadata: an ONNX metadata_props entry, a TorchScript extra file.
METADATA_KEY = 'kt.json'
FORMATS = {'.onnx': 'onnx', '.pt': 'torchscript'}

Runner = Callable[[np.ndarray], List[np.ndarray]]


def model_format(path: Path) -> str:
    """``'onnx'`` or ``'torchscript'``, by the file's suffix.

    Raises:
        ValueError: Another suffix.
    """
    try:
        return FORMATS[Path(path).suffix.lower()]
    except KeyError:
        raise ValueError(f'{path} is neither an ONNX (.onnx) nor a TorchScript (.pt) '
                         'file') from None


def to_model_input(images: np.ndarray, metadata: dict) -> np.ndarray:
    """Turn decoded images into the input an exported ensemble expects.

    Does what mmpretrain's data preprocessor does after the test pipeline:
    the channel conversion of the config (``to_rgb``), then, unless the
    model normalises in its graph, ``(x - mean) / std``.

    Args:
        images (np.ndarray): uint8 images (N, 3, H, W) in BGR order (what
            mmpretrain's test pipeline and OpenCV give), already resized
            and cropped to the model's input size.
        metadata (dict): The model's metadata.

    Returns:
        np.ndarray: float32 (N, 3, H, W).
    """
    preprocessing = metadata['preprocessing']
    if preprocessing['channel_order'] == 'RGB':
        images = images[:, ::-1]
    inputs = images.astype(np.float32)
    if not metadata['input']['normalised_in_model']:
        mean = np.asarray(preprocessing['mean'], dtype=np.float32)[None, :, None, None]
        std = np.asarray(preprocessing['std'], dtype=np.float32)[None, :, None, None]
        inputs = (inputs - mean) / std
    return np.ascontiguousarray(inputs, dtype=np.float32)


class ExportedModel:
    """An exported ensemble and its metadata, callable on numpy batches.

    Args:
        path (Path): An ``.onnx`` or TorchScript ``.pt`` file written by ``kt export``.
        device (str): ``'cpu'`` or a CUDA device (onnxruntime uses its CUDA
            provider when it has one). Defaults to ``'cpu'``.
        threads (int, optional): Intra-op threads of the runtime. Defaults
            to None: ONNX Runtime gets one per CPU this process may use
            (:func:`onnx_session_options`), TorchScript keeps torch's setting.

    Attributes:
        format (str): ``'onnx'`` or ``'torchscript'``.
        metadata (dict): The metadata ``kt export`` stored in the file.
    """

    def __init__(self, path: Path, device: str = 'cpu', threads: Optional[int] = None) -> None:
        self.path = Path(path)
        self.format = model_format(self.path)
        load = _load_onnx if self.format == 'onnx' else _load_torchscript
        self._run, self.metadata = load(self.path, device, threads)

    @property
    def output_names(self) -> List[str]:
        """The names of the outputs, in the order :meth:`__call__` returns them."""
        return list(self.metadata['outputs'])

    def __call__(self, inputs: np.ndarray) -> List[np.ndarray]:
        """Run a float32 batch (N, 3, H, W); returns the outputs as numpy arrays.

        Raises:
            ModelRunError: The file's model failed, or gave something other than one
                float array per output with a row per image.
        """
        try:
            outputs = self._run(inputs)
        except Exception as error:  # a received file fails in its runtime's own way
            message = str(error).strip().splitlines()
            raise ModelRunError(f'{self.path} failed when run ({type(error).__name__}: '
                                f'{message[0][:200] if message else ""}); it is not a model '
                                '`kt export` wrote: export it again') from None
        if len(outputs) != len(self.output_names) or not all(
                isinstance(output, np.ndarray) and output.dtype.kind == 'f'
                and output.ndim >= 1 and output.shape[0] == len(inputs) for output in outputs):
            raise ModelRunError(f'{self.path} gave outputs of other kinds or shapes than its '
                                'kt.json names; it is not a model `kt export` wrote: export it '
                                'again')
        return outputs


class ModelRunError(UserError):
    """A received model that failed, or gave outputs kt cannot read, when run."""


def onnx_session_options(threads: Optional[int] = None) -> 'onnxruntime.SessionOptions':
    """ONNX Runtime session options for speed.

    Every graph optimisation (``ORT_ENABLE_ALL``: constant folding, node
    fusions, layout changes; int8 QDQ patterns become int8 kernels), ``threads``
    intra-op threads, and sequential execution with one inter-op thread.

    Args:
        threads (int, optional): Intra-op threads. Defaults to None (one per
            CPU this process may use, as kt counts them everywhere).

    Returns:
        onnxruntime.SessionOptions: The options.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or available_cpus()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return options


def _load_onnx(path: Path, device: str, threads: Optional[int]) -> Tuple[Runner, dict]:
    import onnxruntime

    options = onnx_session_options(threads)
    # A failing node is kt's one line (ModelRunError), not also ONNX Runtime's own log line.
    options.log_severity_level = 4
    providers = ['CPUExecutionProvider']
    if device.startswith('cuda') and 'CUDAExecutionProvider' in \
            onnxruntime.get_available_providers():
        providers.insert(0, 'CUDAExecutionProvider')
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    metadata = parse_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY),
                              path, [output.name for output in session.get_outputs()])
    input_name = session.get_inputs()[0].name

    def run(inputs: np.ndarray) -> List[np.ndarray]:
        return session.run(metadata['outputs'], {input_name: inputs})

    return run, metadata


def _load_torchscript(path: Path, device: str, threads: Optional[int]) -> Tuple[Runner, dict]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    extra_files = {METADATA_KEY: ''}
    check_archive(path)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=FutureWarning, message='`torch.jit')
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra_files)
    check_module(module, path)
    text = extra_files[METADATA_KEY]
    text = text.decode('utf-8', errors='replace') if isinstance(text, bytes) else text
    return torch_runner(module, device), parse_metadata(text, path)


def torch_runner(module: Callable, device: str = 'cpu', channels_last: bool = False) -> Runner:
    """Wrap a torch module (traced or eager) as a numpy batch -> numpy outputs function.

    Args:
        module (Callable): The module; it returns a tensor or a tuple of tensors.
        device (str): Where the module's weights are. Defaults to ``'cpu'``.
        channels_last (bool): Pass the input in channels-last memory layout
            (for a module converted with ``.to(memory_format=torch.channels_last)``).
            Defaults to False.

    Returns:
        Callable: ``run(inputs) -> [outputs]``, under ``torch.inference_mode``.
    """
    import torch

    layout = torch.channels_last if channels_last else torch.contiguous_format

    def run(inputs: np.ndarray) -> List[np.ndarray]:
        with torch.inference_mode():
            outputs = module(torch.from_numpy(inputs).to(device, memory_format=layout))
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        return [output.float().cpu().numpy() for output in outputs]

    return run


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Load a model in this (fresh) process and run it on the given inputs."""
    parser = argparse.ArgumentParser(description='Run an exported kt ensemble on saved inputs.')
    parser.add_argument('model', type=Path)
    parser.add_argument('inputs', type=Path, help='.npz of float32 batches (N, 3, H, W)')
    parser.add_argument('outputs', type=Path, help='.npz to write the outputs to')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    try:
        model = ExportedModel(args.model, args.device)
        results = {'metadata': np.array(json.dumps(model.metadata))}
        with np.load(args.inputs) as inputs:
            for name in inputs.files:
                batch = inputs[name]
                if batch.dtype == np.uint8:
                    batch = to_model_input(batch, model.metadata)
                for k, output in enumerate(model(batch)):
                    results[f'{name}/{k}'] = output
    except Exception as error:  # any failure to load or run is the file's: report it
        message = str(error).strip().splitlines()
        print(f'{type(error).__name__}: {message[0] if message else ""}', file=sys.stderr)
        raise SystemExit(1) from None
    np.savez(args.outputs, **results)


if __name__ == '__main__':
    main()
