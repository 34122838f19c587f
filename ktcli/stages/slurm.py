"""Run stages as Slurm jobs whose dependencies follow the teachers, and ask Slurm about them.

Each stage not done becomes one ``sbatch`` job running
``python -m ktcli.stages.stage_job WORK_DIR DIGEST``; a stage whose teachers
are still to train depends on their jobs (``--dependency=afterok:...``), so
the cluster's scheduler runs the whole graph while kt is gone. The job keeps
the stage's record in the manifest (under its lock), which ``kt status``
shows and a rerun of the same command scores.
"""
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from rich.console import Console

from ..errors import UserError
from .manifest import Manifest
from .planned_stage import PlannedStage
from .scheduler import unique_stages
from .slurm_jobs import DEPENDENCY_FAILED, LIVE, job_states
from .submitted_jobs import remember_job, submitted_jobs
from .stage_files import write_stage_config


def _sbatch_path(path: Path) -> str:
    """A path as sbatch's --output takes it: a '%' of the folder's name doubled (sbatch
    reads %j, %x and the like as its own fields)."""
    return str(path).replace('%', '%%')


class SlurmScheduler:
    """Submit the stages that are not done as Slurm jobs linked by their teachers.

    Args:
        work_dir (Path): The work directory (on storage every node sees).
        processes (int): Processes (tasks, one per GPU) per stage.
        slurm_args (str): sbatch options for every job (partition, GPUs,
            time, ...).
        console (Console, optional): Where to print.
    """

    def __init__(self, work_dir: Path, processes: int = 1, slurm_args: str = '',
                 console: Optional[Console] = None) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.processes = processes
        self.slurm_args = slurm_args
        self.console = console or Console()

    def run(self, stages: Sequence[PlannedStage]) -> bool:
        """Submit every stage that is not done and not already queued or running.

        Returns:
            bool: True: every stage is done (nothing was submitted).

        Raises:
            UserError: ``sbatch`` is missing or refuses a job.
        """
        manifest = Manifest(self.work_dir)
        stages = [stage for stage in unique_stages(stages) if not manifest.is_done(stage.digest)]
        if not stages:
            return True
        if shutil.which('sbatch') is None:
            raise UserError('--launcher slurm needs sbatch on PATH: run kt on a Slurm login '
                            'node, or train here with --launcher none')
        # Only a job kt submitted for the stage is the stage's: a record's job id travels with
        # the work dir and could name any job of this user's (see submitted_jobs).
        ours = submitted_jobs()
        jobs_of = {stage.digest: (manifest.stage(stage.digest) or {}).get('job_id')
                   for stage in stages}
        jobs_of = {digest: job if (str(job), digest) in ours else None
                   for digest, job in jobs_of.items()}
        report = job_states(jobs_of.values())
        jobs: Dict[str, str] = {}
        submitted = []
        # Stages come teachers first, so a teacher's job id is known before its students'.
        for stage in stages:
            job = jobs_of[stage.digest]
            if report.state(job) in LIVE:
                # A job still pending on a teacher that failed never runs (Slurm keeps it
                # without --kill-on-invalid-dep), nor does one on a teacher resubmitted now.
                resubmitted = {s.digest for s in submitted}
                if report.jobs[str(job)].reason != DEPENDENCY_FAILED and \
                        resubmitted.isdisjoint(stage.teachers):
                    jobs[stage.digest] = str(job)
                    continue
                if shutil.which('scancel'):
                    subprocess.run(['scancel', str(job)], capture_output=True)
            write_stage_config(stage.cfg, stage.dir)
            after = [jobs[teacher] for teacher in stage.teachers if teacher in jobs]
            # Queued before sbatch: a job that starts at once records itself after this.
            manifest.update(stage.digest, **stage.placement(self.work_dir), status='queued',
                            job_id=None, after=after, pid=None, reason=None)
            jobs[stage.digest] = self._submit(stage, after)
            remember_job(jobs[stage.digest], stage.digest)
            manifest.update(stage.digest, job_id=jobs[stage.digest])
            submitted.append(stage)
        self.console.print(f'submitted {len(submitted)} Slurm job'
                           f'{"s" if len(submitted) != 1 else ""}'
                           + (f' ({", ".join(jobs[s.digest] for s in submitted)})'
                              if submitted else '')
                           + f'; {len(stages) - len(submitted)} already queued or running. '
                           f'Follow them with `kt status {self.work_dir}`; once they have '
                           'finished, rerun this command to score them and print the tables.')
        return False

    def _submit(self, stage: PlannedStage, after: List[str]) -> str:
        """sbatch one stage; its job id."""
        job = [sys.executable, '-m', 'ktcli.stages.stage_job', *stage.inputs.arguments(),
               str(self.work_dir), stage.digest, '--processes', str(self.processes)]
        command = ['sbatch', '--parsable', f'--job-name=kt-{stage.digest[:8]}',
                   f'--output={_sbatch_path(stage.dir)}/slurm-%j.out', f'--ntasks={self.processes}']
        if after:
            command += [f'--dependency=afterok:{":".join(after)}', '--kill-on-invalid-dep=yes']
        command += [*shlex.split(self.slurm_args), f'--wrap={shlex.join(job)}']
        result = subprocess.run(command, capture_output=True, text=True)
        job_id = result.stdout.strip().split(';')[0]
        if result.returncode != 0 or not job_id.isdigit():
            reason = (result.stderr.strip() or result.stdout.strip() or 'no output').splitlines()
            raise UserError(f'sbatch refused stage {stage.label}: {reason[-1]} '
                            f'(exit code {result.returncode}); check --slurm-args')
        return job_id
