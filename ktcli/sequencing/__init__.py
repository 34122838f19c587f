"""Stage sequencing: training the stages of one or more sequences, on this machine or on
Slurm, and scoring each sequence once trained.

Modules, lower layers first (a module imports only from its own or lower layers):

- ``launcher`` (the training child process and its output).
- ``slurm`` (everything kt asks of Slurm: submitting, job states, the submitted-jobs file).
- ``stage_training`` (claim one stage in the manifest and train it).
- ``scheduler`` (this machine's scheduler), ``stage_job`` (a Slurm job's body),
  ``stage_status`` (``kt status``).
- ``sequence`` (plan, train and score the sequences of a command: one
  ``WorkDirSequences`` owns the manifest and the scheduler).

It builds on :mod:`ktcli.stages` (what a stage is) and :mod:`ktcli.scoring`.
"""
