"""Shared fixtures: a tiny demo dataset and tiny configs that train in seconds."""
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / 'configs' / 'kt' / 'resnet18-tiny_kt_demo.py'

TINY_CONFIG_TEMPLATE = """\
_base_ = [{base!r}]
max_epochs = {epochs}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(36, 36)),
    dict(type='RandomCrop', crop_size=32, padding=2),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(36, 36)),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
loader = dict(batch_size=8, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader, dataset=dict(data_root={data_root!r}, pipeline=train_pipeline))
val_dataloader = dict(
    **loader, dataset=dict(data_root={data_root!r}, pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = dict(T_max=max_epochs, end=max_epochs)
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
{extra}
"""


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory) -> Path:
    """60 train / 40 test demo images at 40 px."""
    from ktcli.demo_data import make_demo_dataset
    root = tmp_path_factory.mktemp('data') / 'kt_demo'
    return make_demo_dataset(root, seed=0, img_size=40, train_per_class=3, test_per_class=2)


@pytest.fixture(scope='session')
def trained_work_dir(tmp_path_factory, demo_root) -> Path:
    """A kt work dir with a 2-stage sequence of tiny models (read-only for tests)."""
    work_dir = tmp_path_factory.mktemp('trained') / 'work'
    result = subprocess.run(
        [sys.executable, '-m', 'ktcli', 'train', '--dataset', 'demo', '--data-root',
         str(demo_root), '--backbone', 'resnet18_tiny', '--img-size', '32', '--epochs', '1',
         '--batch-size', '8', '--work-dir', str(work_dir), '--n', '2'],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


def write_tiny_config(path: Path, data_root: Path, epochs: int = 1, extra: str = '',
                      base: Optional[Path] = None) -> Path:
    """Write a config inheriting the demo config at 32 px, batch 8, no workers."""
    path.write_text(TINY_CONFIG_TEMPLATE.format(
        base=str(base or TINY_CONFIG), epochs=epochs, data_root=str(data_root), extra=extra))
    return path


def run_tool(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python tools/<args>`` and capture its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
