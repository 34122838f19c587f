"""Benchmark: what do teachers add to a training iteration?

    python tools/benchmark_train.py CONFIG [--batch-size 8] [--img-size 224]
        [--max-teachers 4] [--iters 3] [--rounds 3] [--device cpu] [--amp]

Times one optimizer step of the config's model (data preprocessing, forward,
loss, backward, update; no data loading) with k = 0..max frozen teachers of
the same architecture, and one teacher forward (backbone and attention map,
no grad). With f = teacher forward / plain step, a step with k teachers
cannot take less than 1 + k * f plain steps; the table shows each measured
time against that bound. The k values are measured interleaved over several
rounds so that drift of the machine's speed hits all of them alike; bounds
and ratios use medians (a shared machine's occasional stall distorts a mean),
and the means are shown beside them.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

if __package__ in (None, '') and (Path(__file__).resolve().parents[1] / 'ktcli').is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ktcli.errors import exit_on_user_error  # noqa: E402
from ktcli.runner import load_config  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Time training steps with 0..k teachers.')
    parser.add_argument('config', help='the config file of the model to time')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--max-teachers', type=int, default=4)
    parser.add_argument('--iters', type=int, default=3, help='timed steps per k and round')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps per k first')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true', help='autocast to fp16/bf16')
    parser.add_argument('--json', type=Path, help='also write the figures to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE')
    return parser.parse_args()


def timed(step: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``step`` takes, waiting for the device to finish."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('benchmark_train', log_level='WARNING')
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
    from registry_plugins import build_model_from_config

    device = torch.device(args.device)
    torch.manual_seed(0)
    teachers = [build_model_from_config(cfg) for _ in range(args.max_teachers)]
    students, optim_wrappers = [], []
    for k in range(args.max_teachers + 1):
        student = build_model_from_config(cfg).to(device).train()
        for teacher in teachers[:k]:
            student.add_teacher(teacher)
        students.append(student)
        optim_wrappers.append(build_optim_wrapper(student, cfg.optim_wrapper))

    num_classes = students[0].head.num_classes
    data = dict(
        inputs=[torch.randint(0, 256, (3, args.img_size, args.img_size), dtype=torch.uint8)
                for _ in range(args.batch_size)],
        data_samples=[DataSample().set_gt_label(i % num_classes)
                      for i in range(args.batch_size)])

    def train_step(k: int) -> Callable[[], object]:
        return lambda: students[k].train_step(data, optim_wrappers[k])

    inputs = students[1].data_preprocessor(data, True)['inputs'] if teachers else None
    steps: Dict[int, List[float]] = {k: [] for k in range(args.max_teachers + 1)}
    teacher_forward: List[float] = []
    for k in steps:
        for _ in range(args.warmup):
            train_step(k)()
    for _ in range(args.rounds):
        for k in steps:
            steps[k] += [timed(train_step(k), device) for _ in range(args.iters)]
        if teachers:
            teacher_forward += [timed(lambda: students[1].teacher_attention_maps(inputs), device)
                                for _ in range(args.iters)]

    plain = statistics.median(steps[0])
    f = statistics.median(teacher_forward) / plain if teachers else 0.0
    rows = []
    for k, times in steps.items():
        median = statistics.median(times)
        bound = plain * (1 + k * f)
        rows.append(dict(teachers=k, median_seconds=median, mean_seconds=statistics.mean(times),
                         lower_bound=bound, ratio=median / bound))

    title = (f'{Path(args.config).name}: batch {args.batch_size}, {args.img_size} px, '
             f'{device.type}{", amp" if args.amp else ""}, '
             f'{args.rounds} x {args.iters} steps per k; f = {f:.3f}')
    table = Table(title=title)
    for column in ('teachers k', 's / iter (median)', 's / iter (mean)', 'bound (1 + k·f)·t0',
                   'ratio'):
        table.add_column(column, justify='right')
    for row in rows:
        table.add_row(str(row['teachers']), f"{row['median_seconds']:.4f}",
                      f"{row['mean_seconds']:.4f}", f"{row['lower_bound']:.4f}",
                      f"{row['ratio']:.3f}")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(dict(config=args.config, batch_size=args.batch_size,
                                             img_size=args.img_size, device=device.type,
                                             amp=args.amp, teacher_forward_cost=f, rows=rows),
                                        indent=2))


if __name__ == '__main__':
    with exit_on_user_error():
        main()
