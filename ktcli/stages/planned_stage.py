"""A stage as a sequence plans it: its config, identity, teachers and place in the work dir."""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

from .portable_config import RunInputs


@dataclass
class PlannedStage:
    """One stage to train or reuse.

    Args:
        index (int): Its 1-based position in its sequence (0: a distilled
            student).
        digest (str): Its identity (config and teachers).
        cfg (Config): Its complete config, in the portable form the work dir
            keeps (see :mod:`~ktcli.stages.portable_config`).
        dir (Path): Its directory, ``WORK_DIR/stages/<digest>``.
        config_path (Path): Its ``config.json``.
        checkpoint (Path): The checkpoint it ends with.
        teachers (list[str]): The digests of the stages it learns from; it
            can start once they are done.
        label (str): How progress lines and ``kt status`` name it, e.g.
            ``'seed 1 Base 2/3'``.
        inputs (RunInputs): The folders of this machine its training reads
            (data, pretrained file).
    """

    index: int
    digest: str
    cfg: object
    dir: Path
    config_path: Path
    checkpoint: Path
    teachers: List[str] = field(default_factory=list)
    label: str = ''
    inputs: RunInputs = field(default_factory=RunInputs)

    @property
    def epochs(self) -> int:
        """The epochs it trains for."""
        return self.cfg.train_cfg.max_epochs

    def placement(self, work_dir: Path) -> dict:
        """The manifest fields that say what it is and where its files are (relative to
        ``work_dir``)."""
        return dict(index=self.index, label=self.label, teachers=list(self.teachers),
                    epochs=self.epochs, dir=os.path.relpath(self.dir, work_dir),
                    config=os.path.relpath(self.config_path, work_dir),
                    checkpoint=os.path.relpath(self.checkpoint, work_dir))


def unique_stages(stages: Sequence[PlannedStage]) -> List[PlannedStage]:
    """The stages with each digest once (sequences share stages), in order."""
    seen: Dict[str, PlannedStage] = {}
    for stage in stages:
        seen.setdefault(stage.digest, stage)
    return list(seen.values())
