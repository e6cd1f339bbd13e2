"""`python -m pycontainer`: the runc-compatible command line (pycontainer.cli)."""
import sys

from pycontainer.cli import main

sys.exit(main())
