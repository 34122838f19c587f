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
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from ktcli.sequencing.launcher import run_stage, train_command
from ktcli.sequencing.stage_status import stage_statuses

from .conftest import REPO
from .test_stage_scheduling import kt

pytestmark = pytest.mark.slurm

# Polls wait at most this long for a job (tiny stages train in seconds).
JOB_TIMEOUT = 900


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


def start(command: List[str]) -> subprocess.Popen:
    """A command running in the background (beside Slurm jobs, whose one-thread phases leave
    a core idle), its output going to a temporary file."""
    output = tempfile.TemporaryFile('w+')
    process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                               text=True)
    process.output = output
    return process


def start_kt(*args) -> subprocess.Popen:
    return start([sys.executable, '-m', 'ktcli', *map(str, args)])


def finish(process: subprocess.Popen) -> str:
    """Its output, once it has succeeded."""
    process.wait(timeout=JOB_TIMEOUT)
    process.output.seek(0)
    output = process.output.read()
    assert process.returncode == 0, output[-3000:]
    return output


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


def labels(work_dir: Path) -> Dict[str, dict]:
    """The manifest's stage records by label."""
    stages = json.loads((work_dir / 'kt_manifest.json').read_text())['stages']
    return {record['label']: record for record in stages.values()}


def weights(work_dir: Path, record: dict) -> dict:
    return torch.load(work_dir / record['checkpoint'], weights_only=True)['state_dict']


def largest_difference(first: dict, second: dict) -> float:
    return max((first[key].float() - second[key].float()).abs().max().item() for key in first)


# --gpus 2 on the CPU node; the loader runs in each process (num_workers=0): a task has one
# CPU, and so one worker at most, while torchrun's processes see both cores.
TWO_TASKS = ['--n', '1', '--gpus', '2', '--cfg-options', 'train_dataloader.num_workers=0']


