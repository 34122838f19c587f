"""Run every received-work-dir and export case of issues 16 and 26 and print the outcome table.

    python -m tests.received_sweep [--base DIR] [--markdown] [--only TEXT]

Trains a 2-stage tiny work dir on the tiny demo data (as the test suite's fixtures do),
exports a 3-member ensemble to ONNX and TorchScript, then runs each case of
``tests/received_cases.py`` and ``tests/received_meanings.py`` (the definitions the tests
use) on a fresh tampered copy, in a process of its own, and prints the command, its exit
code and its stderr line, with FAIL where the outcome is not the expected one (exit code,
the phrase of the line, a traceback, a second line, or anything outside the work dir read,
written or run). It lives with the tests because it is built from them; run it from the
repository's root.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from .conftest import REPO
from .kt_processes import KtServer
from .received_cases import CASES
from .received_copies import received, snapshot
from .received_meanings import MEANING_CASES
from .test_export import exported_files, three_member_work_dir
from .test_received_cases import check_outcome

TINY = ['--backbone', 'resnet18_tiny', '--img-size', '32', '--epochs', '1', '--batch-size', '8']


def trained(base: Path) -> tuple:
    """The demo data, the trained 2-stage work dir and the exported ensembles under ``base``."""
    from ktcli.data.demo import make_demo_dataset
    demo_root = base / 'kt_demo'
    if not demo_root.exists():
        make_demo_dataset(demo_root, seed=0, img_size=40, train_per_class=3, test_per_class=2)
    work_dir = base / 'trained' / 'work'
    if not (work_dir / 'results.json').exists():
        subprocess.run([sys.executable, '-m', 'ktcli', 'train', '--dataset', 'demo',
                        '--data-root', str(demo_root), *TINY, '--work-dir', str(work_dir),
                        '--n', '2'], cwd=REPO, check=True, capture_output=True)
    exports = exported_files(three_member_work_dir(base, work_dir))
    return demo_root, work_dir, exports


def shown(args: list, base: Path) -> str:
    """The command as a user would type it, with the sweep's folder as ``$B``."""
    return 'kt ' + ' '.join(str(arg).replace(str(base), '$B') for arg in args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--base', type=Path, help='where to train and tamper (default: a '
                        'temporary folder; reused when given)')
    parser.add_argument('--markdown', action='store_true', help='print a Markdown table')
    parser.add_argument('--only', help='run only the cases whose name holds this text')
    args = parser.parse_args()
    base = (args.base or Path(tempfile.mkdtemp(prefix='kt_sweep_'))).resolve()
    base.mkdir(parents=True, exist_ok=True)
    demo_root, work_dir, exports = trained(base)
    failures = 0
    rows = []
    with KtServer() as kt:
        for number, case in enumerate(CASES + MEANING_CASES, start=1):
            if args.only and args.only not in case.name:
                continue
            ctx = received(base / 'cases' / str(number), work_dir, demo_root, exports)
            before = snapshot(ctx.outside)
            command = case.prepare(ctx)
            result = kt.run(*command)
            try:
                line = check_outcome(case, result, ctx, before)
                verdict = 'ok'
            except AssertionError as error:
                failures += 1
                lines = [text for text in result.stderr.splitlines() if text.strip()]
                line, verdict = (lines[-1] if lines else ''), f'FAIL {str(error)[:200]}'
            rows.append((case.name, shown(command, base), result.returncode,
                         line.replace(str(base), '$B'), verdict))
    for number, (name, command, code, line, verdict) in enumerate(rows, start=1):
        if args.markdown:
            print(f'| {number} | {name} | `{command}` | {code} | {line.replace("|", "/")} | '
                  f'{verdict} |')
        else:
            line = line or '(no stderr)'
            print(f'{number:2d}. {name}\n    $ {command}\n    exit {code}: {line}  [{verdict}]')
    print(f'{len(rows) - failures}/{len(rows)} cases as expected ($B = {base})')
    raise SystemExit(1 if failures else 0)


if __name__ == '__main__':
    main()
