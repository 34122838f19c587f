"""The ``kt`` commands: one module per command, the top layer (nothing below imports them).

Modules: ``training_options`` (the options every training command shares, the scheduler
they choose), then ``train``, ``ablate``, ``distill``, ``status``, ``ensemble``,
``visualize``, ``report``, ``export``, ``predict`` and ``data``.
"""
