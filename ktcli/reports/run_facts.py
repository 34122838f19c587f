"""What a work dir says about its run, its exports and its ablations, read as data.

Everything here reads files inside the work dir only: links are not followed, JSON is
parsed as data, export files are opened without loading their models (ONNX metadata from
the protobuf, TorchScript's ``extra/kt.json`` from its zip archive).
"""
import zipfile
from pathlib import Path
from typing import List, Optional

from .. import reading
from ..errors import UserError
from ..stages.manifest import Manifest
from ..stages.records import RESULTS_NAME
from .ablation_records import check_ablation

ABLATIONS = dict(alpha='ablate_alpha', n='ablate_n')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# Larger JSON or PNG files than this are not read.
MAX_BYTES = 16 * 2 ** 20


def read_json(path: Path) -> Optional[dict]:
    """A JSON object from a regular file (not a link), read as every file of a work dir is
    (:func:`ktcli.reading.read_json`: size and depth capped), or None."""
    try:
        data = reading.read_json(path, MAX_BYTES)
    except (OSError, UserError):
        return None
    return data if isinstance(data, dict) else None


def read_png(path: Path) -> Optional[bytes]:
    """A PNG's bytes from a regular file (not a link) that starts as a PNG does, or None."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG_SIGNATURE) else None


def run_settings(work_dir: Path, stages: list) -> dict:
    """The settings the sequence was trained with: results.json's, else stage 1's record."""
    results = read_json(Path(work_dir) / RESULTS_NAME) or {}
    if isinstance(results.get('settings'), dict):
        return results['settings']
    record = Manifest(work_dir, writable=False).stage(stages[0].digest) or {}
    return record.get('settings') if isinstance(record.get('settings'), dict) else {}


def stage_records(work_dir: Path) -> List[dict]:
    """Every stage record of the manifest (chains, Base models, students)."""
    manifest = Manifest(work_dir, writable=False)
    return [record for record in manifest.stages.values() if isinstance(record, dict)]


def backbone_name(cfg) -> str:
    """A stage's backbone as kt names it (timm's model name, or the mmpretrain type)."""
    backbone = cfg.model.backbone
    name = backbone.get('model_name') or backbone.type
    depth = backbone.get('depth')
    return f'{name}-{depth}' if depth and backbone.type in ('ResNet', 'VGG') else name


def export_metadata(path: Path) -> Optional[dict]:
    """The kt.json ``kt export`` stored in an ONNX or TorchScript file, without loading the
    model; None for a link, another file, or a file without it."""
    from ..deployment.export_metadata import METADATA_LIMIT
    from ..deployment.export_verifier import METADATA_KEY
    if path.is_symlink() or not path.is_file():
        return None
    text = None
    try:
        if path.suffix == '.onnx':
            import onnx
            model = onnx.load(str(path), load_external_data=False)
            text = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
        elif path.suffix == '.pt' and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist()
                             if n.endswith(f'/extra/{METADATA_KEY}')), None)
                if name:
                    # Read no further than the cap, whatever the entry claims to inflate to.
                    with archive.open(name) as entry:
                        text = entry.read(METADATA_LIMIT + 1)
        data = reading.parse_json(text, str(path), METADATA_LIMIT) if text else None
    except (ImportError, OSError, ValueError, KeyError, UserError, zipfile.BadZipFile):
        return None
    return data if isinstance(data, dict) else None


def exports(work_dir: Path) -> List[dict]:
    """The files under ``WORK_DIR/exports`` with their metadata's figures."""
    folder = Path(work_dir) / 'exports'
    if folder.is_symlink() or not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.iterdir()):
        metadata = export_metadata(path) if path.suffix in ('.onnx', '.pt') else None
        if metadata is None:
            continue
        check = metadata.get('accuracy_check') or {}
        records.append(dict(
            file=str(path.relative_to(work_dir)), bytes=path.stat().st_size,
            format=metadata.get('format'), dtype=metadata.get('dtype', 'fp32'),
            fusion=metadata.get('fusion'),
            stages=[stage.get('index') for stage in metadata.get('stages', [])
                    if isinstance(stage, dict)],
            kt_version=metadata.get('kt_version'), accuracy_check=check or None))
    return records


def ablations(work_dir: Path) -> dict:
    """``ablate_alpha.json`` / ``ablate_n.json`` of the work dir, with their PNG plots
    (bytes, when they are PNG files), by kind (``alpha``, ``n``).

    Raises:
        RecordError: A file that is not what ``kt ablate`` writes (see
            :func:`~ktcli.reports.ablation_records.check_ablation`).
    """
    found = {}
    for kind, stem in ABLATIONS.items():
        path = Path(work_dir) / f'{stem}.json'
        data = read_json(path)
        if data is not None:
            found[kind] = dict(data=check_ablation(kind, data, str(path)),
                               png=read_png(Path(work_dir) / f'{stem}.png'))
    return found
