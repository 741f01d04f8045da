"""Sidecar http-mode tests: a scriptable h11 origin (``upstream.py``) and real sockets."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
