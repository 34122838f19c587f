"""The Slurm jobs kt submitted from this user's account, kept outside every work dir.

A stage record's ``job_id`` travels with the work dir, so it says nothing about who owns
the job: an id copied from another work dir, or planted in a received one, can name any
job of this user's. kt therefore acts on a job (cancels it, or waits for it as a stage's
job) only when this file lists the id with the stage's digest: a line ``JOB_ID DIGEST`` per
job kt submitted, in ``$KT_STATE_DIR``, else ``$XDG_STATE_HOME/kt``, else
``~/.local/state/kt`` (0600 in a 0700 folder, so only this user adds to it).
"""
import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import Optional, Set, Tuple

from ..reading import read_capped

JOBS_NAME = 'slurm_jobs'
# The file keeps the newest ids only: more than any cluster's queue holds for one user.
MAX_JOBS = 100000


def state_dir() -> Optional[Path]:
    """kt's per-user state folder, or None without a home."""
    if os.environ.get('KT_STATE_DIR'):
        return Path(os.environ['KT_STATE_DIR'])
    xdg = os.environ.get('XDG_STATE_HOME', '')
    try:
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / '.local' / 'state'
    except RuntimeError:
        return None
    return base / 'kt'


def remember_job(job_id: str, digest: str) -> None:
    """Add the job kt just submitted for stage ``digest`` (a file that cannot be written
    only means kt will not act on that job later)."""
    folder = state_dir()
    if folder is None:
        return
    with contextlib.suppress(OSError):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _owned(os.lstat(folder), stat.S_ISDIR):
            return
        os.chmod(folder, 0o700)
        descriptor = os.open(folder / JOBS_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                             | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(descriptor, 'a') as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            if _owned(os.fstat(descriptor), stat.S_ISREG):
                file.write(f'{job_id} {digest}\n')


def submitted_jobs() -> Set[Tuple[str, str]]:
    """The ``(job id, stage digest)`` pairs kt submitted from this account."""
    folder = state_dir()
    if folder is None:
        return set()
    try:
        if not _owned(os.lstat(folder), stat.S_ISDIR):
            return set()
        content = read_capped(folder / JOBS_NAME, 64 * MAX_JOBS)
    except (OSError, ValueError):
        return set()
    pairs = set()
    for line in content.decode(errors='replace').splitlines()[-MAX_JOBS:]:
        job, _, digest = line.partition(' ')
        pairs.add((job, digest))
    return pairs


def _owned(status: os.stat_result, kind) -> bool:
    """This user's, of ``kind``, writable by no one else."""
    return (kind(status.st_mode) and status.st_uid == os.getuid()
            and not stat.S_IMODE(status.st_mode) & 0o022)
