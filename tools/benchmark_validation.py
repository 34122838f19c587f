"""What mmengine's per-epoch val loop cost the stages of a work dir, read from their logs.

Usage: python tools/benchmark_validation.py WORK_DIR

For stages trained with ``--val-split``: an epoch's training runs from its start (the
previous validation, or the log's first line, so epoch 1 includes building the runner) to
mmengine's "Saving checkpoint at N epochs"; its validation from there to its
"Epoch(val) [N]" line. The logs stamp whole seconds.
"""
import argparse
import datetime
import re
from pathlib import Path
from typing import List, Tuple

STAMP = re.compile(r'^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)')


def epoch_times(log: Path) -> Tuple[List[float], List[float]]:
    """Seconds of each epoch's training and of each validation in one stage log."""
    stamped = [(datetime.datetime.strptime(match.group(1), '%Y/%m/%d %H:%M:%S'), line)
               for line in log.read_text(errors='replace').splitlines()
               if (match := STAMP.match(line))]
    train, val = [], []
    start, saved = (stamped[0][0] if stamped else None), None
    for when, line in stamped:
        if 'Saving checkpoint at' in line:
            saved = when
            train.append((when - start).total_seconds())
        elif 'Epoch(val)' in line and saved is not None:
            val.append((when - saved).total_seconds())
            start, saved = when, None
    return train, val


def main(argv=None) -> None:
    """Print each validated stage's training and validation seconds per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir', type=Path)
    args = parser.parse_args(argv)
    for log in sorted(args.work_dir.glob('stages/*/*/*.log')):
        train, val = epoch_times(log)
        if not val:
            continue
        share = 100 * sum(val) / (sum(train) + sum(val))
        print(f'{log.parent.parent.name}: training epochs {[round(s) for s in train]} s, '
              f'validation {[round(s) for s in val]} s: validation {share:.1f}% of the stage')


if __name__ == '__main__':
    main()
