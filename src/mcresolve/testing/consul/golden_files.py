"""Where the Consul 1.0.8 golden recordings are (``consul-golden/*.json``).

They are not shipped with the package: ``MCRESOLVE_CONSUL_GOLDEN`` names the folder, else a
``shared/consul-golden`` folder beside the source checkout is used. A missing folder is an
error, never a reason to skip.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["golden_dir"]

_ENV = "MCRESOLVE_CONSUL_GOLDEN"
# src/mcresolve/testing/consul/golden_files.py -> the checkout's root is four levels up.
_CHECKOUT = Path(__file__).resolve().parents[4]


def golden_dir() -> Path:
    """The folder holding the recordings; raises :class:`FileNotFoundError` saying where it
    looked when there is none."""
    override = os.environ.get(_ENV)
    candidates = (
        [Path(override)]
        if override
        else [
            Path.cwd().parent / "shared" / "consul-golden",
            _CHECKOUT.parent / "shared" / "consul-golden",
        ]
    )
    for candidate in candidates:
        if (candidate / "README.md").is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"Consul golden recordings not found (looked in {looked}); set {_ENV} to their folder"
    )
