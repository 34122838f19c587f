"""Reports: cached test outputs, single/ensemble/diversity figures, ablation plots and
attention overlays."""
