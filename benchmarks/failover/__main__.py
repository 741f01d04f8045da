"""``python -m benchmarks.failover [--quick] [--out DIR] ...``: run, then write the results."""

from benchmarks.failover.cli import main

raise SystemExit(main())
