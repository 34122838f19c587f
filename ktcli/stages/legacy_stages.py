"""Work dirs written before stage digests covered the data's fingerprint, brought up to date.

An older kt gave a stage the digest of its config as composed on the training machine, with
the data folder as an absolute path (``legacy_stage_digest``), and kept that config. Every
digest changes with the fingerprint, and students name their teachers by digest
(``teachers``, ``members``, ``../<digest>/epoch_N.pth`` in their configs), so a stage of an
older work dir is moved to its new digest rather than aliased: its directory is renamed
and every reference to it rewritten, under the manifest's lock, and the work dir then has
one kind of stage. A stage is moved when the command plans it with the data folder its
record names, which exists and has just been checked and fingerprinted; kt reads no folder
because a file of the work dir names it. A rerun on an older work dir thus trains nothing,
and says once that it upgraded the records.
"""
import contextlib
import dataclasses
import io
import os
from pathlib import Path
from typing import Dict, Sequence, Set, Tuple

from mmengine.config import Config
from rich.console import Console

from ..errors import UserError
from ..reports.test_outputs import OUTPUTS_NAME, split_digest
from ..writing import write_atomically
from .manifest import STAGE_LINK, STAGES_DIR, Manifest
from .planned_stage import PlannedStage
from .portable_config import FINGERPRINT_KEY, recorded_fingerprint, runtime_config
from .stage_config import TrainSettings, legacy_stage_digest
from .stage_files import CONFIG_DATA, read_stage_config, write_stage_config, write_stage_record

# Statuses of a stage that some process may be working on: such a stage is not moved.
_BUSY = ('running', 'queued')
# mmengine's record of a work dir's newest checkpoint (an older kt left its absolute path).
LAST_CHECKPOINT = 'last_checkpoint'


