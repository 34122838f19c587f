"""The work directory's index of its stages: a locked cache of the stage directories.

A command that trains holds one :class:`Manifest` for its work dir (the sequences' owner,
:class:`~ktcli.sequencing.sequence.WorkDirSequences`, hands it to its scheduler); a command
that only reads opens it with ``writable=False``, which never takes the lock or writes,
even when the file has to be rebuilt from the stage directories.
"""
import contextlib
import fcntl
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

from ktbase.writing import write_atomically

from ..reading import UnsafeFileError, is_regular_file, no_links_below, read_json
from .records import (FORMAT_VERSION, LOCK_NAME, MANIFEST_NAME, RESULTS_NAME, STAGES_DIR,
                      STAGE_LINK, check_manifest, is_digest, read_stage_record, record_paths,
                      write_stage_record)


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
        writable (bool): Whether this process changes it. A read-only
            manifest rebuilds an unusable file in memory only and refuses
            every change. Defaults to True.
    """

    _threads = threading.Lock()
    # The rebuilds this process has reported: a read-only manifest rebuilds again each time
    # a command opens it, and says so once.
    _reported: Set[Tuple[str, str]] = set()

    def __init__(self, work_dir: Path, writable: bool = True) -> None:
        self.work_dir = Path(work_dir)
        self.writable = writable
        self.path = self.work_dir / MANIFEST_NAME
        self.stages: Dict[str, dict] = {}
        self.chain: List[str] = []
        # Stage directories the last rebuild left out, and why (the first one).
        self._skipped: List[str] = []
        # The command that made ``chain`` the work dir's current sequence (see set_sequence).
        self.sequence_command: Optional[str] = None
        problem = self._load()
        if problem is not None and (self.work_dir / STAGES_DIR).is_dir():
            if writable:
                with self._exclusive():
                    self._report_rebuild(problem)
            else:
                self._rebuild()
                self._report_rebuild(problem)

    def _report_rebuild(self, problem: str) -> None:
        """Say on stderr that the manifest was rebuilt, and from what."""
        if self._skipped and not self.stages:
            # Nothing kt can use is left: say why, rather than act on an empty work
            # dir (which a command would train into afresh, beside the refused stages).
            raise UnsafeFileError(f'{problem}; no stage directory holds a record kt '
                                  f'can use ({self._skipped[0]})')
        if (str(self.path), problem) in self._reported:
            return
        self._reported.add((str(self.path), problem))
        if self.stages or self._skipped:
            skipped = (f' ({len(self._skipped)} left out: {self._skipped[0]})'
                       if self._skipped else '')
            print(f'{problem}; rebuilt it from {len(self.stages)} stage '
                  'director' + ('y' if len(self.stages) == 1 else 'ies') + skipped,
                  file=sys.stderr)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the work dir's lock, with the manifest reread (rebuilt if it is unusable),
        and write it back at the end."""
        if not self.writable:
            raise RuntimeError(f'{self.path} was opened read-only')
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self._threads, self._lock_file() as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._load() is not None:
                self._rebuild()
            yield
            self._save()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Change ``stages`` and ``chain`` in place under the work dir's lock:
        reread on entry, written once on exit."""
        with self._exclusive():
            yield

    def _lock_file(self):
        """The lock file, opened without following a link (a planted one is refused)."""
        path = self.work_dir / LOCK_NAME
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                                 | os.O_CLOEXEC, 0o644)
        except OSError:
            if os.path.islink(path):
                raise UnsafeFileError(f'{path} is a symbolic link; kt never writes through '
                                      'links in a work dir: remove it and rerun') from None
            if os.path.isdir(path):
                raise UnsafeFileError(f'{path} is a folder, not the lock file kt keeps there: '
                                      'remove it and rerun') from None
            raise
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise UnsafeFileError(f'{path} is not a regular file: remove it and rerun')
        return os.fdopen(descriptor, 'r+')

    def _load(self) -> Optional[str]:
        """Read the manifest; say what is wrong with it, if anything."""
        try:
            data = check_manifest(read_json(self.path), str(self.path))
        except FileNotFoundError:
            return f'{self.path} is missing'
        except UnsafeFileError as error:
            return str(error)
        self.stages, self.chain = data['stages'], data['chain']
        self.sequence_command = data.get('sequence_command', self._recorded_command())
        return None

    def _rebuild(self) -> None:
        """Recover the stages and the chain from the stage directories (each a real folder
        named by its digest, holding a valid record; the others are left out)."""
        stages_dir = no_links_below(self.work_dir, STAGES_DIR)
        self.stages, self._skipped = {}, []
        for stage_dir in sorted(stages_dir.iterdir() if stages_dir.is_dir() else ()):
            if not is_digest(stage_dir.name) or not stat.S_ISDIR(os.lstat(stage_dir).st_mode):
                continue
            try:
                record = read_stage_record(stage_dir)
            except UnsafeFileError as error:
                self._skipped.append(str(error))
                continue
            if record is not None:
                # Paths come from where the directory is, not from what it says.
                record.update(record_paths(record['digest'], record))
                self.stages[record['digest']] = record
        self.chain = []
        link = self.work_dir / STAGE_LINK.format(1)
        while link.is_symlink() and link.readlink().name in self.stages:
            self.chain.append(link.readlink().name)
            link = self.work_dir / STAGE_LINK.format(len(self.chain) + 1)
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
        return bool(record and record.get('status') == 'done' and 'checkpoint' in record
                    and is_regular_file(no_links_below(self.work_dir, record['checkpoint'])))

    def reload(self) -> None:
        """Read what other writers have recorded since (writes nothing: they replace the
        file atomically, so it is read whole)."""
        if self._load() is not None:
            self._rebuild()

    def update(self, digest: str, check: Optional[Callable[[Optional[dict]], None]] = None,
               **fields) -> dict:
        """Set fields of a stage's record and save it in the stage dir and the manifest.

        Args:
            digest (str): The stage.
            check (callable, optional): Called with the stage's current record
                (None if there is none) under the lock, before anything
                changes; what it raises leaves the record as it was. This is
                how a stage is claimed: the check and the change are one step.
            **fields: The fields to set.
        """
        with self._exclusive():
            if check is not None:
                check(self.stages.get(digest))
            record = self.stages.setdefault(digest, dict(digest=digest))
            record.update(fields, updated=time.strftime('%Y-%m-%dT%H:%M:%S'))
            if 'dir' in record:
                write_stage_record(no_links_below(self.work_dir, record['dir']), record)
        return dict(record)

    def set_sequence(self, chain: List[str], command: str) -> bool:
        """Make ``chain`` the work dir's current sequence (the one ``kt ensemble``, ``export``
        and ``predict`` use), unless ``kt train`` made another one current. Its figures are
        kept by the command that trained it (``results.json``, ``ablate_*.json``).

        The sequence ``kt train`` trained last stays current whatever other commands (the
        ablations) train in the same work dir; theirs becomes current only where no
        ``kt train`` sequence is.

        Args:
            chain (list[str]): The sequence's stage digests, in order.
            command (str): The command that trained it, e.g. ``'train'`` or ``'ablate'``.

        Returns:
            bool: Whether it is now the current sequence.
        """
        with self._exclusive():
            if command != 'train' and self.sequence_command == 'train':
                return False
            self.chain, self.sequence_command = list(chain), command
        return True

    def _save(self) -> None:
        """Write the manifest atomically."""
        data = dict(format=FORMAT_VERSION, stages=self.stages, chain=self.chain,
                    sequence_command=self.sequence_command)
        # What kt writes it must read back: a record its own checks refuse would make the
        # next command rebuild the manifest without it.
        text = json.dumps(data, indent=2)
        check_manifest(json.loads(text), str(self.path))
        write_atomically(self.path, text)
