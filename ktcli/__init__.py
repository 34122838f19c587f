"""kt: the command-line interface of knowledge-transfer FGVC."""
from pathlib import Path

__version__ = '0.1.0'

# The folder holding configs/, tools/ and registry_plugins/ beside this package.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
