"""Where this machine keeps the data a fingerprint names.

A work dir records what its stages' data is (a :class:`~ktcli.data.fingerprint.
DataFingerprint`), never where: every command that reads it takes the folder from its
``--data-root``, which must hold that data, or finds a folder that does. kt remembers, per
machine, the folders in which it has seen each dataset (``data_folders.json`` in its cache
folder, beside the image check's verdicts), and looks there and in the dataset's usual folder
(``data/<name>`` under the current directory). A folder is used only once its own fingerprint
is the recorded one.
"""
import json
from contextlib import suppress
from pathlib import Path
from typing import Dict, List, Optional

from ktbase.writing import write_atomically

from ..errors import UserError
from .fingerprint import DataFingerprint, dataset_fingerprint
from .image_verification import cache_dir
from .specs import dataset_spec

INDEX_NAME = 'data_folders.json'
# Folders remembered per fingerprint, the most recently seen first.
FOLDERS_KEPT = 8


def _index_file() -> Optional[Path]:
    folder = cache_dir()
    return None if folder is None else folder / INDEX_NAME


def _index() -> Dict[str, List[str]]:
    """Folders by fingerprint id (empty when there is no readable index)."""
    file = _index_file()
    with suppress(OSError, ValueError, AttributeError, TypeError):
        index = json.loads(file.read_text()) if file is not None else {}
        return {key: [str(folder) for folder in folders] for key, folders in index.items()
                if isinstance(folders, list)}
    return {}


def remember_folder(fingerprint: DataFingerprint, root: Path) -> None:
    """Record that ``root`` holds the data of ``fingerprint`` (a cache: failures are ignored)."""
    file = _index_file()
    if file is None:
        return
    index = _index()
    root = str(Path(root).resolve())
    folders = [root] + [folder for folder in index.get(fingerprint.id, []) if folder != root]
    index[fingerprint.id] = folders[:FOLDERS_KEPT]
    with suppress(UserError):
        write_atomically(file, json.dumps(index, indent=1, sort_keys=True))


def locate_data(recorded: DataFingerprint, given: Optional[Path] = None) -> Path:
    """The folder of this machine that holds the data ``recorded`` names.

    Args:
        recorded (DataFingerprint): What a stage was trained on.
        given (Path, optional): The command's ``--data-root``; it must hold
            that data. Defaults to None: look in the folders kt has seen it
            in, then in the dataset's usual folder.

    Returns:
        Path: The folder (resolved).

    Raises:
        UserError: ``given`` does not hold the dataset or holds other data,
            or no folder holds it; one line naming both fingerprints and the fix.
    """
    wanted = f'the data the stages were trained on ({recorded.describe()})'
    if given is not None:
        found = dataset_fingerprint(recorded.dataset, given)
        if found.id != recorded.id:
            raise UserError(f'--data-root {given} holds other data than {wanted}: '
                            f'{found.describe()}; pass --data-root with the folder that holds '
                            'it, or train on this data with `kt train`')
        remember_folder(found, given)
        return Path(given).resolve()
    default = Path(dataset_spec(recorded.dataset).default_root)
    others = []
    for folder in [Path(path) for path in _index().get(recorded.id, [])] + [default]:
        try:
            found = dataset_fingerprint(recorded.dataset, folder)
        except UserError:
            continue
        if found.id == recorded.id:
            remember_folder(found, folder)
            return folder.resolve()
        others.append(f'{folder} holds other data ({found.describe()})')
    where = '; '.join(others) or (f'it is not in {default} nor in a folder where kt has seen it '
                                  'on this machine')
    raise UserError(f'cannot find {wanted}: {where}; pass --data-root with the folder that '
                    'holds it')
