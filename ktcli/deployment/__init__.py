"""Deployment: the ensemble as one module, its export to ONNX/TorchScript and the check of
an exported file in a fresh process."""
