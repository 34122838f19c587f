"""The body of a Slurm job that trains one stage (see :mod:`ktcli.sequencing.slurm`)::

    python -m ktcli.sequencing.stage_job WORK_DIR DIGEST [--processes P] [--data-root DIR]
        [--pretrained FILE]

trains the stage recorded under DIGEST in WORK_DIR's manifest, resuming it if
it was started before, and keeps its record for ``kt status`` and the command
that submitted it: running, done, failed (with the first error any of its
processes reported) or, when Slurm signals the job (scancel, a time limit),
interrupted. Its output goes to the job's log,
``WORK_DIR/stages/DIGEST/slurm-<job>.out``. The data folder is the one the
submitting command used (``--data-root``), else a folder holding the data the
stage's config records.
"""
import argparse
import signal
from pathlib import Path
from typing import Optional, Sequence

from ..errors import UserError, exit_on_user_error
from ..stages.config_files import read_stage_config
from ..stages.manifest import Manifest
from ..stages.planned_stage import PlannedStage
from ..stages.portable_config import RunInputs
from ..stages.records import located, record_paths
from ..stages.validation_config import validates
from ..stages.work_dir import StageData
from .launcher import train_command
from .stage_training import train_recorded_stage


class Stopped(Exception):
    """Slurm (scancel, a time limit, preemption) or someone else signalled the job."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stopped(signum: int, frame) -> None:
    raise Stopped(signum)


def recorded_stage(manifest: Manifest, digest: str) -> PlannedStage:
    """The planned stage that the manifest records under ``digest``.

    Raises:
        UserError: No such stage, or its config is missing or unsafe.
    """
    record = manifest.stage(digest)
    if record is None or 'config' not in record:
        raise UserError(f'{manifest.path} has no stage {digest}; resubmit it with the kt '
                        'command that planned it')
    folder, config, checkpoint = located(manifest.work_dir, record_paths(digest, record))
    return PlannedStage(record.get('index', 0), digest, read_stage_config(config), folder,
                        config, checkpoint, record.get('teachers', []),
                        record.get('label', digest))


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Train one recorded stage; exits 2 with one line if it fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir', type=Path)
    parser.add_argument('digest')
    parser.add_argument('--processes', type=int, default=1)
    parser.add_argument('--data-root', type=Path)
    parser.add_argument('--pretrained')
    args = parser.parse_args(argv)
    with exit_on_user_error('rerun the kt command that submitted it to resubmit it'):
        manifest = Manifest(args.work_dir.resolve())
        stage = recorded_stage(manifest, args.digest)
        # One process needs no srun; several are one srun step over the job's tasks.
        launcher = 'slurm' if args.processes > 1 else 'none'
        inputs = RunInputs(str(StageData(args.data_root).root(stage.cfg)), args.pretrained)
        command = (train_command(stage.config_path, stage.dir, args.processes, launcher,
                                  validates(stage.cfg))
                   + inputs.arguments())
        # Slurm signals every process of the job, this one too, when it stops the job from
        # outside; srun signals only its tasks when one of them fails.
        signal.signal(signal.SIGTERM, _stopped)
        try:
            train_recorded_stage(manifest, stage, command, on_progress=lambda update: None,
                                 on_line=lambda line: print(line, flush=True))
        except Stopped as stop:
            manifest.update(stage.digest, status='interrupted', pid=None,
                            reason=f'stopped by {stop}')
            print(f'stage {stage.label} ({stage.digest}): stopped by {stop}; rerun the kt '
                  'command that submitted it to resume it from its last finished epoch',
                  flush=True)
            raise SystemExit(128 + stop.signum) from None
        print(f'stage {stage.label} ({stage.digest}): trained', flush=True)


if __name__ == '__main__':
    main()
