"""Deployment: the ensemble as one module, its export to ONNX/TorchScript and the check of
an exported file in a fresh process.

Modules, lower layers first: ``split_images``, ``torchscript_check``, ``quantisation``,
``export_metadata``, ``export_verifier`` (an exported file checked without trusting it),
``ensemble_module`` (the trained stages as one module), ``export_check`` and
``accuracy_check`` (the export against the eager ensemble), ``export`` (``kt export``).
"""
