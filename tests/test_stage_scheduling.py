"""Stages as Slurm jobs (against fake sbatch/squeue/sacct), kt status, the stage graph and
the manifest with several writers."""
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ktcli.sequencing.scheduler import chain_lengths, machine_slots
from ktcli.stages.manifest import Manifest
from ktcli.stages.planned_stage import PlannedStage

from .kt_processes import forked_kt

FAKE_SBATCH = '''#!{python}
"""Records its arguments, answers job ids from 1001; with FAKE_SLURM_RUN runs the job now."""
import json, os, pathlib, subprocess, sys
state = pathlib.Path(os.environ['FAKE_SLURM_DIR'])
calls = state / 'sbatch.jsonl'
job = str(1001 + (len(calls.read_text().splitlines()) if calls.exists() else 0))
with open(calls, 'a') as file:
    file.write(json.dumps(sys.argv[1:]) + '\\n')
if os.environ.get('FAKE_SLURM_RUN'):
    options = dict(arg[2:].split('=', 1) for arg in sys.argv[1:] if '=' in arg)
    with open(options['output'].replace('%j', job), 'w') as log:
        subprocess.run(options['wrap'], shell=True, stdout=log, stderr=subprocess.STDOUT,
                       env=dict(os.environ, SLURM_JOB_ID=job))
print(job)
'''
# squeue and sacct print what the test wrote for them.
FAKE_QUERY = '''#!{python}
import os, pathlib, sys
answer = pathlib.Path(os.environ['FAKE_SLURM_DIR']) / '{name}.txt'
with open(pathlib.Path(os.environ['FAKE_SLURM_DIR']) / '{name}.calls', 'a') as calls:
    calls.write(' '.join(sys.argv[1:]) + '\\n')
print(answer.read_text() if answer.exists() else '', end='')
'''


@pytest.fixture()
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sbatch, squeue, sacct and scancel on PATH that record their calls in the returned
    folder."""
    bin_dir, state = tmp_path / 'bin', tmp_path / 'slurm'
    bin_dir.mkdir()
    state.mkdir()
    scripts = dict(sbatch=FAKE_SBATCH.format(python=sys.executable),
                   **{name: FAKE_QUERY.format(python=sys.executable, name=name)
                      for name in ('squeue', 'sacct', 'scancel')})
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    monkeypatch.setenv('FAKE_SLURM_DIR', str(state))
    return state


def kt(*args) -> subprocess.CompletedProcess:
    """``kt ARGS`` forked from the session's server, with the fake Slurm of the test's
    environment on PATH."""
    result = forked_kt(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def tiny(demo_root: Path, work_dir: Path) -> list:
    """The settings of the session's trained work dir (conftest.trained_work_dir)."""
    return ['--dataset', 'demo', '--data-root', demo_root, '--backbone', 'resnet18_tiny',
            '--img-size', '32', '--epochs', '1', '--batch-size', '8', '--work-dir', work_dir]


def sbatch_calls(state: Path) -> list:
    """Each sbatch call as a dict: its options (name=value) and the digest of its stage."""
    calls = []
    for line in (state / 'sbatch.jsonl').read_text().splitlines():
        args = json.loads(line)
        options = dict(arg[2:].split('=', 1) for arg in args if arg.startswith('--') and '=' in arg)
        calls.append(dict(options, digest=options['wrap'].split()[-3], args=args))
    return calls


