"""Score a trained checkpoint on a config's test split, like mmpretrain's tools/test.py.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm]
"""
import argparse
import sys
from pathlib import Path

if __package__ in (None, '') and (Path(__file__).resolve().parents[1] / 'ktcli').is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ktcli.errors import exit_on_user_error  # noqa: E402
from ktcli.runner import load_config, parse_runner_args  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a trained kt model.')
    parser.add_argument('config', help='the config file the model was trained with')
    parser.add_argument('checkpoint', help='the checkpoint file, or a work dir')
    parser.add_argument('--work-dir', help='where the test log goes '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--out', help='dump the per-sample predictions to this pickle file')
    return parse_runner_args(parser)


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, work_dir=args.work_dir,
                      launcher=args.launcher)
    from registry_plugins.checkpoint_loading import resolve_checkpoint
    cfg.load_from = str(resolve_checkpoint(args.checkpoint))
    if args.out:
        cfg.test_evaluator = [*_as_list(cfg.test_evaluator),
                              dict(type='DumpResults', out_file_path=args.out)]

    from mmengine.runner import Runner
    metrics = Runner.from_cfg(cfg).test()
    print(' '.join(f'{name}: {value:.4f}' for name, value in metrics.items()))


def _as_list(evaluator) -> list:
    return list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]


if __name__ == '__main__':
    with exit_on_user_error():
        main()
