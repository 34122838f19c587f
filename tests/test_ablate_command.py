"""kt ablate n and kt ablate alpha on tiny demo data: stage counts and shared stages."""
import json
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def kt_ablate(kind: str, work_dir: Path, data_root: Path, *options: str):
    command = [sys.executable, '-m', 'ktcli', 'ablate', kind, '--dataset', 'demo',
               '--data-root', str(data_root), '--backbone', 'resnet18_tiny', '--img-size', '32',
               '--epochs', '1', '--batch-size', '8', '--work-dir', str(work_dir), *options]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def finished_stages(work_dir: Path) -> list:
    stages = json.loads((work_dir / 'kt_manifest.json').read_text())['stages']
    return [digest for digest, record in stages.items() if record['status'] == 'done']


def test_ablate_n_trains_2n_minus_1_stages_and_shares_model_one(tmp_path, demo_root):
    result = kt_ablate('n', tmp_path / 'work', demo_root, '--max-n', '3')
    assert '5 distinct stages' in result.stdout and '5 stage trainings to run' in result.stdout
    assert len(finished_stages(tmp_path / 'work')) == 5
    rows = json.loads((tmp_path / 'work' / 'ablate_n.json').read_text())['rows']
    assert rows['Single (Ours)'][0] == rows['Single (Base)'][0]
    assert rows['Ensemble (Ours)'][0] == rows['Ensemble (Base)'][0]
    assert all(len(per_n) == 3 for per_n in rows.values())
    assert 'Ensemble (Ours)' in result.stdout
    assert (tmp_path / 'work' / 'ablate_n.png').read_bytes()[:4] == b'\x89PNG'


def test_ablate_alpha_shares_stage_one_across_values(tmp_path, demo_root):
    result = kt_ablate('alpha', tmp_path / 'work', demo_root, '--values', '0.1,1', '--n', '2')
    assert '3 distinct stages' in result.stdout
    assert len(finished_stages(tmp_path / 'work')) == 3
    figures = json.loads((tmp_path / 'work' / 'ablate_alpha.json').read_text())['figures']
    assert set(figures) == {'0.1', '1.0'}
    assert (tmp_path / 'work' / 'ablate_alpha.png').read_bytes()[:4] == b'\x89PNG'


def test_seed_replicates_share_no_stage(tmp_path, demo_root):
    result = kt_ablate('n', tmp_path / 'work', demo_root, '--max-n', '3', '--seeds', '0,1',
                       '--dry-run')
    assert '10 distinct stages: 0 reused, 10 stage trainings to run' in result.stdout
    assert not (tmp_path / 'work' / 'stages').exists()
