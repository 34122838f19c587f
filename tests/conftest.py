"""Shared fixtures: a tiny demo dataset and tiny configs that train in seconds."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

import pytest

from .kt_processes import SESSION_SERVERS, KtServer, forked_kt

REPO = Path(__file__).resolve().parents[1]

# The suite runs kt processes side by side (Slurm jobs beside kt commands, torchrun's two
# processes, a kt command beside a stage it started): OpenMP threads that spin while they
# wait would hold the cores the other process needs (with another process training beside
# it, a tiny training step took 130 ms spinning, 40 ms waiting passively). Every process a
# test starts inherits this.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
TINY_CONFIG = REPO / 'configs' / 'kt' / 'resnet18-tiny_kt_demo.py'


@pytest.fixture(scope='session', autouse=True)
def image_check_cache(tmp_path_factory) -> Path:
    """kt's cache of image-check verdicts and its per-user state (the Slurm jobs it
    submitted), in the session's temporary folder (inherited by every kt process a test
    starts) rather than the user's ~/.cache and ~/.local/state."""
    cache = tmp_path_factory.mktemp('kt_cache')
    os.environ['KT_CACHE_DIR'] = str(cache)
    os.environ['KT_STATE_DIR'] = str(tmp_path_factory.mktemp('kt_state'))
    return cache


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory) -> Path:
    """60 train / 40 test demo images at 40 px."""
    from ktcli.data.demo import make_demo_dataset
    root = tmp_path_factory.mktemp('data') / 'kt_demo'
    return make_demo_dataset(root, seed=0, img_size=40, train_per_class=3, test_per_class=2)


@pytest.fixture(scope='session')
def kt_server(image_check_cache) -> Iterator[KtServer]:
    """The session's kt server (tests/kt_processes.py): each command a forked process of its
    own, without importing torch, mmengine and mmpretrain again (a few seconds each). Tests
    whose point is a fresh interpreter (what kt prints or imports at start) run
    ``python -m ktcli`` instead."""
    with KtServer(timeout=1200) as server:
        SESSION_SERVERS.append(server)
        yield server
        SESSION_SERVERS.remove(server)


@pytest.fixture(scope='session')
def trained_work_dir(tmp_path_factory, demo_root, kt_server) -> Path:
    """A kt work dir with a 2-stage sequence of tiny models (read-only for tests; copy it to
    change it). What ``kt train`` printed is in ``kt_train.out`` beside it."""
    work_dir = tmp_path_factory.mktemp('trained') / 'work'
    result = forked_kt('train', '--dataset', 'demo', '--data-root', demo_root, '--backbone',
                       'resnet18_tiny', '--img-size', '32', '--epochs', '1', '--batch-size', '8',
                       '--work-dir', work_dir, '--n', '2')
    assert result.returncode == 0, result.stderr[-3000:]
    (work_dir.parent / 'kt_train.out').write_text(result.stdout)
    return work_dir


@pytest.fixture(scope='session')
def parallel_ablation(tmp_path_factory, demo_root, kt_server) -> tuple:
    """``kt ablate n --max-n 3 --parallel 2`` at the tiny settings: its work dir and its
    finished process (tests/test_ablate_command.py checks it against the serial run; the
    Slurm tests compare their jobs with it)."""
    from .test_ablate_command import kt_ablate
    work_dir = tmp_path_factory.mktemp('parallel_ablation') / 'work'
    return work_dir, kt_ablate('n', work_dir, demo_root, '--max-n', '3', '--parallel', '2')


@pytest.fixture(scope='session')
def three_members(tmp_path_factory, trained_work_dir) -> Path:
    """The export tests' 3-member work dir (see tests/test_export.py)."""
    from .test_export import three_member_work_dir
    return three_member_work_dir(tmp_path_factory.getbasetemp(), trained_work_dir)


@pytest.fixture(scope='session')
def exported(three_members) -> dict:
    """Its ensemble exported to ONNX and TorchScript (see tests/test_export.py)."""
    from .test_export import exported_files
    return exported_files(three_members)


@pytest.fixture(scope='session')
def installed_kt_bin(tmp_path_factory) -> Path:
    """The ``bin`` folder of a fresh venv with kt installed from a wheel of this tree (see
    tests/test_packaging.py)."""
    from .test_packaging import installed_kt
    return installed_kt(tmp_path_factory.mktemp('installed'))


@pytest.fixture(scope='session')
def slurm_kt(tmp_path_factory, image_check_cache) -> tuple:
    """A kt server (tests/kt_processes.py) whose commands find fake sbatch, squeue, sacct and
    scancel (tests/test_stage_scheduling.py) first on PATH, and the fakes' folder (squeue
    answers what a test writes to its squeue.txt; scancel records any call)."""
    from .test_stage_scheduling import FAKE_QUERY, FAKE_SBATCH
    bin_dir, state = tmp_path_factory.mktemp('fake_bin'), tmp_path_factory.mktemp('fake_slurm')
    scripts = dict(sbatch=FAKE_SBATCH.format(python=sys.executable),
                   **{name: FAKE_QUERY.format(python=sys.executable, name=name)
                      for name in ('squeue', 'sacct', 'scancel')})
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    saved = dict(os.environ)
    os.environ.update(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                      FAKE_SLURM_DIR=str(state))
    try:
        server = KtServer(timeout=180).__enter__()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield server, state
    server.__exit__(None, None, None)


def write_tiny_config(path: Path, data_root: Path, epochs: int = 1, extra: str = '',
                      base: Optional[Path] = None) -> Path:
    """Write a complete config: the demo config (or ``base``) plus ``extra``, at 32 px,
    batch 8, no loader workers, ``epochs`` epochs, validating and logging often."""
    from mmengine.config import Config

    from ktcli.stages.stage_config import resize_pipelines
    source = path.with_name(f'{path.stem}_source.py')
    source.write_text(f'_base_ = [{str(base or TINY_CONFIG)!r}]\n{extra}\n')
    cfg = Config.fromfile(str(source))
    resize_pipelines(cfg, 32)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.update(batch_size=8, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = str(data_root)
    cfg.train_cfg.update(max_epochs=epochs, val_interval=1)
    cfg.param_scheduler.update(T_max=epochs, end=epochs)
    cfg.default_hooks.logger.interval = 1
    cfg.dump(str(path))
    return path


def cached_outputs(path: Path) -> dict:
    """The test outputs a stage's ``test_outputs.pt`` caches (its signature not checked)."""
    import io

    import torch

    from ktcli.scoring.test_outputs import CACHE_MAGIC
    payload = Path(path).read_bytes()[len(CACHE_MAGIC) + 65:]
    return torch.load(io.BytesIO(payload), weights_only=True)


def run_tool(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python tools/<args>`` and capture its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
