"""``python -m mcresolve.demo``: bring up the emulated multi-cloud topology and report on it."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
