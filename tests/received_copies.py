"""A received work dir or export to tamper with: a fresh copy, its sentinel and editors.

:func:`received` copies a trained work dir (and, on first use, exported models) beside a
sentinel folder outside it (a victim file, a Python file that would leave a marker if it
ever ran, another work dir's stage) whose every entry, content and time :func:`snapshot`
records, so that a test can prove nothing outside the work dir was read, written or run.
"""
import json
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

PAYLOAD_MARKER = 'KT_PAYLOAD_RAN'
ZEN = 'Beautiful is better than ugly'


@dataclass
class Received:
    """A tampered copy's surroundings: the copy, the data, the exports and the sentinel.

    Attributes:
        work (Path): A copy of the trained work dir (its cached test outputs, valid
            on this machine, included).
        demo_root (Path): The demo dataset it was trained on.
        image (Path): One demo image.
        exports (dict): The exported ONNX and TorchScript ensembles; ``onnx``
            and ``torchscript`` are copies of them.
        outside (Path): The sentinel folder (never to be touched).
        scratch (Path): A folder for files the case writes (outputs).
    """

    work: Path
    demo_root: Path
    image: Path
    exports: Dict[str, Path]
    outside: Path
    scratch: Path

    @property
    def onnx(self) -> Path:
        return self._export('onnx')

    @property
    def torchscript(self) -> Path:
        return self._export('torchscript')

    def _export(self, name: str) -> Path:
        """A copy of the exported file (made on first use)."""
        copy = self.scratch.parent / self.exports[name].name
        if not copy.exists():
            shutil.copy(self.exports[name], copy)
        return copy

    @property
    def marker(self) -> Path:
        return self.outside / PAYLOAD_MARKER

    @property
    def chain(self) -> List[str]:
        return json.loads((self.work / 'kt_manifest.json').read_text())['chain']

    def stage(self, k: int) -> Path:
        """Stage k's directory (1-based)."""
        return self.work / 'stages' / self.chain[k - 1]

    def planned_digest(self, n: int) -> str:
        """The digest stage ``n`` of the sequence will have (planned from the settings the
        records keep, as ``kt train`` with :meth:`train_args` plans it)."""
        from ktcli.sequencing.sequence import WorkDirSequences
        from ktcli.stages.manifest import Manifest
        from ktcli.stages.settings import TrainSettings
        manifest = Manifest(self.work, writable=False)
        settings = TrainSettings.from_record(manifest.stage(manifest.chain[0])['settings'])
        return WorkDirSequences(self.work, scheduler=None).sequence(settings).plan(n)[-1].digest

    def train_args(self, n: int, *extra: str) -> list:
        """``kt train`` with the settings the work dir was trained with."""
        return ['train', '--dataset', 'demo', '--data-root', self.demo_root, '--backbone',
                'resnet18_tiny', '--img-size', '32', '--epochs', '1', '--batch-size', '8',
                '--work-dir', self.work, '--n', str(n), *extra]

    def on_tampered_data(self, data: Path, command: str) -> list:
        """``kt data check`` (command ``'check'``) or a one-stage ``kt train`` of a new work
        dir on the tampered copy ``data`` of the demo data."""
        self.demo_root = data
        if command == 'check':
            return ['data', 'check', 'demo', '--data-root', data]
        self.work = self.scratch / 'work'
        return self.train_args(1)


def received(base: Path, work_dir: Path, demo_root: Path, exports: Dict[str, Path]) -> Received:
    """A fresh copy of ``work_dir`` and of the exports under ``base``, and a sentinel."""
    base.mkdir(parents=True, exist_ok=True)
    work = base / 'work'
    subprocess.run(['cp', '-r', str(work_dir), str(work)], check=True)
    outside = base / 'outside'
    outside.mkdir()
    (outside / 'victim.txt').write_text('the victim file\n')
    (outside / 'evil.py').write_text(f'import pathlib\npathlib.Path({str(outside)!r}, '
                                     f'{PAYLOAD_MARKER!r}).touch()\nx = 1\n')
    (outside / 'other_work' / 'stages' / '0123456789abcdef').mkdir(parents=True)
    (outside / 'other_work' / 'stages' / '0123456789abcdef' / 'config.json').write_text('{}')
    for path in outside.rglob('*'):
        # An access time before the modification time: any read moves it (relatime).
        stat = path.stat()
        os.utime(path, ns=(stat.st_mtime_ns - 10 ** 12, stat.st_mtime_ns))
    scratch = base / 'scratch'
    scratch.mkdir()
    image = next((demo_root / 'images').rglob('*.jpg'))
    return Received(work, demo_root, image, dict(exports), outside, scratch)


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder``: its kind, content (or link target) and times."""
    entries = {}
    for path in sorted(folder.rglob('*')):
        stat = path.lstat()
        if path.is_symlink():
            content = os.readlink(path)
        elif path.is_file():
            content = path.read_bytes()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # reading it moved atime
        else:
            content = None
        entries[str(path.relative_to(folder))] = (stat.st_mode, content, stat.st_atime_ns,
                                                  stat.st_mtime_ns)
    return entries


def edit_json(path: Path, change: Callable[[dict], Optional[object]]) -> None:
    """Rewrite a JSON file: ``change`` edits the data in place, or returns new data."""
    data = json.loads(path.read_text())
    new = change(data)
    path.write_text(json.dumps(data if new is None else new))


def edit_records(ctx: Received, k: int, change: Callable[[dict], None]) -> None:
    """Change stage k's record in the manifest and in its ``stage.json`` alike."""
    digest = ctx.chain[k - 1]
    edit_json(ctx.work / 'kt_manifest.json', lambda data: change(data['stages'][digest]))
    edit_json(ctx.stage(k) / 'stage.json', change)


def edit_onnx_metadata(path: Path, change: Callable[[dict], Optional[object]]) -> None:
    """Rewrite the kt.json of an ONNX file."""
    import onnx
    model = onnx.load(str(path))
    prop = next(prop for prop in model.metadata_props if prop.key == 'kt.json')
    data = json.loads(prop.value)
    new = change(data)
    prop.value = json.dumps(data if new is None else new)
    onnx.save(model, str(path))


def edit_torchscript_metadata(path: Path, change: Callable[[dict], Optional[object]]) -> None:
    """Rewrite the kt.json extra file of a TorchScript archive."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, 'w') as archive:
        for info, content in entries:
            if info.filename.endswith('/extra/kt.json'):
                data = json.loads(content)
                new = change(data)
                content = json.dumps(data if new is None else new).encode()
            archive.writestr(info, content)


def decompression_bomb(path: Path, side: int = 20000) -> Path:
    """A PNG whose header says ``side`` x ``side`` pixels (a few hundred bytes on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    header = struct.pack('>IIBBBBB', side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
                     + chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))
    return path
