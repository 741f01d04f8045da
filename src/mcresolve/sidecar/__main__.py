"""``python -m mcresolve.sidecar``: the same as ``mcresolve sidecar``."""

import sys

from mcresolve.sidecar.cli import main

sys.exit(main(prog="python -m mcresolve.sidecar"))
