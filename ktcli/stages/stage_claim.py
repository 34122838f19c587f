"""Claim a stage before training it: one locked step that no other kt can interleave with.

Under the manifest's lock, a stage is refused when another live process on this machine
trains it (its training process, or the kt that claimed it and has not started that process
yet), when its directory holds a symbolic link or anything but folders and regular files
(mmengine writes its checkpoints, ``last_checkpoint`` and logs there with plain ``open()``,
which would follow a link out of the work dir), and when it holds checkpoints although no
kt run of it is recorded, i.e. its record has no status (a received work dir's planted
``epoch_N.pth`` would otherwise be resumed, or adopted as trained). Otherwise it is
recorded as running, with this process as its owner, in the same step.
"""
import os
import socket
import stat
from pathlib import Path
from typing import List, Optional

from ..errors import UserError
from ..reading import UnsafeFileError, no_links_below
from .manifest import Manifest
from .planned_stage import PlannedStage

# What mmengine leaves in a stage directory that a resume would take up.
RESUMABLE = ('epoch_*.pth', 'last_checkpoint')


def process_start(pid: int) -> Optional[int]:
    """When process ``pid`` of this machine started (clock ticks since boot), or None."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()
    except OSError:
        return None
    return int(fields[19]) if len(fields) > 19 else None


def this_process() -> List[int]:
    """This process as a record's ``owner``: its pid and start time (pids are reused)."""
    return [os.getpid(), process_start(os.getpid()) or 0]


def refuse_if_live(stage: PlannedStage, record: Optional[dict]) -> None:
    """Refuse a stage that another live process on this machine is training.

    Raises:
        UserError: Its training process, or the kt that claimed it, is alive.
    """
    from .scheduler import process_alive
    record = record or {}
    if record.get('status') != 'running' or record.get('host') not in (None,
                                                                        socket.gethostname()):
        return
    owner = record.get('owner') or [0, 0]
    pid = record.get('pid')
    if process_alive(pid, stage.dir):
        who = f'process {pid}'
    elif owner[0] != os.getpid() and process_start(owner[0]) == owner[1]:
        who = f'kt process {owner[0]}'
    else:
        return
    raise UserError(f'stage {stage.label} is being trained by {who} (another kt); wait for it '
                    'to finish, or stop it, then rerun')


def check_stage_dir(work_dir: Path, stage: PlannedStage, started: bool) -> None:
    """Refuse a stage directory that training would write out of, or resume from files
    no kt run of it left.

    Raises:
        UnsafeFileError: A link, FIFO, device or socket in the directory.
        UserError: Checkpoints in the directory of a stage never started.
    """
    folder = no_links_below(work_dir, Path(stage.dir).relative_to(work_dir))
    if not folder.is_dir():
        return
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            mode = os.lstat(os.path.join(root, name)).st_mode
            if stat.S_ISLNK(mode):
                raise UnsafeFileError(f'{os.path.join(root, name)} is a symbolic link; kt never '
                                      'writes through links in a work dir: remove it and rerun')
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UnsafeFileError(f'{os.path.join(root, name)} is not a regular file: '
                                      'remove it and rerun')
    planted = sorted(path.name for pattern in RESUMABLE for path in folder.glob(pattern))
    if planted and not started:
        raise UserError(f'{folder} holds {", ".join(planted)}, but no kt run of this stage is '
                        'recorded, so kt neither resumes nor adopts them: move them out of the '
                        'folder (nothing is deleted) and rerun')


def claim_stage(manifest: Manifest, stage: PlannedStage, **fields) -> dict:
    """Record ``stage`` as running (with ``fields``) after the checks above, in one step.

    Args:
        manifest (Manifest): The work dir's manifest.
        stage (PlannedStage): The stage to train.
        **fields: The record fields to set with ``status='running'``.

    Returns:
        dict: The record.

    Raises:
        UserError: See :func:`refuse_if_live` and :func:`check_stage_dir`.
    """
    def check(record: Optional[dict]) -> None:
        refuse_if_live(stage, record)
        # A status is what kt records once it queues or starts a stage (a received
        # stage directory that no record names, like a planted next stage, has none).
        check_stage_dir(manifest.work_dir, stage, bool((record or {}).get('status')))

    return manifest.update(stage.digest, check=check, **fields, status='running',
                           owner=this_process())
