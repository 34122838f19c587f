"""The work directory's index of its stages: a cache of the stage directories."""
import contextlib
import fcntl
import json
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from .stage_files import CONFIG_DATA, STAGE_RECORD, read_stage_record, write_stage_record
from ..writing import write_atomically

MANIFEST_NAME = 'kt_manifest.json'
# kt train's table of the sequence it trained (ktcli/commands/train.py writes it).
RESULTS_NAME = 'results.json'
# Held (flock) by whoever changes the manifest: kt, its stage threads, Slurm jobs.
LOCK_NAME = '.kt_manifest.lock'
FORMAT_VERSION = 2
STAGES_DIR = 'stages'
# WORK_DIR/stage_k links to the k-th stage of the sequence last trained.
STAGE_LINK = 'stage_{}'


class Manifest:
    """Stages by digest (status, paths, metrics) plus the sequence last trained.

    Each stage directory holds its own record (``stage.json``) and every
    update writes it there as well, so the manifest is a cache: when it is
    missing, empty, truncated or invalid, it is rebuilt from the stage
    directories and the ``stage_k`` links, with one line on stderr, and
    nothing trained is lost. Every write replaces the file atomically.

    Several writers may share a work dir (parallel stages, Slurm jobs,
    two kt commands): every change takes an exclusive lock on the work
    dir, rereads the manifest, applies itself and writes it back, so no
    writer undoes another's change.

    Args:
        work_dir (Path): The sequence's work directory.
    """

    _threads = threading.Lock()

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / MANIFEST_NAME
        self.stages: Dict[str, dict] = {}
        self.chain: List[str] = []
        self.results: List[dict] = []
        # The command that made ``chain`` the work dir's current sequence (see set_sequence).
        self.sequence_command: Optional[str] = None
        problem = self._load()
        if problem is not None and (self.work_dir / STAGES_DIR).is_dir():
            with self._exclusive():
                if self.stages:
                    print(f'{self.path} {problem}; rebuilt it from {len(self.stages)} stage '
                          'director' + ('y' if len(self.stages) == 1 else 'ies'),
                          file=sys.stderr)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the work dir's lock, with the manifest reread (rebuilt if it is unusable),
        and write it back at the end."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self._threads, open(self.work_dir / LOCK_NAME, 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._load() is not None:
                self._rebuild()
            yield
            self._save()

    def _load(self) -> Optional[str]:
        """Read the manifest; say what is wrong with it, if anything."""
        if not self.path.is_file():
            return 'is missing'
        try:
            data = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return 'is unreadable (empty, truncated or not JSON)'
        if (not isinstance(data, dict) or not isinstance(data.get('stages'), dict)
                or not isinstance(data.get('chain'), list)):
            return 'is not a kt manifest'
        self.stages, self.chain = data['stages'], data['chain']
        self.results = data.get('results', [])
        self.sequence_command = data.get('sequence_command', self._recorded_command())
        return None

    def _rebuild(self) -> None:
        """Recover the stages and the chain from the stage directories."""
        stages_dir = self.work_dir / STAGES_DIR
        self.stages = {}
        for path in sorted(stages_dir.glob(f'*/{STAGE_RECORD}')):
            record = read_stage_record(path.parent)
            if record is not None:
                # Paths come from where the directory is, not from what it says.
                stage_dir = Path(STAGES_DIR) / path.parent.name
                record.update(dir=str(stage_dir), config=str(stage_dir / CONFIG_DATA),
                              checkpoint=str(stage_dir / Path(record.get('checkpoint', '')).name))
                self.stages[record['digest']] = record
        self.chain = []
        link = self.work_dir / STAGE_LINK.format(1)
        while link.is_symlink() and link.readlink().name in self.stages:
            self.chain.append(link.readlink().name)
            link = self.work_dir / STAGE_LINK.format(len(self.chain) + 1)
        self.results = []
        self.sequence_command = self._recorded_command()

    def _recorded_command(self) -> Optional[str]:
        """The command that made the chain current, for a manifest that does not say (an
        older kt's, or a rebuilt one): ``kt train`` writes results.json, nothing else does."""
        return 'train' if self.chain and (self.work_dir / RESULTS_NAME).is_file() else None

    def stage(self, digest: str) -> Optional[dict]:
        """The record of stage ``digest``, if any."""
        return self.stages.get(digest)

    def is_done(self, digest: str) -> bool:
        """Whether stage ``digest`` finished and its checkpoint is still there."""
        record = self.stages.get(digest)
        return bool(record and record.get('status') == 'done'
                    and (self.work_dir / record['checkpoint']).is_file())

    def reload(self) -> None:
        """Read what other writers have recorded since (writes nothing: they replace the
        file atomically, so it is read whole)."""
        if self._load() is not None:
            self._rebuild()

    def update(self, digest: str, **fields) -> dict:
        """Set fields of a stage's record and save it in the stage dir and the manifest."""
        with self._exclusive():
            record = self.stages.setdefault(digest, dict(digest=digest))
            record.update(fields, updated=time.strftime('%Y-%m-%dT%H:%M:%S'))
            if 'dir' in record:
                write_stage_record(self.work_dir / record['dir'], record)
        return dict(record)

    def set_sequence(self, chain: List[str], results: List[dict], command: str) -> bool:
        """Make ``chain`` the work dir's current sequence (the one ``kt ensemble``, ``export``
        and ``predict`` use), with its results, unless ``kt train`` made another one current.

        The sequence ``kt train`` trained last stays current whatever other commands (the
        ablations) train in the same work dir; theirs becomes current only where no
        ``kt train`` sequence is.

        Args:
            chain (list[str]): The sequence's stage digests, in order.
            results (list[dict]): Its per-stage figures.
            command (str): The command that trained it, e.g. ``'train'`` or ``'ablate'``.

        Returns:
            bool: Whether it is now the current sequence.
        """
        with self._exclusive():
            if command != 'train' and self.sequence_command == 'train':
                return False
            self.chain, self.results, self.sequence_command = list(chain), list(results), command
        return True

    def _save(self) -> None:
        """Write the manifest atomically."""
        data = dict(format=FORMAT_VERSION, stages=self.stages, chain=self.chain,
                    results=self.results, sequence_command=self.sequence_command)
        write_atomically(self.path, json.dumps(data, indent=2))
