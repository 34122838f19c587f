"""Scoring: what sequencing, deployment and reports compute from trained models.

Modules, lower layers first: ``paired_statistics`` (accuracies with intervals, paired
comparisons), ``comparison_text`` (a comparison in words), ``frozen_features`` (a
teacher's outputs kept for its students), ``ensemble_figures`` (fusion, top-k hits,
ensemble rows and error structure), ``test_outputs`` (a stage's logits on the test or
validation split, cached and signed), ``student_scores`` (distilled students against
their members' ensemble).
"""