def live_jobs() -> set:
    out = subprocess.run(['squeue', '--noheader', '--format=%i'], capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


class Scenarios:
    """This module's Slurm scenarios, run side by side: each step starts once what it needs
    has happened, so that the cluster always has a job to run while kt commands and the
    local reference run beside them (a tiny stage spends most of its time importing, on one
    core, and jobs of 2 CPUs run one at a time).

    - ``ablation``: ``kt ablate n --max-n 3`` as 5 jobs of 2 CPUs each (the cores of a
      local run here, so the same loader workers), with the dependencies scontrol reports
      while the students wait; once they have ended, ``kt status`` and the rerun;
    - ``cancel``: ``kt train --n 3 --epochs 2``, stage 1's job scancel'ed once its epoch-1
      checkpoint is written; once the three jobs have ended, a copy of the work dir
      (``cancelled``) keeps that state for the status tests, and the rerun resubmits in the
      work dir, whose stage 1 is scancel'ed again once its log says it resumed;
    - ``failure``: ``kt train --n 2`` with a negative learning rate, which passes kt's
      config check and breaks when the optimizer is built, in the job;
    - ``tasks``: one stage of 2 srun tasks (``TWO_TASKS``); ``torchrun``: the same stage
      trained as kt trains it locally, by torchrun's 2 CPU processes.

    ``local`` is the local run of the same ablation: its work dir and finished process.
    """

    def __init__(self, root: Path, demo_root: Path, local: tuple) -> None:
        self.demo_root, self.local = demo_root, local
        self.dirs = {name: root / name for name in (
            'ablation', 'cancel', 'cancelled', 'failure', 'tasks', 'torchrun')}
        self.jobs: Dict[str, List[str]] = {}
        self.outputs: Dict[str, str] = {}
        self.running: Dict[str, subprocess.Popen] = {}
        self.scancelled: List[str] = []
        result = kt('ablate', 'n', *self.tiny('ablation'), '--max-n', '3', '--launcher',
                    'slurm', '--slurm-args', '--cpus-per-task=2')
        self.jobs['ablation'] = submitted_jobs(result.stdout)
        self.dependencies = {job: job_fields(job)['Dependency'] for job in self.jobs['ablation']}
        # Queued behind the ablation, the two 1-CPU chains first: they can run side by side.
        self.start('cancel', 'train', *self.tiny('cancel', epochs=2), '--n', '3',
                   '--launcher', 'slurm')
        self.start('failure', 'train', *self.tiny('failure'), '--n', '2', '--launcher', 'slurm',
                   '--cfg-options', 'optim_wrapper.optimizer.lr=-1')

    def tiny(self, name: str, epochs: int = 1) -> list:
        return tiny(self.demo_root, self.dirs[name], epochs)

    def start(self, name: str, *args) -> None:
        self.running[name] = start_kt(*args)

    def done(self, name: str) -> bool:
        """Whether background step ``name`` has finished (its output kept, and the jobs it
        submitted)."""
        if name in self.running and self.running[name].poll() is not None:
            self.outputs[name] = finish(self.running.pop(name))
            if 'submitted' in self.outputs[name]:
                self.jobs[name] = submitted_jobs(self.outputs[name])
        return name in self.outputs

    def ended(self, name: str, live: set) -> bool:
        return name in self.jobs and live.isdisjoint(self.jobs[name])

    def step(self) -> bool:
        """Start what can start now; True once everything has ended."""
        live = live_jobs()
        if self.done('cancel') and self.done('failure') and 'tasks' not in self.jobs and \
                'tasks' not in self.running:
            self.start('tasks', 'train', *self.tiny('tasks'), *TWO_TASKS, '--launcher', 'slurm')
        if self.done('tasks') and 'torchrun' not in self.running | self.outputs:
            [stage] = labels(self.dirs['tasks']).values()
            self.running['torchrun'] = start(train_command(
                self.dirs['tasks'] / stage['config'], self.dirs['torchrun'], 2, 'pytorch')
                + ['--data-root', str(self.demo_root)])
        self.done('torchrun')
        if 'cancel' in self.jobs and not self.scancelled and (
                self.dirs['cancel'] / labels(self.dirs['cancel'])['1/3']['dir'] /
                'last_checkpoint').is_file():
            self.scancel(self.jobs['cancel'][:1])
        if self.ended('cancel', live) and not self.dirs['cancelled'].exists():
            shutil.copytree(self.dirs['cancel'], self.dirs['cancelled'], symlinks=True)
            self.start('cancelled status', 'status', self.dirs['cancelled'], '--json',
                       self.dirs['cancelled'] / 'status.json')
            self.start('cancel rerun', 'train', *self.tiny('cancel', epochs=2), '--n', '3',
                       '--launcher', 'slurm')
        if self.done('cancel rerun') and len(self.scancelled) == 1 and \
                self.resumed_log().is_file() and \
                'resumed epoch: 1' in self.resumed_log().read_text(errors='replace'):
            self.scancel(self.jobs['cancel rerun'])
        if self.ended('ablation', live) and 'ablation status' not in self.running | self.outputs:
            self.start('ablation status', 'status', self.dirs['ablation'], '--json',
                       self.dirs['ablation'] / 'status.json')
        if self.done('ablation status') and 'ablation rerun' not in self.running | self.outputs:
            self.start('ablation rerun', 'ablate', 'n', *self.tiny('ablation'), '--max-n', '3',
                       '--launcher', 'slurm')
        self.done('ablation rerun')
        self.done('cancelled status')
        return (not self.running and {'torchrun', 'ablation rerun', 'cancel rerun',
                                      'cancelled status'} <= set(self.outputs)
                and live.isdisjoint(sum(self.jobs.values(), [])))

    def resumed_log(self) -> Path:
        """The log of stage 1's resubmitted job."""
        first = labels(self.dirs['cancel'])['1/3']
        return self.dirs['cancel'] / first['dir'] / f'slurm-{self.jobs["cancel rerun"][0]}.out'

    def scancel(self, jobs: List[str]) -> None:
        subprocess.run(['scancel', *jobs], check=True)
        self.scancelled += jobs


@pytest.fixture(scope='module')
def cluster(tmp_path_factory, demo_root, parallel_ablation, kt_server) -> Scenarios:
    """The scenarios, run to their end; ``local`` is the local run of the ablation. (The
    scenarios' first ``kt ablate`` runs forked from the session's ``kt_server``.)"""
    scenarios = Scenarios(tmp_path_factory.mktemp('slurm'), demo_root, parallel_ablation)
    wait_until(scenarios.step, 'the scenarios to end', timeout=3 * JOB_TIMEOUT)
    return scenarios


def test_ablation_jobs_follow_the_teachers(cluster):
    records = labels(cluster.dirs['ablation'])
    assert sorted(records) == ['1/3', '2/3', '3/3', 'Base 2/3', 'Base 3/3']
    job = {label: record['job_id'] for label, record in records.items()}
    assert sorted(job.values(), key=int) == cluster.jobs['ablation']
    after = {label: cluster.dependencies[job[label]] for label in records}
    print('\n'.join(f'{label} (job {job[label]}): Dependency={after[label]}' for label in after))
    # As scontrol shows them while the students wait: afterok on every earlier stage.
    assert re.fullmatch(rf'afterok:{job["1/3"]}\(\w+\)', after['2/3'])
    assert re.fullmatch(rf'afterok:{job["1/3"]}\(\w+\),afterok:{job["2/3"]}\(\w+\)', after['3/3'])
    assert after['1/3'] == after['Base 2/3'] == after['Base 3/3'] == '(null)'
    for label in records:
        fields = job_fields(job[label])
        assert fields['JobState'] == 'COMPLETED' and fields['NumCPUs'] == '2', (label, fields)


def status_json(work_dir: Path) -> Dict[str, dict]:
    """What ``kt status --json`` wrote, by label."""
    return {s['label']: s for s in json.loads((work_dir / 'status.json').read_text())}


def test_ablation_rerun_equals_the_local_run(cluster):
    """The same Table 3 and digests as the local run of the same command, and its weights
    to float rounding. That run (the session's ``--parallel 2`` one, which
    test_ablate_command checks against the serial run) trains the stages it runs side by
    side with 1 thread, the jobs with 2, which changes the last bits of float sums: after
    one epoch the weights differed by at most 1.3e-5."""
    work_dir, (local, local_run) = cluster.dirs['ablation'], cluster.local
    by_label, table = status_json(work_dir), cluster.outputs['ablation status']
    print(table)
    assert {label: s['status'] for label, s in by_label.items()} == dict.fromkeys(
        ['1/3', '2/3', '3/3', 'Base 2/3', 'Base 3/3'], 'done')
    assert '5 done' in table and all(re.search(rf'│\s+{s["job_id"]} │', table)
                                     for s in by_label.values())
    rerun = cluster.outputs['ablation rerun']
    print(rerun, local_run.stdout)
    assert '5 distinct stages: 5 reused, 0 to train' in rerun
    assert 'Ensemble (Ours)' in rerun and 'submitted' not in rerun
    slurm_records, local_records = labels(work_dir), labels(local)
    assert {label: r['digest'] for label, r in slurm_records.items()} == {
        label: r['digest'] for label, r in local_records.items()}
    rows = [json.loads((path / 'ablate_n.json').read_text())['rows'] for path in (work_dir, local)]
    assert rows[0] == rows[1]
    for label, record in slurm_records.items():
        difference = largest_difference(weights(work_dir, record),
                                        weights(local, local_records[label]))
        print(f'{label}: largest weight difference, Slurm job vs local run: {difference:.2e}')
        assert difference < 1e-4, label


def test_a_cancelled_teacher_cancels_its_students(cluster):
    work_dir, jobs = cluster.dirs['cancelled'], cluster.jobs['cancel']
    fields = [job_fields(job) for job in jobs]
    assert [f['JobState'] for f in fields] == ['CANCELLED'] * 3
    assert [f['Reason'] for f in fields[1:]] == ['DependencyNeverSatisfied'] * 2
    by_label, table = status_json(work_dir), cluster.outputs['cancelled status']
    print(table)
    assert [(s['status'], s['reason']) for s in by_label.values()] == [
        ('cancelled', None), ('cancelled', 'teacher 1/3 cancelled'),
        ('cancelled', 'teacher 1/3 cancelled')]
    assert by_label['1/3']['epoch'] == 1
    assert '2/3 cancelled: teacher 1/3 cancelled' in table and '3 cancelled' in table
    assert 'ended jobs: from scontrol (Slurm accounting is off)' in table


def test_status_asks_sacct_where_accounting_is_on(cluster, tmp_path, monkeypatch):
    """A fake sacct first on PATH stands for a cluster with slurmdbd: kt believes it over
    scontrol (here it says stage 1 hit its time limit) and needs no footnote."""
    jobs = cluster.jobs['cancel']
    fake = tmp_path / 'bin' / 'sacct'
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$*" >> "$0.calls"\n'
                    f'printf "{jobs[0]}|TIMEOUT|None\\n{jobs[0]}.batch|CANCELLED|None\\n'
                    f'{jobs[1]}|CANCELLED by 0|DependencyNeverSatisfied\\n'
                    f'{jobs[2]}|CANCELLED by 0|DependencyNeverSatisfied\\n"\n')
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', f'{fake.parent}{os.pathsep}{os.environ["PATH"]}')
    report = stage_statuses(cluster.dirs['cancelled'])
    assert [(s.status, s.reason) for s in report.stages] == [
        ('interrupted', 'time limit reached'), ('cancelled', 'teacher 1/3 interrupted'),
        ('cancelled', 'teacher 1/3 interrupted')]
    assert f'--jobs={",".join(jobs)}' in Path(f'{fake}.calls').read_text()
    assert report.note is None