@pytest.mark.usefixtures('kt_server')
def test_table_3_graph_as_slurm_jobs(tmp_path, demo_root, fake_slurm):
    work_dir = tmp_path / 'work'
    result = kt('ablate', 'n', *tiny(demo_root, work_dir), '--max-n', '3', '--seeds', '0,1',
                '--launcher', 'slurm', '--slurm-args', '-p gpu --time=1:00:00')
    assert 'submitted 10 Slurm jobs (1001, ' in result.stdout
    assert 'Single (Base)' not in result.stdout
    calls = sbatch_calls(fake_slurm)
    records = json.loads((work_dir / 'kt_manifest.json').read_text())['stages']
    job_of = {call['digest']: str(1001 + position) for position, call in enumerate(calls)}
    label_of = {digest: record['label'] for digest, record in records.items()}
    graph = {label_of[call['digest']]: sorted(label_of[digest] for digest, job in job_of.items()
                                              if job in call.get('dependency', '').split(':'))
             for call in calls}
    for seed in (0, 1):
        stage = f'seed {seed} ' + '{}'
        assert graph[stage.format('1/3')] == []
        assert graph[stage.format('2/3')] == [stage.format('1/3')]
        assert graph[stage.format('3/3')] == [stage.format('1/3'), stage.format('2/3')]
        assert graph[stage.format('Base 2/3')] == graph[stage.format('Base 3/3')] == []
    for call in calls:
        assert call['args'][call['args'].index('-p') + 1] == 'gpu'
        assert call['time'] == '1:00:00' and call['ntasks'] == '1'
        assert call['output'] == str(work_dir / 'stages' / call['digest'] / 'slurm-%j.out')
        if 'dependency' in call:
            assert call['dependency'].startswith('afterok:')
            assert call['kill-on-invalid-dep'] == 'yes'
        assert records[call['digest']]['status'] == 'queued'
        assert records[call['digest']]['job_id'] == job_of[call['digest']]

    # Slurm says: 1001 runs, seed 1's stage 1 failed, its students wait for nothing (as
    # without --kill-on-invalid-dep), the rest wait.
    job_by_label = {label_of[digest]: job for digest, job in job_of.items()}
    failed, orphans = job_by_label['seed 1 1/3'], [job_by_label[f'seed 1 {k}/3'] for k in (2, 3)]
    (fake_slurm / 'squeue.txt').write_text(''.join(
        f'{job}|RUNNING|None\n' if job == '1001' else
        f'{job}|PENDING|{"DependencyNeverSatisfied" if job in orphans else "Dependency"}\n'
        for job in job_of.values() if job != failed))
    (fake_slurm / 'sacct.txt').write_text(f'{failed}|FAILED|None\n{failed}.batch|FAILED|\n')
    kt('status', work_dir, '--json', tmp_path / 'status.json')
    statuses = {s['label']: s for s in json.loads((tmp_path / 'status.json').read_text())}
    assert statuses['seed 0 1/3']['status'] == 'running'
    assert statuses['seed 1 1/3']['status'] == 'failed'
    # It never wrote a log, so Slurm's word is all there is.
    assert statuses['seed 1 1/3']['reason'] == 'no output (Slurm: FAILED)'
    assert statuses['seed 0 Base 3/3']['status'] == 'queued'
    assert [(statuses[f'seed 1 {k}/3']['status'], statuses[f'seed 1 {k}/3']['reason'])
            for k in (2, 3)] == [('cancelled', 'teacher seed 1 1/3 failed')] * 2
    assert all(statuses[label_of[d]]['job_id'] == job for d, job in job_of.items())
    assert f'--jobs={failed}' in (fake_slurm / 'sacct.calls').read_text()

    # A rerun resubmits the failed stage and, after their new teacher, its students (their
    # stale jobs cancelled); the other queued and running jobs are kept.
    result = kt('ablate', 'n', *tiny(demo_root, work_dir), '--max-n', '3', '--seeds', '0,1',
                '--launcher', 'slurm')
    assert 'submitted 3 Slurm jobs (1011, 1012, 1013); 7 already queued or running' in \
        result.stdout
    resubmitted = sbatch_calls(fake_slurm)[-3:]
    assert [label_of[call['digest']] for call in resubmitted] == [
        'seed 1 1/3', 'seed 1 2/3', 'seed 1 3/3']
    assert [call.get('dependency') for call in resubmitted] == [
        None, 'afterok:1011', 'afterok:1011:1012']
    assert (fake_slurm / 'scancel.calls').read_text().split() == orphans


@pytest.mark.usefixtures('kt_server')
def test_status_calls_a_vanished_local_run_interrupted(tmp_path, trained_work_dir):
    work_dir = tmp_path / 'work'
    shutil.copytree(trained_work_dir, work_dir, symlinks=True)
    digest = (work_dir / 'stage_2').resolve().name
    (work_dir / 'stage_2').resolve().joinpath('epoch_1.pth').unlink()
    import socket
    Manifest(work_dir).update(digest, status='running', host=socket.gethostname(),
                              pid=2 ** 22 + 1)
    result = kt('status', work_dir)
    assert 'interrupted' in result.stdout and '1 done, 1 interrupted' in result.stdout


def planned(digest: str, teachers: list) -> PlannedStage:
    return PlannedStage(1, digest, None, Path(digest), Path(digest), Path(digest), teachers)


def test_chain_lengths_put_the_longest_chain_first():
    # Table 3 with N = 3: stage 1 -> Ours 2 -> Ours 3; Base 2 and 3 alone.
    stages = [planned('s1', []), planned('o2', ['s1']), planned('o3', ['s1', 'o2']),
              planned('b2', []), planned('b3', [])]
    assert chain_lengths(stages) == dict(s1=2, o2=1, o3=0, b2=0, b3=0)


def test_cpu_slots_share_the_threads_of_the_running_stages(monkeypatch):
    monkeypatch.setattr('ktcli.sequencing.scheduler.available_cpus', lambda: 8)
    monkeypatch.setattr('torch.cuda.device_count', lambda: 0)
    slots = machine_slots(4, 1)
    assert len(slots) == 4
    assert slots[0].env(sharing=4, processes=1) == dict(OMP_NUM_THREADS='2', MKL_NUM_THREADS='2')
    assert slots[0].env(sharing=2, processes=2) == dict(OMP_NUM_THREADS='2', MKL_NUM_THREADS='2')
    # A stage that starts alone (the end of a chain) keeps every core.
    assert slots[0].env(sharing=1, processes=1) == {}


def test_gpu_slots_pin_each_stage_to_its_gpus(monkeypatch):
    monkeypatch.setattr('torch.cuda.device_count', lambda: 8)
    slots = machine_slots(4, 2)
    assert [slot.env(sharing=4, processes=2) for slot in slots] == [
        dict(CUDA_VISIBLE_DEVICES=gpus) for gpus in ('0,1', '2,3', '4,5', '6,7')]
    assert len(machine_slots(8, 4)) == 2


def _record_many(work_dir: str, writer: int) -> None:
    manifest = Manifest(Path(work_dir))
    for step in range(15):
        manifest.update(f'{writer:016x}', status='running', step=step)


def test_concurrent_writers_lose_no_update(tmp_path):
    context = multiprocessing.get_context('spawn')
    writers = [context.Process(target=_record_many, args=(str(tmp_path), w)) for w in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    stages = Manifest(tmp_path).stages
    assert {digest: record['step'] for digest, record in stages.items()} == {
        f'{w:016x}': 14 for w in range(4)}
