"""Time kt's paired statistics: a bootstrap interval and McNemar's p on many test images.

Usage: python tools/benchmark_statistics.py [--images 10000] [--resamples 10000] [--seeds 3]
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

if importlib.util.find_spec('ktcli') is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ktcli.scoring.paired_statistics import compare_paired, compare_replicates  # noqa: E402


def main(argv=None) -> None:
    """Time one paired comparison and one over seeds on random correctness vectors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=10_000)
    parser.add_argument('--resamples', type=int, default=10_000)
    parser.add_argument('--seeds', type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    first = rng.random((args.seeds, args.images)) < 0.80
    second = rng.random((args.seeds, args.images)) < 0.79
    compare_paired(first[0], second[0], resamples=10)  # imports scipy.stats
    for label, run in (('one seed', lambda: compare_paired(first[0], second[0],
                                                             resamples=args.resamples)),
                       (f'{args.seeds} seeds', lambda: compare_replicates(
                           first, second, resamples=args.resamples))):
        start = time.perf_counter()
        comparison = run()
        print(f'{label}: {args.images} images x {args.resamples} resamples in '
              f'{time.perf_counter() - start:.3f} s (Δ {comparison.difference:+.2f} '
              f'[{comparison.ci_low:+.2f}, {comparison.ci_high:+.2f}])')


if __name__ == '__main__':
    main()
