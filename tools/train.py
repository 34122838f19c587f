"""Train one model from an mmengine config, like mmpretrain's tools/train.py.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--data-root DIR] [--pretrained FILE]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm]

``--resume`` without CKPT continues from the newest complete checkpoint in the
work dir (none: a fresh start). Checkpoints are written and read weights-only
(see registry_plugins/checkpoint_loading.py). A stage config of a kt work dir names no
folder of the machine that wrote it: ``--data-root`` and ``--pretrained`` give its data and
pretrained file, and the config the run records names neither (see
ktcli/stages/portable_config.py).
"""
import argparse
import sys
from pathlib import Path

if __package__ in (None, '') and (Path(__file__).resolve().parents[1] / 'ktcli').is_dir():
    # Run as a script from a source checkout: import its ktcli. (Installed, this file is
    # ktcli/tools/train.py, ktcli is importable already, and nothing is added.)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ktcli.errors import UserError, exit_on_user_error  # noqa: E402
from ktcli.stages.portable_config import RunInputs, portable_runner  # noqa: E402
from ktcli.runner import load_config, parse_runner_args  # noqa: E402
from ktcli.devices import require_gpu


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a kt model (one stage).')
    parser.add_argument('config', help='the config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', const='auto', default=None, metavar='CKPT',
        help='resume from CKPT, or from the latest checkpoint in the work dir '
        'when no CKPT is given')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training')
    parser.add_argument('--data-root', help="the dataset folder (every dataloader's data_root)")
    parser.add_argument('--pretrained', help='the file a kt stage config names as '
                        'pretrained-file:<sha256>')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the total batch size (base 32)')
    return parse_runner_args(parser)


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, work_dir=args.work_dir,
                      launcher=args.launcher)
    if args.resume == 'auto':
        from registry_plugins.checkpoint_loading import latest_complete_checkpoint
        latest = latest_complete_checkpoint(cfg.work_dir)
        cfg.resume, cfg.load_from = latest is not None, str(latest) if latest else None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.amp:
        require_gpu('--amp')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
            raise UserError('--amp needs the plain OptimWrapper in optim_wrapper')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True

    portable_runner(cfg, RunInputs(args.data_root, args.pretrained)).train()


if __name__ == '__main__':
    with exit_on_user_error('rerun with --resume to continue from the last checkpoint'):
        main()
