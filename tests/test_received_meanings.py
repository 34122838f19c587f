"""The cases of issue 26 that need fake Slurm tools on PATH (D7, D16) or are checked below the
command line (D8, D11, D12, D15, D17); the others run as commands in
tests/test_received_cases.py (tests/received_meanings.py)."""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ktbase import writing
from ktcli.reports import run_facts
from ktcli.reports.ablation_records import check_ablation
from ktcli.scoring import test_outputs
from ktcli.stages.records import RecordError

from .test_stage_scheduling import sbatch_calls, tiny

HOSTILE_NAMES = ['a\nb', '$\\frac{a}{$ x', 'tab\there', 'nul\0', '$x^2$', '\u202eevil']


def _copy_with_records(trained_work_dir: Path, work_dir: Path, **statuses) -> list:
    """A copy of the trained work dir whose stage k record takes ``statuses[f'stage{k}']``
    (fields to set); its chain."""
    shutil.copytree(trained_work_dir, work_dir, symlinks=True)
    manifest = json.loads((work_dir / 'kt_manifest.json').read_text())
    for k, digest in enumerate(manifest['chain'], start=1):
        fields = statuses.get(f'stage{k}', {})
        manifest['stages'][digest].update(fields)
        record = work_dir / 'stages' / digest / 'stage.json'
        record.write_text(json.dumps(dict(json.loads(record.read_text()), **fields)))
    (work_dir / 'kt_manifest.json').write_text(json.dumps(manifest))
    return manifest['chain']


def test_a_recorded_job_id_kt_did_not_submit_is_never_cancelled_or_adopted(
        tmp_path, trained_work_dir, demo_root, slurm_kt):
    """D7: stage 2 queued as the user's unrelated job 4242; D16: a work dir named with %x."""
    server, fake_slurm = slurm_kt
    for name in ('sbatch.jsonl', 'scancel.calls'):
        (fake_slurm / name).unlink(missing_ok=True)

    def kt(*args) -> str:
        result = server.run(*args)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr
        return ' '.join(result.stdout.split())

    (fake_slurm / 'squeue.txt').write_text('4242|RUNNING|None\n')
    foreign = dict(status='queued', job_id='4242')
    # Stage 1 to retrain: kt used to scancel 4242 (its teacher resubmitted).
    work_dir = tmp_path / 'work%x'
    chain = _copy_with_records(trained_work_dir, work_dir, stage1=dict(status='failed'),
                               stage2=foreign)
    kt('train', *tiny(demo_root, work_dir), '--n', '2', '--launcher', 'slurm')
    assert not (fake_slurm / 'scancel.calls').exists()
    calls = sbatch_calls(fake_slurm)
    assert [call['digest'] for call in calls] == chain
    assert calls[1]['dependency'] == 'afterok:1001'
    # sbatch reads %x as the job's name: the folder's % is doubled.
    assert calls[0]['output'] == str(work_dir).replace('%', '%%') + \
        f'/stages/{chain[0]}/slurm-%j.out'
    records = json.loads((work_dir / 'kt_manifest.json').read_text())['stages']
    assert [records[digest]['job_id'] for digest in chain] == ['1001', '1002']

    # The jobs kt submitted are its own: a rerun while they run keeps them.
    (fake_slurm / 'squeue.txt').write_text('1001|RUNNING|None\n1002|PENDING|Dependency\n')
    output = kt('train', *tiny(demo_root, work_dir), '--n', '2', '--launcher', 'slurm')
    assert 'submitted 0 Slurm jobs; 2 already queued or running' in output
    assert len(sbatch_calls(fake_slurm)) == 2

    # Stage 1 done: kt used to adopt 4242 as stage 2's job and never train it.
    (fake_slurm / 'squeue.txt').write_text('4242|RUNNING|None\n')
    adopted = tmp_path / 'adopted'
    _copy_with_records(trained_work_dir, adopted, stage2=foreign)
    kt('train', *tiny(demo_root, adopted), '--n', '2', '--launcher', 'slurm')
    assert [call['digest'] for call in sbatch_calls(fake_slurm)[2:]] == [chain[1]]
    assert not (fake_slurm / 'scancel.calls').exists()


