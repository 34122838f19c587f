"""Benchmark: ``kt ablate n`` with independent stages side by side vs one at a time.

    python tools/benchmark_parallel.py [--parallel 2] [--max-n 3] [--work-root DIR]
        [-- KT ABLATE OPTIONS]

Runs the same ``kt ablate n --dataset demo --max-n N`` twice in fresh work dirs:
serially (``--parallel 1``: each stage gets every core) and with ``--parallel K``
(a stage gets cores / the stages running once it starts), and prints both wall
times, the speed-up and every stage's own training time. The kt options default to the README's
main job (EfficientNet-Lite0, 128 px, 3 epochs). Both runs use the demo data
and its image-check cache, written before timing starts. Writes
``benchmark_parallel.json`` into ``--work-root``.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
MAIN_JOB = ['--backbone', 'efficientnet_lite0', '--img-size', '128', '--output-stride', '16',
            '--frozen-stages', '5', '--epochs', '3', '--lr', '0.1']


def kt(*args: str) -> float:
    """Run ``kt ARGS`` (failing loudly); its wall time in seconds."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, '-m', 'ktcli', *args], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f'kt {" ".join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}')
    return time.perf_counter() - started


def stage_times(work_dir: Path) -> dict:
    """Each stage's label and training time from the work dir's manifest."""
    stages = json.loads((work_dir / 'kt_manifest.json').read_text())['stages'].values()
    return {record['label']: round(record['train_seconds'], 1) for record in stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--parallel', type=int, default=2, help='Stages at once.')
    parser.add_argument('--max-n', type=int, default=3, help='kt ablate n --max-n.')
    parser.add_argument('--work-root', type=Path, default=Path('work_dirs/benchmark_parallel'),
                        help='Where the two work dirs and the JSON go (emptied first).')
    parser.add_argument('kt_options', nargs='*', help='kt ablate options after --; default: '
                        + ' '.join(MAIN_JOB))
    args = parser.parse_args()
    options = ['--dataset', 'demo', '--max-n', str(args.max_n), *(args.kt_options or MAIN_JOB)]
    if args.work_root.exists():
        subprocess.run(['rm', '-rf', str(args.work_root)], check=True)
    cores = len(os.sched_getaffinity(0))
    console = Console()
    # Writes and checks the demo data once, outside the timings.
    kt('ablate', 'n', *options, '--work-dir', str(args.work_root / 'plan'), '--dry-run')
    runs = {}
    for parallel in (1, args.parallel):
        work_dir = args.work_root / f'parallel_{parallel}'
        console.print(f'kt ablate n --parallel {parallel} ...')
        seconds = kt('ablate', 'n', *options, '--parallel', str(parallel),
                     '--work-dir', str(work_dir))
        runs[parallel] = dict(wall_seconds=round(seconds, 1),
                              threads=(f'{cores}' if parallel == 1 else
                                       f'{cores} / running stages (at least 1)'),
                              stage_seconds=stage_times(work_dir),
                              results=json.loads((work_dir / 'ablate_n.json').read_text())['rows'])
    table = Table(title=f'kt ablate n --max-n {args.max_n} on the demo, {cores} cores '
                  f'({" ".join(args.kt_options or MAIN_JOB)})')
    for column in ('run', 'threads per stage', 'wall time', 'speed-up', 'stage training times'):
        table.add_column(column, justify='left' if column == 'stage training times' else 'right')
    serial = runs[1]['wall_seconds']
    for parallel, run in runs.items():
        table.add_row('serial' if parallel == 1 else f'--parallel {parallel}',
                      run['threads'], f'{run["wall_seconds"]:.0f} s',
                      f'{serial / run["wall_seconds"]:.2f}x',
                      ', '.join(f'{label} {s:.0f} s' for label, s in run['stage_seconds'].items()))
    console.print(table)
    same = runs[1]['results'] == runs[args.parallel]['results']
    console.print(f'same figures in both runs: {same}')
    out = args.work_root / 'benchmark_parallel.json'
    out.write_text(json.dumps(dict(cores=cores, options=options, runs=runs,
                                   same_figures=same), indent=2))
    console.print(f'written: {out}')


if __name__ == '__main__':
    main()