def test_the_rerun_resubmits_the_three_and_stage_1_resumes(cluster):
    output, jobs = cluster.outputs['cancel rerun'], cluster.jobs['cancel rerun']
    assert len(jobs) == 3 and '0 already queued or running' in output
    records = labels(cluster.dirs['cancel'])
    assert [records[label]['job_id'] for label in ('1/3', '2/3', '3/3')] == jobs
    # Resumed from the checkpoint of epoch 1, in the same stage directory (then scancel'ed:
    # enough seen).
    assert 'resumed epoch: 1, iter: 8' in cluster.resumed_log().read_text()


def test_a_stage_that_raises_fails_and_its_student_is_cancelled(cluster):
    work_dir, jobs = cluster.dirs['failure'], cluster.jobs['failure']
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
                      'time.sleep(30)\n')
    run = run_stage(['srun', '--ntasks=2', '--kill-on-bad-exit=1', sys.executable, '-u',
                     str(script)], on_progress=lambda update: None)
    assert run.code != 0 and run.outcome == 'failed', run
    assert run.reason == 'ValueError: rank 1 broke'


def test_two_tasks_on_cpus_train_as_torchrun_does(cluster):
    """--gpus 2 --launcher slurm on a node without GPUs: 2 srun tasks join a gloo group
    themselves (no CUDA call) and train the weights of torchrun's 2 CPU processes."""
    slurm_dir, torchrun_dir = cluster.dirs['tasks'], cluster.dirs['torchrun']
    [job] = cluster.jobs['tasks']
    assert job_fields(job)['JobState'] == 'COMPLETED'
    [record] = labels(slurm_dir).values()
    log = next((slurm_dir / record['dir']).glob('*/*.log')).read_text()
    assert 'Distributed launcher: slurm' in log and 'GPU number: 2' in log
    assert "dist_cfg: {'backend': 'gloo'}" in log
    job_log = (slurm_dir / record['dir'] / f'slurm-{job}.out').read_text()
    assert job_log.count('kt: 1 CPU(s) of the Slurm job for this process: 1 torch thread(s)') == 2
    reference = torch.load(torchrun_dir / 'epoch_1.pth', weights_only=True)['state_dict']
    difference = largest_difference(weights(slurm_dir, record), reference)
    print(f'largest weight difference, 2 srun tasks vs 2 torchrun processes: {difference}')
    assert difference < 1e-6
