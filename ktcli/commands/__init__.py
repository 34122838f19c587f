"""One module per ``kt`` command (``train``, ``ablate``, ``ensemble``, ``visualize``,
``export``, ``predict``, ``data``) and the training options they share."""
