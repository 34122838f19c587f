"""Stage sequencing: a stage's settings, config, on-disk state, training and Slurm.

Modules, lower layers first (a module imports only from its own or lower layers):

- What a user sets and what it makes of a model: ``settings`` (TrainSettings,
  DistillSettings, Teacher, seeds), ``backbones``, ``portable_config`` (a config without
  this machine's folders), ``validation_config`` (the validation split, ``--checkpoint``).
- The on-disk contract: ``records`` (the work dir's layout and file names, ``stage.json``,
  every value read from them checked), ``config_files`` (a stage's ``config.json`` written
  and read back as checked data), ``manifest`` (the locked cache of records).
- Composing and reading: ``stage_config`` (a stage's or a student's config and digest),
  ``planned_stage``, ``work_dir`` (trained stages, students, their data, for later commands).
- Training: ``launcher`` (the child process and its output), ``stage_training`` (claim one
  stage and train it), ``scheduler`` (this machine), ``slurm`` (everything kt asks of
  Slurm), ``stage_job`` (a Slurm job's body), ``sequence`` (plan, train and score the
  sequences of a command), ``stage_status`` (``kt status``).

Scoring (:mod:`ktcli.scoring`) sits between the composing and the training layers.
"""
