"""The ``mcresolve`` command: resolve a target once, or watch it live.

::

    mcresolve resolve consul+query://storage-object-minio
    mcresolve watch storage-object-minio.service.consul --consul-addr 127.0.0.1:8500

Both honour the consul CLI's environment variables (``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_TOKEN``,
TLS variables; :meth:`ConsulConfig.from_env`), ``--consul-addr`` overrides the address.

Exit codes: 0 endpoints found (``resolve``) / clean stop on SIGTERM (``watch``), 1 the target
resolved to no endpoint (``resolve``), 2 bad usage (invalid target, bad option or ``CONSUL_*``
variable), 3 the target could not be resolved (Consul or DNS unreachable, Consul error, no
answer within ``--timeout``), 130 interrupted with Ctrl-C. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from mcresolve.consul.config import ConsulConfig, parse_addresses
from mcresolve.consul.errors import ConsulConfigError
from mcresolve.endpoint import Endpoint
from mcresolve.sources import Resolution, Source, from_target
from mcresolve.sources.target import Stage, Target, TargetError, parse_target

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NO_ENDPOINTS",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Change",
    "diff_endpoints",
    "endpoint_table",
    "main",
]

EXIT_OK = 0
EXIT_NO_ENDPOINTS = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
#: Upper bound on stopping the source when the command ends.
STOP_GRACE_S = 2.0

#: What each stage's endpoints say about health (the footer of the table).
HEALTH_NOTE: dict[Stage, str] = {
    Stage.STATIC: "not checked (static list)",
    Stage.DNS: "Consul DNS answers only instances without a critical check",
    Stage.HEALTH: "passing instances only (health API ?passing)",
    Stage.PREPARED_QUERY: "instances without a critical check (prepared query, with failover)",
}

_COLUMNS = ("ADDRESS", "PORT", "NODE", "DC", "SERVICE ID", "TAGS")


class UsageError(Exception):
    """Bad command-line input (exit 2)."""


# --- pure formatting ---------------------------------------------------------------------------


def _row(endpoint: Endpoint) -> tuple[str, ...]:
    return (
        endpoint.address,
        str(endpoint.port),
        endpoint.node or "-",
        endpoint.datacenter or "-",
        endpoint.service_id or "-",
        ",".join(endpoint.tags) or "-",
    )


def endpoint_table(endpoints: Sequence[Endpoint]) -> list[str]:
    """The endpoints as aligned text lines, header first."""
    rows = [_COLUMNS, *(_row(e) for e in endpoints)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def describe_resolution(resolution: Resolution, stage: Stage, now: float) -> list[str]:
    """Footer lines: where the endpoints come from, their age and health meaning."""
    flags = [f for f, on in (("stale", resolution.stale), ("fallback", resolution.fallback)) if on]
    lines = [
        f"source: {resolution.source}",
        f"datacenter: {resolution.datacenter or '-'}",
        f"age: {resolution.age(now):.1f} s" + (f" [{', '.join(flags)}]" if flags else ""),
        f"health: {HEALTH_NOTE[stage]}",
    ]
    if resolution.error is not None:
        lines.append(f"last error: {resolution.error}")
    return lines


def resolution_json(resolution: Resolution, now: float) -> dict[str, Any]:
    """A resolution as JSON (``mcresolve resolve --json``, one line per change in ``watch``)."""
    return {
        "endpoints": [e.to_json() for e in resolution.endpoints],
        "source": resolution.source,
        "datacenter": resolution.datacenter,
        "age": round(resolution.age(now), 3),
        "stale": resolution.stale,
        "fallback": resolution.fallback,
        "error": None if resolution.error is None else str(resolution.error),
    }


@dataclass(frozen=True, slots=True)
class Change:
    """The difference between two endpoint sets: ``added``, ``removed`` and ``changed``
    (same address and port, other node/datacenter/tags/meta)."""

    added: tuple[Endpoint, ...]
    removed: tuple[Endpoint, ...]
    changed: tuple[Endpoint, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def diff_endpoints(before: Sequence[Endpoint], after: Sequence[Endpoint]) -> Change:
    """What changed from ``before`` to ``after`` (order ignored; keyed by address and port)."""
    old = {e.key: e for e in before}
    new = {e.key: e for e in after}
    return Change(
        added=tuple(e for k, e in new.items() if k not in old),
        removed=tuple(e for k, e in old.items() if k not in new),
        changed=tuple(e for k, e in new.items() if k in old and _details(old[k]) != _details(e)),
    )


def _details(endpoint: Endpoint) -> tuple[Any, ...]:
    return (
        endpoint.node,
        endpoint.datacenter,
        endpoint.service_id,
        endpoint.tags,
        tuple(sorted(endpoint.meta.items())),
    )


def _line(mark: str, endpoint: Endpoint) -> str:
    address, port, node, dc, service_id, tags = _row(endpoint)
    return f"  {mark} {address}:{port}  node={node} dc={dc} id={service_id} tags={tags}"


def change_lines(change: Change) -> list[str]:
    """``+``/``-``/``~`` lines for a change."""
    return (
        [_line("+", e) for e in change.added]
        + [_line("-", e) for e in change.removed]
        + [_line("~", e) for e in change.changed]
    )


def _clock(wall: float) -> str:
    local = time.localtime(wall)
    return time.strftime("%H:%M:%S", local) + f".{int((wall % 1) * 1000):03d}"


# --- arguments and configuration ------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcresolve",
        description="Resolve service endpoints through Consul (DNS, health watch, prepared "
        "query) or a static list, as mcresolve does.",
        epilog="Targets: consul://<service>, consul+query://<query>, "
        "dns://<name>?server=<ip:port>, static://<host:port,...>, or a Consul DNS name such "
        "as storage-object-minio.query.consul. Exit codes: 0 ok, 1 no endpoint, 2 usage, "
        "3 unreachable/error/timeout, 130 interrupted.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("target", help="what to resolve (see docs/cli.md)")
    common.add_argument(
        "--consul-addr",
        metavar="ADDR",
        help="Consul agent(s) host:port or URL, comma-separated (default: $CONSUL_HTTP_ADDR)",
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up when no answer came within this time (default 10)",
    )
    common.add_argument("--json", action="store_true", help="JSON output")
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log to stderr: -v warnings and info (retries, failover), -vv debug",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "resolve", parents=[common], help="print the current endpoints as a table and exit"
    )
    sub.add_parser(
        "watch", parents=[common], help="print the endpoints, then every change until Ctrl-C"
    )
    return parser


def consul_config(consul_addr: str | None, timeout: float) -> ConsulConfig:
    """The Consul configuration: the environment's, the address overridden by
    ``--consul-addr``, each call bounded by 3/4 of ``timeout`` (so that a silent agent shows
    up as a call error before the command's own deadline). Raises :class:`ConsulConfigError`."""
    config = ConsulConfig.from_env()
    if consul_addr is not None:
        scheme = config.addresses[0].scheme
        config = config.with_options(
            addresses=parse_addresses(consul_addr, scheme, "--consul-addr")
        )
    return config.with_options(
        connect_timeout=min(config.connect_timeout, timeout * 0.75),
        request_timeout=timeout * 0.75,
    )


def _build(args: argparse.Namespace) -> tuple[Target, Source]:
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {args.timeout!r}")
    try:
        spec = parse_target(args.target)
    except TargetError as error:
        raise UsageError(f"invalid target {args.target!r}: {error}") from None
    try:
        config = consul_config(args.consul_addr, args.timeout)
        return spec, from_target(spec, consul=config)
    except ConsulConfigError as error:
        raise UsageError(f"Consul configuration: {error}") from None


# --- commands --------------------------------------------------------------------------------


async def _first(source: Source, within: float) -> Resolution:
    """The first resolution that is an answer or an error, within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            async for resolution in source.updates():
                if resolution.ok or resolution.error is not None:
                    return resolution
    except TimeoutError:
        pass
    raise TimeoutError(f"no answer for {source.description} within {within:g} s")


async def _stop(source: Source) -> None:
    """Stop the source, bounded: the command must end even if a source does not stop."""
    try:
        async with asyncio.timeout(STOP_GRACE_S):
            await source.aclose()
    except TimeoutError:
        logging.getLogger("mcresolve.cli").warning("%s did not stop in time", source)


def _run(command: Coroutine[Any, Any, int]) -> int:
    """Like :func:`asyncio.run`, but the clean-up of left-over tasks is bounded too (a task
    that ignores cancellation must not keep the command from exiting)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(command)
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=STOP_GRACE_S))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _print(out: TextIO, lines: Sequence[str]) -> None:
    for line in lines:
        out.write(line + "\n")
    out.flush()


