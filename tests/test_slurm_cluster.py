"""--launcher slurm against a live Slurm: the one-node cluster of tools/slurm/local_cluster.sh
(CI starts it before the tests; no accounting database, so ended jobs come from scontrol).

Without a Slurm that answers, every test here is skipped with the reason (KT_REQUIRE_SLURM=1,
set by CI, makes that an error instead). What one node cannot show (many nodes, GPUs, --gres)
stays with the fake-sbatch tests of test_stage_scheduling.py.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

from ktcli.stages.launcher import run_stage
from ktcli.stages.stage_status import stage_statuses

from .conftest import REPO
from .test_stage_scheduling import kt

pytestmark = pytest.mark.slurm

# Polls wait at most this long for a job (tiny stages train in seconds).
JOB_TIMEOUT = 900
ENDED = ('COMPLETED', 'CANCELLED', 'FAILED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL')


def slurm_missing() -> str:
    """Why no live Slurm can run jobs here ('' when one can)."""
    if shutil.which('sbatch') is None:
        return 'no sbatch on PATH (start one with: sudo bash tools/slurm/local_cluster.sh start)'
    result = subprocess.run(['sinfo', '--noheader', '--format=%T'], capture_output=True,
                            text=True, timeout=30)
    if result.returncode != 0:
        return f'sinfo fails: {(result.stderr.strip().splitlines() or ["no output"])[-1]}'
    if not {'idle', 'mixed', 'allocated'} & set(result.stdout.split()):
        return f'no Slurm node is up (sinfo: {result.stdout.split()})'
    return ''


@pytest.fixture(scope='module', autouse=True)
def live_slurm() -> None:
    missing = slurm_missing()
    if missing and os.environ.get('KT_REQUIRE_SLURM') == '1':
        pytest.fail(f'KT_REQUIRE_SLURM=1 but {missing}')
    if missing:
        pytest.skip(missing)


def start_kt(*args) -> subprocess.Popen:
    """kt running in the background (beside Slurm jobs, whose one-thread phases leave a
    core idle)."""
    return subprocess.Popen([sys.executable, '-m', 'ktcli', *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    """Its output, once it has succeeded."""
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, out[-3000:] + err[-3000:]
    return out


def tiny(demo_root: Path, work_dir: Path, epochs: int = 1) -> list:
    return ['--dataset', 'demo', '--data-root', demo_root, '--backbone', 'resnet18_tiny',
            '--img-size', '32', '--epochs', epochs, '--batch-size', '8', '--work-dir', work_dir]


def submitted_jobs(output: str) -> List[str]:
    return re.search(r'submitted \d+ Slurm jobs? \(([\d, ]+)\)', output).group(1).split(', ')


def job_fields(job: str) -> Dict[str, str]:
    """``scontrol show job``'s fields of one job."""
    out = subprocess.run(['scontrol', '--oneliner', 'show', 'job', job], capture_output=True,
                         text=True, check=True).stdout
    return dict(re.findall(r'(\w+)=(\S*)', out))


