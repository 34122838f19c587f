"""Where the data of a work dir's stages is on this machine, for the commands that read it.

A stage config records what its data is (``data_fingerprint``), not where it is: scoring,
``kt visualize``, ``kt distill`` and the export's checks take the folder from their
``--data-root``, which must hold that data, or find one that does
(:func:`~ktcli.data.data_folders.locate_data`). A config written by an older kt names its
data folder and has no fingerprint: it is read from there, or from ``--data-root``.
"""
from pathlib import Path
from typing import Dict, Optional

from mmengine.config import Config

from ..data.data_folders import locate_data
from ..data.fingerprint import DataFingerprint
from ..errors import UserError
from .portable_config import recorded_fingerprint, with_data_root


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
