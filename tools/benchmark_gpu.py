"""Benchmark: training images/s of a kt stage on a GPU, against mmpretrain's plain recipe.

    python tools/benchmark_gpu.py [--config configs/kt/resnet50_kt_cub.py] [--batch-size 32]
        [--img-size 448] [--teachers 0,4] [--teacher-precisions fp32,auto] [--iters 30]
        [--warmup 5] [--device cuda] [--out FILE]
    python tools/benchmark_gpu.py --smoke --out FILE    # tiny settings on the CPU (a test)

Times whole optimizer steps (preprocessing of a uint8 batch already on the device,
forward, loss, backward, update; no data loading) of the config's model built from
random weights (no pretrained download, no data set), with cuDNN autotuning on as in
kt's runtime config. One row per setting:

- ``ImageClassifier``: mmpretrain's plain recipe with the config's backbone, neck and
  head (ResNet-50, global average pooling, LinearClsHead, cross-entropy), the
  reference;
- ``KTClassifier`` with each number of frozen teachers in ``--teachers`` (teachers of
  the same architecture; with 0 it is the plain recipe plus kt's bookkeeping), the
  student in the default or channels-last memory format, and the teachers in each
  precision of ``--teacher-precisions`` (``auto``: bf16 on Ampere and later GPUs);

each in float32 and with AMP (mmengine's ``AmpOptimWrapper``, float16 with dynamic loss
scaling, what ``tools/train.py --amp`` uses; GPU only). Each row runs ``--warmup`` steps,
then ``--iters`` timed steps between two device synchronisations, and records the peak
GPU memory. Prints a table and writes the figures as JSON to ``--out``.
"""
import argparse
import gc
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

if __package__ in (None, '') and (Path(__file__).resolve().parents[1] / 'ktcli').is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ktcli.errors import UserError, exit_on_user_error  # noqa: E402
from ktcli.resources import CONFIG_ROOT  # noqa: E402
from registry_plugins import build_model_from_config  # noqa: E402
from registry_plugins.teacher_precision import (TEACHER_PRECISIONS,  # noqa: E402
                                                teacher_precision_name)

DEFAULT_CONFIG = CONFIG_ROOT / 'kt' / 'resnet50_kt_cub.py'
# The KTClassifier arguments a plain ImageClassifier does not take.
KT_ONLY_KEYS = ('attention', 'or_loss', 'teacher_precision', 'channels_last')
SMOKE = dict(device='cpu', img_size=64, batch_size=2, iters=2, warmup=1,
             teacher_precisions=['fp32', 'bf16'])


@dataclass(frozen=True)
class Setting:
    """One row of the benchmark."""

    model: str
    teachers: int
    amp: bool
    channels_last: bool
    teacher_precision: Optional[str]


def teacher_counts(text: str) -> List[int]:
    """Parse ``--teachers``: non-negative integers, comma-separated."""
    counts = [int(value) for value in text.split(',') if value.strip().isdigit()]
    if len(counts) != len(text.split(',')):
        raise argparse.ArgumentTypeError(f'expected counts like 0,4, got {text!r}')
    return counts


def teacher_precisions(text: str) -> List[str]:
    """Parse ``--teacher-precisions``: names of teacher precisions, comma-separated."""
    precisions = [value.strip() for value in text.split(',')]
    unknown = [value for value in precisions if value not in TEACHER_PRECISIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f'unknown {unknown}; choose from {TEACHER_PRECISIONS}')
    return precisions


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line; ``--smoke`` overrides the sizes and the device."""
    parser = argparse.ArgumentParser(
        description='Training images/s of a kt stage with 0..k teachers, AMP, channels_last '
        'and teacher precision, against the plain mmpretrain recipe.')
    parser.add_argument('--config', type=Path, default=DEFAULT_CONFIG,
                        help='the kt config whose model is timed (default: ResNet-50 on CUB)')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--img-size', type=int, default=448)
    parser.add_argument('--teachers', type=teacher_counts, default='0,4',
                        help='teacher counts, comma-separated')
    parser.add_argument('--teacher-precisions', type=teacher_precisions, default='fp32,auto',
                        help='teacher precisions (fp32, fp16, bf16, auto), comma-separated')
    parser.add_argument('--iters', type=int, default=30, help='timed steps per row')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps per row first')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', type=Path, help='write the figures to this JSON file')
    parser.add_argument('--smoke', action='store_true',
                        help='tiny settings on the CPU: --device cpu --img-size 64 '
                        '--batch-size 2 --iters 2 --warmup 1 --teacher-precisions fp32,bf16')
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    return args


def settings(teacher_counts: Sequence[int], precisions: Sequence[str],
             device: torch.device) -> List[Setting]:
    """Every row: the plain recipe, then kt per teacher count, memory format and precision.

    Precisions that mean the same on ``device`` (``auto`` is fp32 on the CPU) are
    timed once; AMP rows exist on GPUs only.
    """
    resolved = list(dict.fromkeys(teacher_precision_name(p, device) for p in precisions))
    amps = (False, True) if device.type == 'cuda' else (False, )
    rows = [Setting('ImageClassifier', 0, amp, False, None) for amp in amps]
    for teachers in teacher_counts:
        for amp in amps:
            for channels_last in (False, True):
                rows += [Setting('KTClassifier', teachers, amp, channels_last, precision)
                         for precision in (resolved if teachers else [None])]
    return rows


def model_config(cfg: Config, setting: Setting) -> Config:
    """The config of ``setting``'s model from the kt config, without pretrained weights."""
    model = cfg.model.copy()
    model.backbone = dict(model.backbone, init_cfg=None)
    if setting.model == 'ImageClassifier':
        model = dict({k: v for k, v in model.items() if k not in KT_ONLY_KEYS},
                     type='ImageClassifier')
    else:
        model.update(channels_last=setting.channels_last,
                     teacher_precision=setting.teacher_precision or 'fp32')
    return Config(dict(model=model, data_preprocessor=cfg.get('data_preprocessor')))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_setting(cfg: Config, setting: Setting, teachers: Sequence[nn.Module], data: dict,
                 args: argparse.Namespace, device: torch.device) -> Dict[str, object]:
    """Build ``setting``'s student, run its warmup and timed steps, and return its figures."""
    torch.manual_seed(0)
    student = build_model_from_config(model_config(cfg, setting)).to(device).train()
    for teacher in teachers[:setting.teachers]:
        student.add_teacher(teacher)
    optim_cfg = cfg.optim_wrapper.copy()
    if setting.amp:
        optim_cfg.update(type='AmpOptimWrapper', loss_scale='dynamic')
    optim_wrapper = build_optim_wrapper(student, optim_cfg)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)

    for _ in range(args.warmup):
        student.train_step(data, optim_wrapper)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.iters):
        losses = student.train_step(data, optim_wrapper)
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else None
    return dict(asdict(setting), images_per_s=args.batch_size * args.iters / seconds,
                ms_per_iter=1000 * seconds / args.iters, peak_memory_gib=peak,
                last_loss=losses['loss'].item())