def wait_until(condition, what: str, timeout: float = JOB_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'timed out after {timeout} s waiting for {what}'
        time.sleep(0.2)


def wait_for_end(jobs: List[str]) -> None:
    wait_until(lambda: all(job_fields(job)['JobState'] in ENDED for job in jobs),
               f'jobs {jobs} to end')


def labels(work_dir: Path) -> Dict[str, dict]:
    """The manifest's stage records by label."""
    stages = json.loads((work_dir / 'kt_manifest.json').read_text())['stages']
    return {record['label']: record for record in stages.values()}


def statuses(work_dir: Path, json_path: Path) -> Tuple[Dict[str, dict], str]:
    """``kt status``: each stage's JSON record by label, and the printed table."""
    result = kt('status', work_dir, '--json', json_path)
    return {s['label']: s for s in json.loads(json_path.read_text())}, result.stdout


def weights(work_dir: Path, record: dict) -> dict:
    return torch.load(work_dir / record['checkpoint'], weights_only=True)['state_dict']


def largest_difference(first: dict, second: dict) -> float:
    return max((first[key].float() - second[key].float()).abs().max().item() for key in first)


@pytest.fixture(scope='module')
def slurm_ablation(tmp_path_factory, demo_root, trained_work_dir) -> dict:
    """``kt ablate n --max-n 3 --launcher slurm``: 5 jobs of 2 CPUs each (the cores a local
    serial run on this machine has, so the same threads and loader workers), the
    dependencies scontrol reports while they wait, the jobs run to their end; beside them,
    the same command as a local serial run in another work dir, whose stages 1/3 and 2/3 are
    the session's trained two-stage sequence (same settings, same digests)."""
    work_dir = tmp_path_factory.mktemp('slurm_ablation') / 'work'
    local = work_dir.with_name('local')
    shutil.copytree(trained_work_dir, local, symlinks=True)
    result = kt('ablate', 'n', *tiny(demo_root, work_dir), '--max-n', '3', '--launcher', 'slurm',
                '--slurm-args', '--cpus-per-task=2')
    jobs = submitted_jobs(result.stdout)
    dependencies = {job: job_fields(job)['Dependency'] for job in jobs}
    serial = start_kt('ablate', 'n', *tiny(demo_root, local), '--max-n', '3')
    wait_for_end(jobs)
    return dict(work_dir=work_dir, jobs=jobs, dependencies=dependencies, local=local,
                serial=finish(serial))


def test_ablation_jobs_follow_the_teachers(slurm_ablation):
    records = labels(slurm_ablation['work_dir'])
    assert sorted(records) == ['1/3', '2/3', '3/3', 'Base 2/3', 'Base 3/3']
    job = {label: record['job_id'] for label, record in records.items()}
    assert sorted(job.values(), key=int) == slurm_ablation['jobs']
    after = {label: slurm_ablation['dependencies'][job[label]] for label in records}
    print('\n'.join(f'{label} (job {job[label]}): Dependency={after[label]}' for label in after))
    # As scontrol shows them while the students wait: afterok on every earlier stage.
    assert re.fullmatch(rf'afterok:{job["1/3"]}\(\w+\)', after['2/3'])
    assert re.fullmatch(rf'afterok:{job["1/3"]}\(\w+\),afterok:{job["2/3"]}\(\w+\)', after['3/3'])
    assert after['1/3'] == after['Base 2/3'] == after['Base 3/3'] == '(null)'
    for label in records:
        fields = job_fields(job[label])
        assert fields['JobState'] == 'COMPLETED' and fields['NumCPUs'] == '2', (label, fields)


def test_ablation_rerun_equals_a_local_serial_run(slurm_ablation, tmp_path, demo_root):
    work_dir, local = slurm_ablation['work_dir'], slurm_ablation['local']
    by_label, table = statuses(work_dir, tmp_path / 'status.json')
    print(table)
    assert {label: s['status'] for label, s in by_label.items()} == dict.fromkeys(
        ['1/3', '2/3', '3/3', 'Base 2/3', 'Base 3/3'], 'done')
    assert '5 done' in table and all(re.search(rf'│\s+{s["job_id"]} │', table)
                                     for s in by_label.values())
    rerun = kt('ablate', 'n', *tiny(demo_root, work_dir), '--max-n', '3', '--launcher', 'slurm')
    print(rerun.stdout, slurm_ablation['serial'])
    assert '5 distinct stages: 5 reused, 0 to train' in rerun.stdout
    assert 'Ensemble (Ours)' in rerun.stdout and 'submitted' not in rerun.stdout
    assert '5 distinct stages: 2 reused, 3 to train' in slurm_ablation['serial']
    # The same five stages (the two reused ones keep the labels of the sequence they came from).
    local_records = json.loads((local / 'kt_manifest.json').read_text())['stages']
    slurm_records = labels(work_dir)
    assert sorted(r['digest'] for r in slurm_records.values()) == sorted(local_records)
    rows = [json.loads((path / 'ablate_n.json').read_text())['rows'] for path in (work_dir, local)]
    assert rows[0] == rows[1]
    # Same threads and loader workers: the same weights to the bit.
    for label, record in slurm_records.items():
        difference = largest_difference(weights(work_dir, record),
                                        weights(local, local_records[record['digest']]))
        print(f'{label}: largest weight difference, Slurm job vs local serial run: {difference}')
        assert difference == 0.0, label


@pytest.fixture(scope='module')
def cancelled_chain(tmp_path_factory, demo_root) -> dict:
    """``kt train --n 3 --epochs 2`` as Slurm jobs, stage 1's job scancel'ed once its
    epoch-1 checkpoint is written."""
    work_dir = tmp_path_factory.mktemp('slurm_cancel') / 'work'
    jobs = submitted_jobs(kt('train', *tiny(demo_root, work_dir, epochs=2), '--n', '3',
                             '--launcher', 'slurm').stdout)
    first = labels(work_dir)['1/3']
    wait_until(lambda: (work_dir / first['dir'] / 'last_checkpoint').is_file(),
               "stage 1's first checkpoint")
    subprocess.run(['scancel', jobs[0]], check=True)
    wait_for_end(jobs)
    return dict(work_dir=work_dir, jobs=jobs)


def test_a_cancelled_teacher_cancels_its_students(cancelled_chain, tmp_path):
    work_dir, jobs = cancelled_chain['work_dir'], cancelled_chain['jobs']
    fields = [job_fields(job) for job in jobs]
    assert [f['JobState'] for f in fields] == ['CANCELLED'] * 3
    assert [f['Reason'] for f in fields[1:]] == ['DependencyNeverSatisfied'] * 2
    by_label, table = statuses(work_dir, tmp_path / 'status.json')
    print(table)
    assert [(s['status'], s['reason']) for s in by_label.values()] == [
        ('cancelled', None), ('cancelled', 'teacher 1/3 cancelled'),
        ('cancelled', 'teacher 1/3 cancelled')]
    assert by_label['1/3']['epoch'] == 1
    assert '2/3 cancelled: teacher 1/3 cancelled' in table and '3 cancelled' in table
    assert 'ended jobs: from scontrol (Slurm accounting is off)' in table


def test_status_asks_sacct_where_accounting_is_on(cancelled_chain, tmp_path, monkeypatch):
    """A fake sacct first on PATH stands for a cluster with slurmdbd: kt believes it over
    scontrol (here it says stage 1 hit its time limit) and needs no footnote."""
    jobs = cancelled_chain['jobs']
    fake = tmp_path / 'bin' / 'sacct'
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$*" >> "$0.calls"\n'
                    f'printf "{jobs[0]}|TIMEOUT|None\\n{jobs[0]}.batch|CANCELLED|None\\n'
                    f'{jobs[1]}|CANCELLED by 0|DependencyNeverSatisfied\\n'
                    f'{jobs[2]}|CANCELLED by 0|DependencyNeverSatisfied\\n"\n')
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', f'{fake.parent}{os.pathsep}{os.environ["PATH"]}')
    report = stage_statuses(cancelled_chain['work_dir'])
    assert [(s.status, s.reason) for s in report.stages] == [
        ('interrupted', 'time limit reached'), ('cancelled', 'teacher 1/3 interrupted'),
        ('cancelled', 'teacher 1/3 interrupted')]
    assert f'--jobs={",".join(jobs)}' in Path(f'{fake}.calls').read_text()
    assert report.note is None


