"""The work directory's record of its stages, safe against a kill at any moment."""
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

MANIFEST_NAME = 'kt_manifest.json'
FORMAT_VERSION = 1


class Manifest:
    """Stages by digest (status, paths, metrics) plus the sequence last trained.

    Every :meth:`save` writes a temporary file, syncs it and renames it over
    the manifest, so a reader always finds either the old or the new
    complete file.

    Args:
        work_dir (Path): The sequence's work directory.
    """

    def __init__(self, work_dir: Path) -> None:
        self.path = Path(work_dir) / MANIFEST_NAME
        self.stages: Dict[str, dict] = {}
        self.chain: List[str] = []
        self.results: List[dict] = []
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            self.stages = data.get('stages', {})
            self.chain = data.get('chain', [])
            self.results = data.get('results', [])

    def stage(self, digest: str) -> Optional[dict]:
        """The record of stage ``digest``, if any."""
        return self.stages.get(digest)

    def is_done(self, digest: str) -> bool:
        """Whether stage ``digest`` finished and its checkpoint is still there."""
        record = self.stages.get(digest)
        return bool(record and record.get('status') == 'done'
                    and (self.path.parent / record['checkpoint']).is_file())

    def update(self, digest: str, **fields) -> dict:
        """Set fields of a stage's record and save."""
        record = self.stages.setdefault(digest, dict(digest=digest))
        record.update(fields, updated=time.strftime('%Y-%m-%dT%H:%M:%S'))
        self.save()
        return record

    def save(self) -> None:
        """Write the manifest atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = dict(format=FORMAT_VERSION, stages=self.stages, chain=self.chain,
                    results=self.results)
        temporary = self.path.with_name(f'.{self.path.name}.{os.getpid()}.tmp')
        with open(temporary, 'w') as file:
            json.dump(data, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
