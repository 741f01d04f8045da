"""Command line of the demo:
``python -m mcresolve.demo [--quick] [--wide] [--keep-running] [--json PATH]
[--consul-profile 1.0.8|1.21|2.x]``.

Exit status: 0 when every scenario behaved as the article says, 1 when one did not, 2 when the
demo could not run (set-up failed), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from mcresolve.testing.consul.profile import profile_for
from mcresolve.testing.topology import MultiCloudTopology

from .processes import ProcessError, kill_now
from .report import PhaseResult, render_table, results_document
from .runner import Demo, DemoOptions
from .scenarios import battery


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    keys = [s.key for s in battery()]
    parser = argparse.ArgumentParser(
        prog="python -m mcresolve.demo",
        description="Bring up two emulated Consul datacenters (aws-like dc1, gcp-like dc2), a "
        "real SeaweedFS cluster split across them and storefronts in each, then break things "
        "under live traffic and compare with what the reference article says should happen.",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the battery, stop the demo's traffic but keep Consul, storage and the "
        "storefronts up and print their URLs until Ctrl-C",
    )
    parser.add_argument("--quick", action="store_true", help="short observation windows")
    parser.add_argument(
        "--wide",
        action="store_true",
        help="one wide table with every cell (the article's words, mismatch reasons) in "
        "columns (about 190 columns) instead of the compact 120-column table",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also write the results as JSON to PATH (its folder must exist)",
    )
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated subset to run (default all): {','.join(keys)}",
    )
    parser.add_argument(
        "--no-battery", action="store_true", help="bring everything up, skip the battery"
    )
    parser.add_argument(
        "--consul-profile",
        default="1.0.8",
        metavar="VERSION",
        help="which Consul the emulated agents answer like: 1.0.8 (the recorded default), "
        "1.21 or 2.x (today's Community Edition: its answer shapes, headers, streaming)",
    )
    args = parser.parse_args(argv)
    try:
        profile_for(args.consul_profile)
    except ValueError as error:
        parser.error(f"--consul-profile: {error}")
    if args.scenarios:
        chosen = tuple(k.strip() for k in args.scenarios.split(",") if k.strip())
        unknown = sorted(set(chosen) - set(keys))
        if unknown:
            parser.error(f"unknown scenarios {unknown}; known: {keys}")
        args.scenarios = chosen
    if args.json is not None:
        problem = json_path_problem(args.json)
        if problem:
            parser.error(f"--json {args.json}: {problem}")
    return args


def json_path_problem(path: Path) -> str:
    """Why ``--json PATH`` cannot be written ('' when it can): checked before the run, so a
    typo does not cost a whole battery, and no folder is ever created."""
    if path.is_dir():
        return "is a folder; give a file name"
    if not path.parent.is_dir():
        return f"folder {path.parent} does not exist (create it first)"
    if not os.access(path.parent, os.W_OK):
        return f"folder {path.parent} is not writable"
    return ""


def _print_results(results: list[PhaseResult], wall: float, *, wide: bool) -> int:
    """Print the table and the verdict; the exit status they call for (0 or 1)."""
    print("", flush=True)
    print(render_table(results, wide=wide), flush=True)
    mismatches = [r for r in results if not r.ok]
    verdict = (
        "every scenario behaved as the article says"
        if not mismatches
        else f"{len(mismatches)} phase(s) did NOT behave as the article says"
    )
    print(f"\n{verdict}; demo wall time {wall:.0f} s", flush=True)
    return 0 if not mismatches else 1


def _setup_document(demo: Demo) -> dict[str, object]:
    """What the demo brought up, for the JSON results: storefronts and Consul addresses."""
    return {
        "storefronts": [
            {
                "datacenter": sf.datacenter,
                "service": sf.service,
                "url": sf.url,
                "minio_host": sf.target,
            }
            for sf in demo.storefronts
        ],
        "consul": {dc: demo.stack.consul.dc(dc).http_url for dc in demo.stack.datacenters},
        "consul_profile": demo.stack.consul_version,
    }


async def _keep_running(demo: Demo) -> None:
    """Stop the demo's traffic, print where everything is, and wait until cancelled."""
    uploads = await demo.stop_traffic()
    print(
        f"demo traffic stopped ({uploads} uploads made to the bucket demo-writes); "
        "Consul, storage and the storefronts stay up",
        flush=True,
    )
    for sf in demo.storefronts:
        print(f"storefront {sf.datacenter} ({sf.service}): {sf.url}", flush=True)
    for dc in demo.stack.datacenters:
        print(
            f"Consul {dc}: {demo.stack.consul.dc(dc).http_url}/v1/catalog/services",
            flush=True,
        )
    print("running; Ctrl-C stops everything", flush=True)
    await asyncio.Event().wait()


async def _run(args: argparse.Namespace) -> int:
    options = DemoOptions.quick() if args.quick else DemoOptions()
    if args.scenarios:
        options = DemoOptions(**{**vars(options), "scenarios": args.scenarios})
    try:
        demo = Demo(options, topology=MultiCloudTopology(consul_version=args.consul_profile))
    except ProcessError as error:
        print(f"demo: {error}", file=sys.stderr, flush=True)
        return 2
    atexit.register(kill_now, demo.children)
    began = time.monotonic()
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, lambda: main_task.cancel() if main_task else None)
    code = 0
    try:
        try:
            await demo.setup()
        except Exception as error:
            demo.say(f"set-up failed: {error}")
            return 2
        results = [] if args.no_battery else await demo.run_battery(battery())
        wall = time.monotonic() - began
        if results:
            code = _print_results(results, wall, wide=args.wide)
        if args.json:
            document = results_document(results, wall_seconds=wall, setup=_setup_document(demo))
            args.json.write_text(json.dumps(document, indent=2) + "\n")
            print(f"results written to {args.json.resolve()}", flush=True)
        if args.keep_running:
            await _keep_running(demo)
    except asyncio.CancelledError:
        demo.say("interrupted, stopping everything")
        code = 130
    finally:
        await asyncio.shield(demo.close())
        demo.say("stopped")
    return code


class RepeatFilter(logging.Filter):
    """Lets each log message template through ``limit`` times (a stopped Consul agent makes
    every watch log the same failure again and again)."""

    def __init__(self, limit: int = 2) -> None:
        super().__init__()
        self.limit = limit
        self._seen: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        self._seen[key] = self._seen.get(key, 0) + 1
        return self._seen[key] <= self.limit


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mcresolve.demo``."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="           log %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130