def test_the_rerun_resubmits_the_three_and_stage_1_resumes(cancelled_chain, demo_root):
    work_dir = cancelled_chain['work_dir']
    result = kt('train', *tiny(demo_root, work_dir, epochs=2), '--n', '3', '--launcher', 'slurm')
    jobs = submitted_jobs(result.stdout)
    assert len(jobs) == 3 and '0 already queued or running' in result.stdout
    records = labels(work_dir)
    assert [records[label]['job_id'] for label in ('1/3', '2/3', '3/3')] == jobs
    log = work_dir / records['1/3']['dir'] / f'slurm-{jobs[0]}.out'
    wait_until(lambda: log.is_file() and 'resumed epoch: 1' in log.read_text(),
               'stage 1 to resume')
    # Resumed from the checkpoint of epoch 1, in the same stage directory: enough seen.
    subprocess.run(['scancel', *jobs], check=True)
    wait_for_end(jobs)


def test_a_stage_that_raises_fails_and_its_student_is_cancelled(tmp_path, demo_root):
    """A negative learning rate passes kt's config check and breaks when the optimizer
    is built, in the job."""
    work_dir = tmp_path / 'work'
    jobs = submitted_jobs(kt('train', *tiny(demo_root, work_dir), '--n', '2', '--launcher',
                             'slurm', '--cfg-options', 'optim_wrapper.optimizer.lr=-1').stdout)
    wait_for_end(jobs)
    assert [job_fields(job)['JobState'] for job in jobs] == ['FAILED', 'CANCELLED']
    assert [(s.status, s.reason) for s in stage_statuses(work_dir).stages] == [
        ('failed', 'ValueError: Invalid learning rate: -1'), ('cancelled', 'teacher 1/2 failed')]
    log = (work_dir / labels(work_dir)['1/2']['dir'] / f'slurm-{jobs[0]}.out').read_text()
    assert ('error: stage 1/2 failed: ValueError: Invalid learning rate: -1 (exit code 1; '
            'logs in ') in log and 'a rerun fails the same way until that is fixed' in log


