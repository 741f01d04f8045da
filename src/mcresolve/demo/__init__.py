"""The demo: the reference article's multi-cloud store, brought up on loopback and broken on
purpose while live traffic runs. Run it with ``python -m mcresolve.demo`` (or
``bash scripts/demo.sh``); see ``docs/demo.md``."""
