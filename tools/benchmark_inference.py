"""Benchmark: the ensemble's inference speed in eager PyTorch, TorchScript and ONNX Runtime.

    python tools/benchmark_inference.py WORK_DIR [--models 1,2,3] [--student] [--img-size N]
        [--iters 10] [--warmup 2] [--threads N] [--batch-sizes 1 16]
    python tools/benchmark_inference.py --config configs/kt/resnet50_kt_cub.py --members 5
        --img-size 448 --iters 3

Builds the ensemble (fused probabilities only, softmax fusion) from a work dir's stages, or
from N untrained members of a config (synthetic mode: no training, no pretrained download),
exports it into a temporary folder as TorchScript and ONNX, and times the three engines on
this machine in one run, on the same random normalised batches: the eager ensemble (a
Python loop over the members), the TorchScript file (torch.jit.load) and the ONNX file on
onnxruntime's CPU provider. Each engine gets ``--warmup`` untimed and ``--iters`` timed
calls per batch size; the table shows the median latency per call, images/s
(batch / median) and the throughput ratio to eager, plus the largest difference of each
engine's probabilities from eager. ``--student`` also times the work dir's distilled
student (``kt distill``) in the same run, so the deployment trade-off is one table.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple

if __package__ in (None, '') and (Path(__file__).resolve().parents[1] / 'ktcli').is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ktcli.deployment.ensemble_module import (  # noqa: E402
    StageEnsemble,
    assemble_ensemble,
    load_work_dir_ensemble,
)
from ktcli.deployment.export import ensemble_metadata, write_model  # noqa: E402
from ktcli.deployment.export_verifier import ExportedModel, torch_runner  # noqa: E402
from ktcli.errors import UserError, exit_on_user_error  # noqa: E402
from ktcli.stages.work_dir import parse_models  # noqa: E402

ENGINES = (('eager', None), ('TorchScript', 'torchscript'), ('ONNX Runtime', 'onnx'))


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
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='intra-op threads of every engine (default: torch\'s)')
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


def engine_rows(label: str, ensemble: StageEnsemble, batches: dict, args: argparse.Namespace,
                folder: Path) -> list:
    """Export ``ensemble`` into ``folder`` and time it on every engine and batch.

    Returns:
        list: ``(model label, engine, batch, seconds per call, max |Δp| vs eager)`` rows.
    """
    runners = {}
    for name, model_format in ENGINES:
        if model_format is None:
            runners[name] = torch_runner(ensemble.module)
            continue
        path = folder / f'{label}.{"pt" if model_format == "torchscript" else "onnx"}'
        write_model(ensemble.module, torch.from_numpy(batches[max(batches)][:2]), path,
                    ensemble_metadata(ensemble, model_format), model_format)
        runners[name] = ExportedModel(path, threads=args.threads)
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

    with tempfile.TemporaryDirectory(prefix='kt_benchmark_') as folder:
        rows = [row for label, model in models.items()
                for row in engine_rows(label, model, batches, args, Path(folder))]

    eager = {(label, size): seconds for label, name, size, seconds, _ in rows
             if name == 'eager'}
    threads = f'{args.threads} thread{"s" if args.threads > 1 else ""}'
    table = Table(title=f'{source}: {height} x {width} px, {threads}, median of {args.iters} '
                  'calls')
    for column in ('model', 'engine', 'batch', 'ms / call', 'images/s', 'x eager',
                   'max |Δp| vs eager'):
        table.add_column(column, justify='right')
    for label, name, size, seconds, difference in rows:
        table.add_row(label, name, str(size), f'{seconds * 1000:.1f}', f'{size / seconds:.1f}',
                      f'{eager[label, size] / seconds:.2f}', f'{difference:.1e}')
    Console().print(table)


if __name__ == '__main__':
    with exit_on_user_error():
        main()