def random_batch(batch_size: int, img_size: int, num_classes: int,
                 device: torch.device) -> dict:
    """A uint8 image batch on ``device`` with one label per image, as a loader gives it."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, img_size, img_size), dtype=torch.uint8,
                           generator=generator)
    return dict(inputs=images.to(device),
                data_samples=[DataSample().set_gt_label(i % num_classes)
                              for i in range(batch_size)])


def run(args: argparse.Namespace) -> dict:
    """Time every setting and return the report (also written to ``args.out``)."""
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UserError('--device cuda, but no GPU is visible; pass --device cpu or --smoke')
    MMLogger.get_instance('benchmark_gpu', log_level='WARNING')
    torch.backends.cudnn.benchmark = True
    cfg = Config.fromfile(str(args.config))
    rows = settings(args.teachers, args.teacher_precisions, device)

    torch.manual_seed(1)
    teacher_cfg = model_config(cfg, Setting('KTClassifier', 0, False, False, None))
    teachers = [build_model_from_config(teacher_cfg).to(device).eval()
                for _ in range(max(args.teachers))]
    data = random_batch(args.batch_size, args.img_size, cfg.model.head.num_classes, device)
    results, started = [], time.perf_counter()
    for setting in rows:
        results.append(time_setting(cfg, setting, teachers, data, args, device))
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    report = dict(
        config=str(args.config), device=device.type,
        device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
        torch=torch.__version__, batch_size=args.batch_size, img_size=args.img_size,
        warmup=args.warmup, iters=args.iters, cudnn_benchmark=torch.backends.cudnn.benchmark,
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        seconds=time.perf_counter() - started, rows=results)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return report


def print_report(report: dict) -> None:
    """Print the rows as a table, with each row's speed relative to the plain recipe."""
    plain = {row['amp']: row['images_per_s'] for row in report['rows']
             if row['model'] == 'ImageClassifier'}
    table = Table(title=(
        f"{Path(report['config']).name}: batch {report['batch_size']}, {report['img_size']} "
        f"px, {report['device_name']}, {report['iters']} timed steps after "
        f"{report['warmup']}; {report['seconds']:.0f} s"))
    table.add_column('model', no_wrap=True)
    for column in ('teachers', 'AMP', 'channels last', 'teacher precision', 'images/s',
                   'ms / iter', 'vs plain', 'peak GiB', 'last loss'):
        table.add_column(column, justify='right')
    for row in report['rows']:
        peak = row['peak_memory_gib']
        table.add_row(
            row['model'], str(row['teachers']), 'on' if row['amp'] else 'off',
            'on' if row['channels_last'] else 'off', row['teacher_precision'] or '-',
            f"{row['images_per_s']:.1f}", f"{row['ms_per_iter']:.1f}",
            f"{row['images_per_s'] / plain[row['amp']]:.2f}",
            '-' if peak is None else f'{peak:.1f}', f"{row['last_loss']:.3f}")
    # At least 120 columns, so that a log or a pipe gets the whole table.
    console = Console()
    console.width = max(console.width, 120)
    console.print(table)


def main() -> None:
    print_report(run(parse_args()))


if __name__ == '__main__':
    with exit_on_user_error():
        main()
