"""Reports: presentation only (the figures come from :mod:`ktcli.scoring`).

Modules: ``plots``, ``html_page``, ``ablation_records`` (the ablation tables read back),
``ablation_plots``, ``alpha_selection``, ``attention_overlay``, ``gradcam``,
``prediction_panels``, ``calibration``, ``per_class``, ``training_curves``, ``gallery``,
``run_facts`` (what a work dir says about its run and exports), ``report_figures`` and
``report_page`` (the ``kt report`` page).
"""
