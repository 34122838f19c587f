"""What a one-node cluster cannot show: how a stage's end is read from its processes' output,
the CPUs of multi-node and --cpus-per-task allocations, rendezvous on a node list, and the
job-state sources when Slurm has forgotten a job (fake Slurm tools where one is needed)."""
import os
import sys
from pathlib import Path

import pytest
import torch

from ktcli.cpus import available_cpus, slurm_cpus
from ktcli.runner import job_port, slurm_rendezvous
from ktcli.sequencing.launcher import StageRun, run_stage
from ktcli.sequencing.slurm import job_states

from .conftest import TINY_CONFIG

TRACEBACK = ['Traceback (most recent call last):', '  File "train.py", line 3, in <module>']


def ended(code: int, *lines: str) -> StageRun:
    run = StageRun(code, list(lines))
    for line in lines:
        run.read(line)
    return run


@pytest.mark.parametrize('run, outcome, reason', [
    # One srun task raised; srun terminated the other (143 = 128 + SIGTERM).
    (ended(143, *[f'[rank1]: {line}' for line in TRACEBACK],
           '[rank1]: RuntimeError: Found no NVIDIA driver on your system. Please check',
           'srun: error: vm: task 1: Exited with exit code 1',
           'slurmstepd: error: *** STEP 7.0 ON vm CANCELLED AT 2026-01-01T00:00:00 ***'),
     'failed', 'RuntimeError: Found no NVIDIA driver on your system. Please check'),
    # The first error is the cause; what the other rank says after it is a consequence.
    (ended(1, *TRACEBACK, 'ValueError: Invalid learning rate: -1', *TRACEBACK,
           'torch.distributed.DistBackendError: Connection closed by peer'),
     'failed', 'ValueError: Invalid learning rate: -1'),
    (ended(2, 'error: data/cub has no train/ folder: pass --data-root'),
     'failed', 'data/cub has no train/ folder: pass --data-root'),
    # kt's own line names the fix: it wins over a traceback printed before it.
    (ended(2, *TRACEBACK, 'OSError: image file is truncated',
           'error: 1 unreadable image(s) under data/demo: remove or replace them'),
     'failed', '1 unreadable image(s) under data/demo: remove or replace them'),
    (ended(1, 'Segmentation fault'), 'failed', 'Segmentation fault'),
    # Signals from outside: scancel or kill (no error printed), Ctrl-C, torchrun's SIGTERM.
    (ended(143, 'Epoch(train) [1][8/8]'), 'interrupted', None),
    (ended(-9), 'interrupted', None),
    (ended(130, 'interrupted: rerun with --resume to continue from the last checkpoint'),
     'interrupted', None),
    (ended(130, *TRACEBACK, 'KeyboardInterrupt'), 'interrupted', None),
    (ended(1, *TRACEBACK, 'torch.distributed.elastic.multiprocessing.api.SignalException: '
           'Process 12 got signal: 15'), 'interrupted', None),
    (ended(0, *TRACEBACK, 'ValueError: caught and logged by the stage'), 'done', None),
])
def test_a_stage_end_is_read_from_its_output(run, outcome, reason):
    assert run.outcome == outcome
    if reason is not None:
        assert run.reason == reason


def test_run_stage_reads_every_line_not_only_the_tail():
    code = ('import sys\nprint("Traceback (most recent call last):")\n'
            'print("ZeroDivisionError: division by zero")\n'
            'for i in range(100): print(f"[rank0] waiting {i}")\nsys.exit(143)\n')
    run = run_stage([sys.executable, '-c', code], on_progress=lambda update: None)
    assert (run.code, run.outcome, run.reason) == (143, 'failed',
                                                   'ZeroDivisionError: division by zero')
    assert len(run.tail) == 40


