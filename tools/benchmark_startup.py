"""Time how long kt takes to answer the commands that should answer at once.

    python tools/benchmark_startup.py [--runs 5] [--kt PATH]

Runs each command ``--runs`` times in a fresh process (``kt --help``, ``kt train --help``,
``kt ablate n --help`` and the paper's headline command without its data, which must fail in
one line) and prints the median and the slowest wall time of each. Nothing here imports
torch: a command that does is what this benchmark exists to catch. Run it on an idle machine;
the load average is printed beside the figures.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (
    ('kt --help', ['--help'], 0),
    ('kt train --help', ['train', '--help'], 0),
    ('kt ablate n --help', ['ablate', 'n', '--help'], 0),
    ('kt train --dataset air --n 5 --alpha 0.5 (no data)',
     ['train', '--dataset', 'air', '--n', '5', '--alpha', '0.5'], 2),
)


def kt_command(kt: str) -> list:
    """The kt to time: ``--kt PATH``, the ``kt`` beside this Python, or ``python -m ktcli``."""
    if kt:
        return [kt]
    beside = Path(sys.executable).with_name('kt')
    return [str(beside)] if beside.is_file() else [sys.executable, '-m', 'ktcli']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--kt', default='', help='the kt executable (default: this venv\'s)')
    args = parser.parse_args()
    kt = kt_command(args.kt)
    # An empty folder: no data/ to find, so the headline command fails as on a new machine.
    folder = tempfile.mkdtemp(prefix='kt_startup_')
    try:
        print(f'load average {os.getloadavg()[0]:.2f}, {args.runs} runs each, {" ".join(kt)}')
        for name, arguments, expected in COMMANDS:
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                result = subprocess.run([*kt, *arguments], cwd=folder, capture_output=True)
                times.append(time.perf_counter() - started)
                if result.returncode != expected:
                    raise SystemExit(f'{name}: exit code {result.returncode}, expected '
                                     f'{expected}: {result.stderr.decode()[-500:]}')
            print(f'{name:55s} median {statistics.median(times):.2f} s, '
                  f'slowest {max(times):.2f} s')
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == '__main__':
    main()
