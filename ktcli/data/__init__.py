"""Datasets: what each supported dataset looks like on disk, checking and downloading it,
and the built-in synthetic demo dataset.

Modules, lower layers first: ``specs``, ``demo/`` (the synthetic dataset),
``image_verification``, ``check`` (``kt data check``), ``fingerprint`` (what a data folder
holds), ``data_folders`` (where this machine keeps each fingerprint's data),
``validation_split``, ``download``.
"""
