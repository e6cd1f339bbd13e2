"""`python -m pycontainer`: the runc-compatible command line (pycontainer.cli)."""
from pycontainer.cli import entry

entry()
