"""Where kt's ``configs/`` and ``tools/`` folders are.

In the source tree (and so in an editable install) they are the top-level folders beside
the ``ktcli`` package. A wheel carries copies inside the package, as ``ktcli/configs`` and
``ktcli/tools`` (``[tool.setuptools.package-dir]`` in pyproject.toml), so an installed kt
needs no source tree. The installed copies win where both exist.
"""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The folder ktcli is imported from: the repository root, or site-packages when installed.
IMPORT_ROOT = PACKAGE_DIR.parent


def resource_dir(name: str) -> Path:
    """``ktcli/<name>`` in an installed wheel, else the source tree's top-level ``<name>``."""
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else IMPORT_ROOT / name


CONFIG_ROOT = resource_dir('configs')
TOOLS_ROOT = resource_dir('tools')
TRAIN_SCRIPT = TOOLS_ROOT / 'train.py'
