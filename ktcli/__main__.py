"""python -m ktcli: the kt command."""
from .main import app

app(prog_name="kt")
