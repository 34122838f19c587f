"""Benchmark: the ensemble's inference speed in eager PyTorch, TorchScript and ONNX Runtime.

    python tools/benchmark_inference.py WORK_DIR [--models 1,2,3] [--student] [--img-size N]
        [--iters 10] [--warmup 2] [--threads N] [--batch-sizes 1 16] [--dtypes fp32 int8]
    python tools/benchmark_inference.py --config configs/kt/resnet50_kt_cub.py --members 5
        --img-size 448 --iters 3

Builds the ensemble (fused probabilities only, softmax fusion) from a work dir's stages, or
from N untrained members of a config (synthetic mode: no training, no pretrained download),
exports it into a temporary folder as TorchScript and ONNX, and times the engines on this
machine in one run, on the same random normalised batches: the eager ensemble (a Python loop
over the members; in its default memory layout and in channels-last), the TorchScript file
(torch.jit.load) and the ONNX file on ONNX Runtime, in each precision of ``--dtypes`` (the
fp32 file, a static int8 copy and an fp16 copy made as ``kt export --dtype`` makes them). Each
engine gets ``--warmup`` untimed and ``--iters`` timed calls per batch size; the table shows
the median latency per call, images/s (batch / median) and the throughput ratio to eager,
plus the largest difference of each engine's probabilities from eager. ``--student`` also
times the work dir's distilled student (``kt distill``) in the same run, so the deployment
trade-off is one table.

Every engine gets ``--threads`` threads (default: every CPU this process may use): torch's
intra-op threads, ONNX Runtime's session options of ``kt predict`` (all graph optimisations,
sequential execution). Eager runs under ``torch.inference_mode``. int8 calibrates on
``--calibration-images`` training images of the work dir, or on random normalised images in
synthetic mode, which is enough to time it (the activation ranges change no kernel) but says
nothing of its accuracy; ``kt export --dtype int8`` measures that.
"""
import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

if __package__ in (None, '') and (Path(__file__).resolve().parents[1] / 'ktcli').is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ktcli.deployment.ensemble_module import (  # noqa: E402
    StageEnsemble,
    assemble_ensemble,
    load_work_dir_ensemble,
)
from ktcli.deployment.export import ensemble_metadata, write_model  # noqa: E402
from ktcli.deployment.export_verifier import (  # noqa: E402
    ExportedModel,
    Runner,
    to_model_input,
    torch_runner,
)
from ktcli.deployment.quantisation import DTYPES, convert_fp16, quantise_int8  # noqa: E402
from ktcli.deployment.split_images import calibration_images  # noqa: E402
from ktcli.errors import UserError, exit_on_user_error  # noqa: E402
from ktcli.stages.work_dir import parse_models  # noqa: E402
from ktcli.cpus import available_cpus  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time the ensemble in eager PyTorch, TorchScript and ONNX Runtime.')
    parser.add_argument('work_dir', nargs='?', type=Path, help='a work dir written by kt train')
    parser.add_argument('--models', help='stages of the work dir, e.g. 1,2,3 (default: all)')
    parser.add_argument('--student', action='store_true',
                        help="also time the work dir's distilled student (kt distill)")
    parser.add_argument('--config', type=Path,
                        help='synthetic mode: build --members untrained members of this config')
    parser.add_argument('--members', type=int, default=5, help='members in synthetic mode')
    parser.add_argument('--img-size', type=int,
                        help="input side in pixels (default: the config's test crop)")
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 16])
    parser.add_argument('--iters', type=int, default=10, help='timed calls per engine and batch')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed calls first (TorchScript optimises on its second call)')
    parser.add_argument('--threads', type=int, default=available_cpus(),
                        help='intra-op threads of every engine (default: every CPU this process '
                        'may use)')
    parser.add_argument('--dtypes', nargs='+', choices=DTYPES, default=['fp32', 'int8'],
                        help='precisions of the ONNX Runtime rows (fp16 is meant for GPUs)')
    parser.add_argument('--calibration-images', type=int, default=64,
                        help='images int8 calibrates on')
    args = parser.parse_args()
    if (args.work_dir is None) == (args.config is None):
        parser.error('pass either a WORK_DIR or --config (synthetic mode)')
    return args


