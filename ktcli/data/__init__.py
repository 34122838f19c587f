"""Datasets: what each supported dataset looks like on disk, checking and downloading it,
and the built-in synthetic demo dataset."""