def test_a_task_that_raises_fails_the_step_srun_terminates(tmp_path):
    """srun ends the other task with SIGTERM once one raises; exit 143 is still a failure."""
    script = tmp_path / 'task.py'
    script.write_text('import os, time\nif os.environ["SLURM_PROCID"] == "1":\n'
                      '    raise ValueError("rank 1 broke")\nprint("rank 0 waits", flush=True)\n'
                      'time.sleep(120)\n')
    run = run_stage(['srun', '--ntasks=2', '--kill-on-bad-exit=1', sys.executable, '-u',
                     str(script)], on_progress=lambda update: None)
    assert run.code != 0 and run.outcome == 'failed', run
    assert run.reason == 'ValueError: rank 1 broke'


def test_two_tasks_on_cpus_train_as_torchrun_does(tmp_path, demo_root):
    """--gpus 2 --launcher slurm on a node without GPUs: 2 srun tasks join a gloo group
    themselves (no CUDA call) and train the weights of torchrun's 2 CPU processes. The
    loader runs in each process (num_workers=0): a task has 1 CPU, and so 1 worker at
    most, while torchrun's processes see both cores."""
    options = ['--n', '1', '--gpus', '2', '--cfg-options', 'train_dataloader.num_workers=0']
    slurm_dir, torchrun_dir = tmp_path / 'slurm', tmp_path / 'torchrun'
    [job] = submitted_jobs(kt('train', *tiny(demo_root, slurm_dir), *options,
                              '--launcher', 'slurm').stdout)
    torchrun = start_kt('train', *tiny(demo_root, torchrun_dir), *options)
    wait_for_end([job])
    finish(torchrun)
    assert job_fields(job)['JobState'] == 'COMPLETED'
    [record] = labels(slurm_dir).values()
    log = next((slurm_dir / record['dir']).glob('*/*.log')).read_text()
    assert 'Distributed launcher: slurm' in log and 'GPU number: 2' in log
    assert "dist_cfg: {'backend': 'gloo'}" in log
    job_log = (slurm_dir / record['dir'] / f'slurm-{job}.out').read_text()
    assert job_log.count('kt: 1 CPU(s) of the Slurm job for this process: 1 torch thread(s)') == 2
    [reference] = labels(torchrun_dir).values()
    difference = largest_difference(weights(slurm_dir, record), weights(torchrun_dir, reference))
    print(f'largest weight difference, 2 srun tasks vs 2 torchrun processes: {difference}')
    assert difference < 1e-6
