"""kt: the command-line interface of knowledge-transfer FGVC."""
__version__ = '0.1.0'
