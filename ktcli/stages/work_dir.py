"""What the later commands read from a work dir: its trained stages, its distilled students,
the settings they were trained with, and where their data is on this machine.

Everything here reads; nothing writes (the manifest is opened read-only). A stage config
records what its data is (``data_fingerprint``), not where it is: scoring, ``kt visualize``,
``kt distill`` and the export's checks take the folder from their ``--data-root``, which
must hold that data, or find one that does (:func:`~ktcli.data.data_folders.locate_data`).
A config written by an older kt names its data folder and has no fingerprint: it is read
from there, or from ``--data-root``.

A distilled student is one more stage of the work dir (``stages/<digest>/``, same manifest,
reuse and resume), trained by :class:`registry_plugins.KTDistiller` against the chosen
finished stages as frozen teachers; its record carries ``kind='distilled'`` and the digests
of its members.
"""
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.config import Config

from ..data.data_folders import locate_data
from ..data.fingerprint import DataFingerprint
from ..errors import UserError
from .manifest import Manifest
from .portable_config import recorded_fingerprint, with_data_root
from .records import DISTILLED, STUDENT_INDEX, check_work_dir, located, record_paths
from .settings import TrainSettings


@dataclass(frozen=True)
class TrainedStage:
    """A finished stage of the sequence last trained in a work directory."""

    index: int
    digest: str
    dir: Path
    config: Path
    checkpoint: Path


def trained_stages(work_dir: Path,
                   models: Union[Sequence[int], str, None] = None) -> List[TrainedStage]:
    """The finished stages of ``work_dir``'s sequence, optionally a subset.

    Args:
        work_dir (Path): A work directory written by ``kt train``.
        models (Sequence[int] | str, optional): 1-based stage indices to
            keep, in the given order, or ``'distilled'`` for the newest
            distilled student alone. Defaults to None (every finished stage).

    Returns:
        list[TrainedStage]: The stages.

    Raises:
        UserError: No kt work dir there, or a requested stage is missing or
            unfinished.
    """
    work_dir = Path(work_dir)
    check_work_dir(work_dir)
    if models == DISTILLED:
        students = distilled_students(work_dir)
        if not students:
            raise UserError(f'{work_dir} has no distilled student; train one with `kt distill`')
        return students[-1:]
    manifest = Manifest(work_dir, writable=False)
    stages = [TrainedStage(index, digest,
                           *located(work_dir, record_paths(digest, manifest.stage(digest))))
              for index, digest in enumerate(manifest.chain, start=1)]
    finished = [stage.index for stage in stages if manifest.is_done(stage.digest)]
    if not models and not finished:
        raise UserError(f'{work_dir} has no finished stage yet; run `kt train` to train one')
    wanted = list(models) if models else finished
    for index in wanted:
        if not 1 <= index <= len(stages):
            raise UserError(f'{work_dir} has stages 1..{len(stages)}; there is no stage {index}')
        if not manifest.is_done(stages[index - 1].digest):
            raise UserError(f'stage {index} of {work_dir} has not finished training; '
                            'rerun `kt train` to complete it')
    return [stages[index - 1] for index in wanted]


def parse_models(text: Optional[str]) -> Union[List[int], str, None]:
    """Parse ``--models 1,3,5`` into ``[1, 3, 5]`` (None stays None, ``distilled`` too)."""
    if not text or text == DISTILLED:
        return text or None
    try:
        return [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise UserError(f'--models takes stage numbers like 1,3,5 or distilled, got {text!r}'
                        ) from None


@dataclass(frozen=True)
class DistilledStudent(TrainedStage):
    """A finished student, with the digests of the stages it was distilled from and the
    name of its backbone (``--backbone``, e.g. ``resnet18_tiny``)."""

    members: Tuple[str, ...] = ()
    backbone: str = ''


def members_settings(work_dir: Path, members: Sequence[TrainedStage],
                     data_root: Optional[Path] = None) -> TrainSettings:
    """The training settings the members were trained with (from their records), with the
    folder of this machine that holds their data.

    Args:
        work_dir (Path): The members' work dir.
        members (Sequence[TrainedStage]): The stages to distil.
        data_root (Path, optional): ``--data-root``; it must hold their data.
            Defaults to None (find a folder that does).

    Raises:
        UserError: The members were recorded by an older kt, or their data
            is not at hand.
    """
    record = Manifest(work_dir, writable=False).stage(members[0].digest) or {}
    settings = record.get('settings', {})
    if not settings.get('data_fingerprint'):
        raise UserError(f'stage {members[0].index} of {work_dir} was recorded by an '
                        'older kt; train again in a new work dir')
    settings = TrainSettings.from_record(settings)
    root = locate_data(settings.data_fingerprint, data_root)
    return dataclasses.replace(settings, data_root=str(root))


def distilled_students(work_dir: Path) -> List[DistilledStudent]:
    """The finished students of ``work_dir``, the newest last.

    Args:
        work_dir (Path): A work dir.

    Returns:
        list[DistilledStudent]: The students (stage index ``STUDENT_INDEX``).
    """
    manifest = Manifest(work_dir, writable=False)
    records = sorted((r for r in manifest.stages.values()
                      if r.get('kind') == DISTILLED and manifest.is_done(r['digest'])),
                     key=lambda record: record.get('updated', ''))
    return [DistilledStudent(STUDENT_INDEX, record['digest'],
                             *located(work_dir, record_paths(record['digest'], record)),
                             tuple(record.get('members', ())),
                             record.get('settings', {}).get('backbone', ''))
            for record in records]


class StageData:
    """The data folders of stage configs, found once per fingerprint.

    Args:
        given (Path, optional): The command's ``--data-root``. Defaults to
            None (find the folder).
    """

    def __init__(self, given: Optional[Path] = None) -> None:
        self.given = given
        self._roots: Dict[str, Path] = {}

    @classmethod
    def at(cls, root: Optional[Path], fingerprint: Optional[DataFingerprint]) -> 'StageData':
        """The data of a command that has just checked ``root`` and fingerprinted it."""
        data = cls(Path(root) if root else None)
        if root and fingerprint is not None:
            data._roots[fingerprint.id] = Path(root)
        return data

    def root(self, cfg: Config, required: bool = True) -> Optional[Path]:
        """The folder holding the data ``cfg`` was composed for.

        Args:
            cfg (Config): A stage config.
            required (bool): Raise when no folder holds it; else None.
                ``--data-root`` with other data is an error either way.

        Raises:
            UserError: One line naming the data wanted, what was found and
                the fix.
        """
        fingerprint = recorded_fingerprint(cfg)
        if fingerprint is None:
            return Path(self.given or cfg.test_dataloader.dataset.data_root)
        if fingerprint.id not in self._roots:
            try:
                self._roots[fingerprint.id] = locate_data(fingerprint, self.given)
            except UserError:
                if required or self.given is not None:
                    raise
                return None
        return self._roots[fingerprint.id]

    def config(self, cfg: Config, required: bool = True) -> Config:
        """``cfg`` reading its data from this machine's folder (see :meth:`root`); when it
        is not ``required`` and not found, every ``data_root`` is None."""
        root = self.root(cfg, required)
        return with_data_root(cfg, None if root is None else str(root))