class LegacyStages:
    """The planned stages that an older kt recorded under their legacy digests.

    Args:
        manifest (Manifest): The work dir's manifest (read).
        stages (Sequence[PlannedStage]): The planned stages, teachers before
            their students.
        processes (int): Data-parallel processes per stage.

    Attributes:
        done (set[str]): The new digests whose legacy stage is done: reused
            once upgraded.
        elsewhere (list[str]): The data folders other finished stages of an
            older kt name (they can be upgraded by a run on that folder).
    """

    def __init__(self, manifest: Manifest, stages: Sequence[PlannedStage], processes: int) -> None:
        self.manifest = manifest
        self._moves: Dict[str, Tuple[str, PlannedStage, Config]] = {}
        legacy: Dict[str, str] = {}
        for stage in stages:
            if stage.digest in legacy or stage.inputs.data_root is None:
                continue
            teachers = [legacy.get(t) or (manifest.stage(t) or {}).get('upgraded_from')
                        for t in stage.teachers]
            if not all(teachers):
                continue
            runtime = runtime_config(stage.cfg, stage.inputs)
            runtime.pop(FINGERPRINT_KEY, None)
            old = legacy[stage.digest] = legacy_stage_digest(runtime, teachers, processes)
            record = manifest.stage(old)
            if (record is not None and manifest.stage(stage.digest) is None
                    and record.get('status') not in _BUSY):
                self._moves[stage.digest] = (old, stage, runtime)
        self.done: Set[str] = {new for new, (old, _, _) in self._moves.items()
                               if manifest.is_done(old)}
        # Folders that other stages of an older kt were trained from (named, never read).
        here = {stage.inputs.data_root for stage in stages}
        moved = {old for old, _, _ in self._moves.values()}
        self.elsewhere = sorted({
            str(record['settings']['data_root']) for digest, record in manifest.stages.items()
            if digest not in moved and manifest.is_done(digest)
            and record.get('settings', {}).get('data_root') not in here | {None}})

    def upgrade(self, console: Console, dry_run: bool = False) -> None:
        """Move every such stage to its new digest (a dry run only says how many there are),
        and name the data folders of the older stages that do not match.

        Args:
            console (Console): Where to say it, in one line.
            dry_run (bool): Change nothing. Defaults to False.
        """
        if self.elsewhere:
            console.print(f'stages recorded by an older kt were trained from '
                          f'{", ".join(self.elsewhere)}: rerun once with that --data-root to '
                          'reuse them (kt then upgrades their records)')
        if not self._moves:
            return
        count = f'{len(self._moves)} stage{"s" if len(self._moves) > 1 else ""}'
        if dry_run:
            console.print(f'{count} recorded by an older kt (under digests of the data folder) '
                          'match this data; a run without --dry-run upgrades their records')
            return
        with self.manifest.locked():
            for new, (old, stage, runtime) in self._moves.items():
                self._move(old, new, stage, runtime)
        console.print(f'upgraded the records of {count} written by an older kt: their digests '
                      "now cover the data's fingerprint, not its folder")

    def _move(self, old: str, new: str, stage: PlannedStage, runtime: Config) -> None:
        """Rename ``stages/<old>`` to ``stages/<new>`` and rewrite every reference to it
        (the manifest's lock is held)."""
        manifest = self.manifest
        work_dir = manifest.work_dir
        old_dir = work_dir / STAGES_DIR / old
        record = manifest.stages.get(old)
        if record is None or new in manifest.stages or not old_dir.is_dir() or stage.dir.exists():
            return  # another writer got there first, or something is in the way
        write_stage_config(stage.cfg, old_dir)
        _rekey_test_outputs(old_dir, f'{old}:{split_digest(runtime)}',
                            f'{new}:{split_digest(stage.cfg)}')
        record.update(stage.placement(work_dir), digest=new, upgraded_from=old)
        if 'settings' in record:
            settings = TrainSettings.from_record(record['settings'])
            record['settings'] = dataclasses.replace(
                settings, data_fingerprint=recorded_fingerprint(stage.cfg)).to_record()
        write_stage_record(old_dir, record)
        last = old_dir / LAST_CHECKPOINT
        with contextlib.suppress(OSError):
            write_atomically(last, Path(last.read_text().strip()).name)
        os.replace(old_dir, stage.dir)
        del manifest.stages[old]
        manifest.stages[new] = record
        manifest.chain = [new if digest == old else digest for digest in manifest.chain]
        for result in manifest.results:
            if result.get('digest') == old:
                result['digest'] = new
        for other in manifest.stages.values():
            if old in other.get('teachers', []) + other.get('members', []):
                _rename_teacher(work_dir, other, old, new)
        for link in work_dir.glob(STAGE_LINK.format('*')):
            if link.is_symlink() and link.readlink().name == old:
                temporary = link.with_name(f'.{link.name}.tmp')
                temporary.unlink(missing_ok=True)
                temporary.symlink_to(os.path.relpath(stage.dir, work_dir))
                os.replace(temporary, link)


def _rename_teacher(work_dir: Path, record: dict, old: str, new: str) -> None:
    """Point a student's record and config at its teacher's new digest."""
    for key in ('teachers', 'members'):
        if key in record:
            record[key] = [new if digest == old else digest for digest in record[key]]
    stage_dir = work_dir / STAGES_DIR / record['digest']
    if not stage_dir.is_dir():
        return
    with contextlib.suppress(UserError):
        cfg = read_stage_config(stage_dir / CONFIG_DATA)
        for hook in cfg.get('custom_hooks', []):
            for teacher in hook.get('teachers', []):
                parts = Path(teacher.checkpoint).parts
                if parts[:2] == ('..', old):
                    teacher.checkpoint = str(Path('..', new, *parts[2:]))
        write_stage_config(cfg, stage_dir)
    write_stage_record(stage_dir, record)


def _rekey_test_outputs(stage_dir: Path, old_key: str, new_key: str) -> None:
    """Keep a stage's cached test outputs under its new key (same model, same test split)."""
    import torch

    path = stage_dir / OUTPUTS_NAME
    with contextlib.suppress(Exception):
        cached = torch.load(path, weights_only=True)
        if cached.get('key') == old_key:
            buffer = io.BytesIO()
            torch.save(dict(cached, key=new_key), buffer)
            write_atomically(path, buffer.getvalue())