async def _resolve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    spec, source = _build(args)
    await source.start()
    try:
        resolution = await _first(source, args.timeout)
    except TimeoutError as error:
        _print(err, [f"mcresolve: {error}"])
        return EXIT_UNAVAILABLE
    finally:
        await _stop(source)
    now = time.time()
    if resolution.error is not None and not resolution.endpoints:
        _print(err, [f"mcresolve: cannot resolve {resolution.source}: {resolution.error}"])
        return EXIT_UNAVAILABLE
    if args.json:
        _print(out, [json.dumps(resolution_json(resolution, now))])
    else:
        _print(out, [*endpoint_table(resolution.endpoints), ""])
        _print(out, describe_resolution(resolution, spec.stage, now))
    if not resolution.endpoints:
        _print(err, [f"mcresolve: {resolution.source} has no endpoint"])
        return EXIT_NO_ENDPOINTS
    return EXIT_OK


async def _watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    spec, source = _build(args)
    stop = asyncio.Event()
    interrupted = False

    def on_signal(signum: int) -> None:
        nonlocal interrupted
        interrupted = interrupted or signum == signal.SIGINT
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await source.start()
        try:
            stopping = asyncio.ensure_future(stop.wait())
            try:
                first = asyncio.ensure_future(_first(source, args.timeout))
                await asyncio.wait({first, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not first.done():
                    first.cancel()
                    return EXIT_INTERRUPTED if interrupted else EXIT_OK
                try:
                    resolution = first.result()
                except TimeoutError as error:
                    _print(err, [f"mcresolve: {error}"])
                    return EXIT_UNAVAILABLE
                if resolution.error is not None and not resolution.endpoints:
                    _print(
                        err,
                        [f"mcresolve: cannot resolve {resolution.source}: {resolution.error}"],
                    )
                    return EXIT_UNAVAILABLE
                await _follow(source, spec, resolution, stopping, out, args.json)
            finally:
                stopping.cancel()
        finally:
            await _stop(source)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


async def _follow(
    source: Source,
    spec: Target,
    first: Resolution,
    stopping: asyncio.Future[Any],
    out: TextIO,
    as_json: bool,
) -> None:
    """Print ``first`` in full, then every change until ``stopping`` completes."""
    now = time.time()
    if as_json:
        _print(out, [json.dumps(resolution_json(first, now))])
    else:
        _print(out, [f"{_clock(now)}  {len(first.endpoints)} endpoint(s)"])
        _print(out, [*endpoint_table(first.endpoints), ""])
        _print(out, describe_resolution(first, spec.stage, now))
    previous = first
    updates = source.updates()
    try:
        while True:
            following = asyncio.ensure_future(anext(updates))
            await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                return
            try:
                resolution = following.result()
            except StopAsyncIteration:
                return
            if resolution is previous:
                continue
            _print(out, _change_report(previous, resolution, as_json))
            previous = resolution
    finally:
        await updates.aclose()  # type: ignore[attr-defined]


def _change_report(previous: Resolution, current: Resolution, as_json: bool) -> list[str]:
    now = time.time()
    change = diff_endpoints(previous.endpoints, current.endpoints)
    state_changed = (previous.error is None) != (current.error is None) or (
        previous.datacenter != current.datacenter
        or previous.stale != current.stale
        or previous.fallback != current.fallback
    )
    if not change and not state_changed:
        return []
    if as_json:
        return [json.dumps(resolution_json(current, now))]
    where = f" from {current.datacenter}" if current.datacenter else ""
    flags = [f for f, on in (("stale", current.stale), ("fallback", current.fallback)) if on]
    head = f"{_clock(now)}  {len(current.endpoints)} endpoint(s){where}"
    if flags:
        head += f" [{', '.join(flags)}]"
    if previous.datacenter != current.datacenter:
        head += f"  datacenter {previous.datacenter or '-'} -> {current.datacenter or '-'}"
    lines = [head, *change_lines(change)]
    if current.error is not None:
        lines.append(f"  ! {current.error} (keeping the last known endpoints)")
    elif previous.error is not None:
        lines.append("  recovered")
    return lines


# --- entry point -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    command = _resolve if args.command == "resolve" else _watch
    level = {0: logging.CRITICAL + 1, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="mcresolve: %(levelname)s %(name)s: %(message)s")
    try:
        return _run(command(args, sys.stdout, sys.stderr))
    except UsageError as error:
        print(f"mcresolve: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