@pytest.mark.parametrize('env, cpus', [
    (dict(SLURM_CPUS_ON_NODE='8'), 8),  # the batch script: the job's CPUs on its node
    (dict(SLURM_CPUS_ON_NODE='8', SLURM_STEP_ID='0', SLURM_CPUS_PER_TASK='3'), 3),
    # A task of a step without --cpus-per-task: its node's CPUs over its node's tasks.
    (dict(SLURM_CPUS_ON_NODE='8', SLURM_STEP_ID='0', SLURM_STEP_TASKS_PER_NODE='4(x2),2',
          SLURM_NODEID='2'), 4),
    (dict(SLURM_CPUS_ON_NODE='8', SLURM_STEP_ID='0', SLURM_STEP_TASKS_PER_NODE='4(x2),2',
          SLURM_NODEID='1'), 2),
    ({}, None),
])
def test_slurm_cpus_follow_the_allocation(monkeypatch, env, cpus):
    for name in [name for name in os.environ if name.startswith('SLURM_')]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert slurm_cpus() == cpus
    assert available_cpus() == min(cpus or 10 ** 6, len(os.sched_getaffinity(0)))


def test_a_slurm_job_sets_torch_threads_and_loader_workers(monkeypatch, tmp_path):
    from ktcli.runner import load_config
    threads = torch.get_num_threads()
    for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'SLURM_STEP_ID'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('SLURM_CPUS_ON_NODE', '1')
    try:
        cfg = load_config(str(TINY_CONFIG), work_dir=str(tmp_path))
        assert torch.get_num_threads() == 1 and os.environ['OMP_NUM_THREADS'] == '1'
        assert cfg.train_dataloader.num_workers == 1
    finally:
        torch.set_num_threads(threads)


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f'#!{sys.executable}\nimport sys\n{script}')
    (bin_dir / name).chmod(0o755)


def test_rendezvous_on_the_first_host_of_a_node_list(tmp_path, monkeypatch):
    fake_tool(tmp_path, 'scontrol', 'assert sys.argv[1:] == ["show", "hostnames", '
              '"gpu[03-04]"]\nprint("gpu03\\ngpu04")\n')
    monkeypatch.setenv('PATH', f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    env = dict(SLURM_STEP_NODELIST='gpu[03-04]', SLURM_JOB_NODELIST='gpu[03-05]',
               SLURM_NTASKS='8', SLURM_STEP_NUM_TASKS='8', SLURM_PROCID='5', SLURM_LOCALID='1',
               SLURM_JOB_ID='123456')
    assert slurm_rendezvous(env) == dict(MASTER_ADDR='gpu03', MASTER_PORT=job_port('123456'),
                                         WORLD_SIZE='8', RANK='5', LOCAL_RANK='1')
    # Two jobs on one node meet at different ports; a port set by the user is kept.
    assert job_port('123456') != job_port('123457')
    assert 15000 <= int(job_port('123456')) < 30000
    assert slurm_rendezvous(dict(env, MASTER_PORT='29999'))['MASTER_PORT'] == '29999'


def test_ended_jobs_come_from_scontrol_then_from_nowhere(tmp_path, monkeypatch):
    """No accounting: sacct refuses, scontrol still knows job 7 and has forgotten job 5."""
    fake_tool(tmp_path, 'squeue', 'print("9|PENDING|DependencyNeverSatisfied")\n')
    fake_tool(tmp_path, 'sacct', 'print("sacct: error: Slurm accounting storage is disabled",'
              ' file=sys.stderr)\nsys.exit(1)\n')
    fake_tool(tmp_path, 'scontrol', 'job = sys.argv[-1]\nif job != "7":\n'
              '    print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)\n'
              '    sys.exit(1)\nprint("JobId=7 JobName=kt JobState=CANCELLED '
              'Reason=DependencyNeverSatisfied Dependency=afterok:5(failed)")\n')
    monkeypatch.setenv('PATH', f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    report = job_states(['5', '7', '9', None])
    assert {job: (s.state, s.reason, s.source) for job, s in report.jobs.items()} == {
        '7': ('cancelled', 'DependencyNeverSatisfied', 'scontrol'),
        '9': ('queued', 'DependencyNeverSatisfied', 'squeue')}
    assert report.note == ('ended jobs: from scontrol (Slurm accounting is off); job 5: '
                           'unknown to sacct (Slurm accounting is off) and to scontrol (ended '
                           'over MinJobAge ago), shown as last recorded by the job')
    fake_tool(tmp_path, 'squeue', 'print("slurm_load_jobs error: Unable to contact slurm '
              'controller", file=sys.stderr)\nsys.exit(1)\n')
    report = job_states(['5'])
    assert not report.answered and report.jobs == {}
    assert report.note.startswith('Slurm did not answer (squeue: slurm_load_jobs error: '
                                  'Unable to contact slurm controller)')
