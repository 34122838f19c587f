"""kt: the command-line interface of knowledge-transfer FGVC."""

__version__ = '0.1.0'

# configs/ and tools/ are found by ktcli/resources.py (source tree or installed wheel).