def synthetic_ensemble(config: Path, members: int) -> StageEnsemble:
    """``members`` untrained models of ``config`` (constructor initialisation, no download)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from registry_plugins import build_model_from_config

    if not config.is_file():
        raise UserError(f'config {config} does not exist; the shipped ones are under configs/kt/')
    cfg = Config.fromfile(str(config))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    models = []
    for seed in range(members):
        torch.manual_seed(seed)
        models.append(build_model_from_config(cfg))
    return assemble_ensemble(models, [cfg] * members, list(range(1, members + 1)),
                             ['untrained'] * members)


def timed_runs(run: Callable, inputs: np.ndarray, warmup: int,
               iters: int) -> Tuple[float, List[np.ndarray]]:
    """Time ``iters`` calls of ``run(inputs)`` after ``warmup`` untimed ones.

    Returns:
        tuple: The median seconds per call and the last call's outputs.
    """
    for _ in range(warmup):
        run(inputs)
    times: List[float] = []
    for _ in range(iters):
        start = time.perf_counter()
        outputs = run(inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times), outputs


def calibration_inputs(ensemble: StageEnsemble, batches: dict, args: argparse.Namespace,
                       synthetic: bool) -> np.ndarray:
    """What int8 calibrates on: training images of a work dir, random inputs in synthetic mode."""
    if synthetic:
        shape = next(iter(batches.values())).shape[1:]
        return np.random.default_rng(1).standard_normal((args.calibration_images, *shape),
                                                        dtype=np.float32)
    return to_model_input(calibration_images(ensemble.config, args.calibration_images),
                          ensemble_metadata(ensemble, 'onnx'))


def engine_runners(label: str, ensemble: StageEnsemble, calibration: Optional[np.ndarray],
                   example: torch.Tensor, args: argparse.Namespace,
                   folder: Path) -> Dict[str, Runner]:
    """Every engine of ``ensemble``, exported into ``folder``, by name (eager first)."""
    module = ensemble.module
    channels_last = copy.deepcopy(module).to(memory_format=torch.channels_last)
    runners = {'eager': torch_runner(module),
               'eager channels_last': torch_runner(channels_last, channels_last=True)}
    stem = folder / label.replace(' ', '_')
    torchscript, onnx = stem.with_suffix('.pt'), stem.with_suffix('.onnx')
    write_model(module, example, torchscript, ensemble_metadata(ensemble, 'torchscript'),
                'torchscript')
    write_model(module, example, onnx, ensemble_metadata(ensemble, 'onnx'), 'onnx')
    runners['TorchScript'] = ExportedModel(torchscript, threads=args.threads)
    for dtype in args.dtypes:
        path = onnx if dtype == 'fp32' else onnx.with_name(f'{onnx.stem}_{dtype}.onnx')
        if dtype == 'int8':
            quantise_int8(onnx, path, calibration)
        elif dtype == 'fp16':
            convert_fp16(onnx, path)
        runners[f'ONNX Runtime {dtype}'] = ExportedModel(path, threads=args.threads)
    return runners


def engine_rows(label: str, runners: Dict[str, Runner], batches: dict,
                args: argparse.Namespace) -> list:
    """Time every engine on every batch.

    Returns:
        list: ``(model label, engine, batch, seconds per call, max |Δp| vs eager)`` rows.
    """
    rows = []
    for size, inputs in batches.items():
        for name, run in runners.items():
            seconds, outputs = timed_runs(run, inputs, args.warmup, args.iters)
            if name == 'eager':  # the first engine: the others are compared with it
                reference = outputs[0]
            rows.append((label, name, size, seconds,
                         float(np.abs(outputs[0] - reference).max())))
    return rows


def main() -> None:
    from mmengine.logging import MMLogger
    args = parse_args()
    torch.set_num_threads(args.threads)
    # Building the members logs through mmengine; only its warnings belong on the console.
    MMLogger.get_instance('kt_benchmark', log_level='WARNING')
    if args.work_dir is not None:
        ensemble = load_work_dir_ensemble(args.work_dir, parse_models(args.models))
        source = f'{args.work_dir}, stages {",".join(map(str, ensemble.indices))}'
    else:
        ensemble = synthetic_ensemble(args.config, args.members)
        source = f'{args.members} untrained x {args.config.name}'
    models = {f'ensemble of {len(ensemble.indices)}': ensemble}
    if args.student:
        if args.work_dir is None:
            raise UserError('--student needs a WORK_DIR with a distilled student')
        models['student'] = load_work_dir_ensemble(args.work_dir, 'distilled')
    height, width = (args.img_size, args.img_size) if args.img_size else \
        ensemble.preprocessing.input_size
    rng = np.random.default_rng(0)
    batches = {size: rng.standard_normal((size, 3, height, width), dtype=np.float32)
               for size in args.batch_sizes}

    # Two images: an example of one would fix the batch size of the exported graphs.
    example = torch.from_numpy(rng.standard_normal((2, 3, height, width), dtype=np.float32))
    rows = []
    with tempfile.TemporaryDirectory(prefix='kt_benchmark_') as folder:
        for label, model in models.items():
            calibration = (calibration_inputs(model, batches, args, args.work_dir is None)
                           if 'int8' in args.dtypes else None)
            runners = engine_runners(label, model, calibration, example, args, Path(folder))
            rows += engine_rows(label, runners, batches, args)

    eager = {(label, size): seconds for label, name, size, seconds, _ in rows
             if name == 'eager'}
    threads = f'{args.threads} thread{"s" if args.threads > 1 else ""}'
    table = Table(title=f'{source}: {height} x {width} px, {threads}, median of {args.iters} '
                  f'calls after {args.warmup} warm-up')
    for column in ('model', 'engine', 'batch', 'ms / call', 'images/s', 'x eager',
                   'max |Δp| vs eager'):
        table.add_column(column, justify='right')
    for label, name, size, seconds, difference in rows:
        table.add_row(label, name, str(size), f'{seconds * 1000:.1f}', f'{size / seconds:.1f}',
                      f'{eager[label, size] / seconds:.2f}', f'{difference:.1e}')
    console = Console()
    console.print(table)
    int8 = ''
    if 'int8' in args.dtypes:
        calibrated = ('random normalised images (speed only)' if args.work_dir is None
                      else 'training images')
        int8 = (f'int8: static QDQ, per-channel weights, calibrated on '
                f'{args.calibration_images} {calibrated}; ')
    console.print(f'torch {torch.__version__}: {torch.get_num_threads()} intra-op threads, '
                  f'inference_mode; ONNX Runtime {onnxruntime.__version__}: {args.threads} '
                  f'intra-op, 1 inter-op, sequential, ORT_ENABLE_ALL; {int8}'
                  f'{available_cpus()} CPUs available', soft_wrap=True)


if __name__ == '__main__':
    with exit_on_user_error():
        main()