def test_the_cache_key_is_private_and_a_looser_one_is_replaced(tmp_path, monkeypatch):
    """D8: 0600 in a 0700 folder; a key others could read signs nothing."""
    monkeypatch.setenv('KT_CACHE_DIR', str(tmp_path))
    test_outputs._secret.cache_clear()
    try:
        (tmp_path / test_outputs.KEY_NAME).write_bytes(b'k' * 32)  # where the key was before
        key = test_outputs._secret()
        folder = tmp_path / test_outputs.KEYS_FOLDER
        path = folder / test_outputs.KEY_NAME
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == key and len(key) == 32
        assert not (tmp_path / test_outputs.KEY_NAME).exists()
        test_outputs._secret.cache_clear()
        assert test_outputs._secret() == key  # kept while private
        path.chmod(0o644)
        folder.chmod(0o755)
        test_outputs._secret.cache_clear()
        replaced = test_outputs._secret()
        assert replaced != key and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        test_outputs._secret.cache_clear()


def test_class_names_are_drawn_as_plain_text():
    """D11: a newline (PIL's layout engine failed) and broken mathtext (matplotlib's parser
    failed) in class names draw like any other text."""
    from ktcli.reports.attention_overlay import attention_strip
    from ktcli.reports.per_class import confusion_image
    from ktcli.reports.prediction_panels import ImageView, MemberView, draw_strip
    classes = HOSTILE_NAMES
    png = confusion_image(np.eye(len(classes), dtype=int).tolist(), classes)
    assert png.startswith(b'\x89PNG')
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    member = MemberView('stage 1', 1, 0.5, dict(attention=np.ones((4, 4), dtype=np.float32)))
    strip = draw_strip(ImageView('x.jpg', image, 0, [member], (1, 0.5), 'kind'), classes,
                       ['attention'])
    assert strip.width == 2 * 192
    panels = attention_strip(image, [np.ones((4, 4), dtype=np.float32)], classes[:1],
                             caption=classes[1])
    assert panels.shape[2] == 3


@pytest.mark.parametrize('kind, data, field', [
    ('alpha', dict(alphas=['x']), 'alphas'),
    ('n', dict(rows=[1]), 'rows'),
    ('n', dict(rows={'Ours': [dict(top1=1.0)]}), "rows.'Ours'"),  # a partial cell
    ('n', dict(differences={'d': [dict(difference=1.0, ci_low=0, ci_high=2)]}),
     "differences.'d'"),
    ('n', dict(figure=dict(x=[1], xlabel='N', title='t', panels=[dict(ylabel='y', curves=[])])),
     'figure'),
    ('n', dict(figure=dict(x=[1], xlabel='N', title='t', panels=[
        dict(ylabel='y', curves={})] * 3000)), 'figure'),
])
def test_a_crafted_ablation_is_refused_in_one_line(kind, data, field):
    """D12: what kt report reads of ablate_alpha.json / ablate_n.json, field by field."""
    with pytest.raises(RecordError, match=re.escape(f'ablate.json: {field} must be')):
        check_ablation(kind, data, 'ablate.json')


def test_export_metadata_is_read_no_further_than_its_cap(tmp_path):
    """D15: an extra/kt.json of 64 MiB (64 KiB in the archive) is not inflated."""
    import tracemalloc
    path = tmp_path / 'exports' / 'bomb.pt'
    path.parent.mkdir()
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        archive.writestr('bomb/extra/kt.json', b'{"a": "' + b' ' * 2 ** 26 + b'"}')
    assert path.stat().st_size < 2 ** 20
    tracemalloc.start()
    try:
        assert run_facts.export_metadata(path) is None
        assert tracemalloc.get_traced_memory()[1] < 8 * 2 ** 20
    finally:
        tracemalloc.stop()


def test_a_killed_kt_leaves_no_temporary_folder_for_long():
    """D17: the folder of a process killed with -9 is removed by the next one."""
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = Path(tempfile.mkdtemp(prefix=f'kt_write_{dead}_'))
    (stale / 'ensemble.onnx').symlink_to('/proc/1/fd/0')
    mine = Path(tempfile.mkdtemp(prefix=f'kt_write_{os.getpid()}_'))
    try:
        with writing.private_temporary_folder('kt_write_') as folder:
            assert Path(folder).name.startswith(f'kt_write_{os.getpid()}_')
        assert not stale.exists() and mine.exists()
    finally:
        shutil.rmtree(mine)
