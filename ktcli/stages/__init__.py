"""What a stage is: its settings, its config and digest, and its state on disk.

Modules, lower layers first (a module imports only from its own or lower layers):

- What a user sets and what it makes of a model: ``settings`` (TrainSettings,
  DistillSettings, Teacher, seeds), ``backbones``, ``portable_config`` (a config without
  this machine's folders), ``validation_config`` (the validation split, ``--checkpoint``).
- The on-disk contract: ``records`` (the work dir's layout and file names, ``stage.json``,
  every value read from them checked), ``config_files`` (a stage's ``config.json`` written
  and read back as checked data), ``manifest`` (the locked cache of records).
- Composing and reading: ``stage_config`` (a stage's or a student's config and digest),
  ``planned_stage``, ``work_dir`` (trained stages, students, their data, for later commands).

Scoring (:mod:`ktcli.scoring`) reads stages; training them in sequence is
:mod:`ktcli.sequencing`, above both.
"""
