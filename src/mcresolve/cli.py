"""The ``mcresolve`` command: resolve a target once, or watch it live.

::

    mcresolve resolve consul+query://storage-object-minio
    mcresolve watch storage-object-minio.service.consul --consul-addr 127.0.0.1:8500

Both honour the consul CLI's environment variables (``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_TOKEN``,
TLS variables; :meth:`ConsulConfig.from_env`), ``--consul-addr`` overrides the address.

Exit codes: 0 endpoints found (``resolve``) / clean stop on SIGTERM (``watch``), 1 the target
resolved to no endpoint (``resolve``: the service or query is known but nothing passes), 2 bad
usage (invalid target, bad option or ``CONSUL_*`` variable, a TLS or token file missing or
unreadable), 3 the target could not be resolved (Consul or DNS unreachable, Consul error, no
answer within ``--timeout``), 4 Consul knows no such service or prepared query, 130 interrupted
with Ctrl-C. Every error is one line on stderr naming what is at fault. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulAddress, ConsulConfig, parse_addresses
from mcresolve.consul.errors import ConsulConfigError, ConsulError, NotFound, ServerError
from mcresolve.consul.features import UnsupportedByAgent
from mcresolve.endpoint import Endpoint
from mcresolve.errors import McResolveError
from mcresolve.sources import Resolution, Source, from_target
from mcresolve.sources.target import (
    PREPARED_QUERY_FILTER_REFUSAL,
    HealthTarget,
    PreparedQueryTarget,
    Stage,
    Target,
    TargetError,
    parse_target,
)

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NO_ENDPOINTS",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_UNKNOWN",
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
EXIT_UNKNOWN = 4
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


class UsageError(McResolveError):
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
        "as storage-object-minio.query.consul. Exit codes: 0 ok, 1 no passing endpoint, "
        "2 usage or configuration, 3 unreachable/error/timeout, 4 unknown service or query, "
        "130 interrupted.",
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
    common.add_argument(
        "--filter",
        metavar="EXPR",
        help="consul:// targets: a Consul filter expression (Consul 1.5+), e.g. "
        "'Service.Meta.version == \"2\"'; the same as the target's filter= option",
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
    sub.add_parser(
        "sidecar",
        add_help=False,
        help="forward local ports to a target's endpoints (mcresolve sidecar --help)",
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
    config = config.with_options(
        connect_timeout=min(config.connect_timeout, timeout * 0.75),
        request_timeout=timeout * 0.75,
    )
    if config.uses_tls:
        config.ssl_context()  # a CA or client certificate that cannot be loaded: usage error now
    return config


def _agent_config(spec: Target, config: ConsulConfig) -> ConsulConfig:
    """The configuration for extra calls about ``spec``: its own agent when it names one."""
    agent = getattr(spec, "agent", None)
    if agent is None:
        return config
    scheme = config.addresses[0].scheme
    return config.with_options(addresses=(ConsulAddress.parse(str(agent), scheme),))


def _agents(config: ConsulConfig) -> str:
    return ", ".join(a.base_url for a in config.addresses)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How the command ends: exit code and the line for stderr."""

    code: int
    message: str


def failure_exit(spec: Target, source: str, error: Exception) -> ExitStatus:
    """The exit code and message when the first resolution failed with ``error`` (pure)."""
    if isinstance(spec, PreparedQueryTarget) and (
        isinstance(error, NotFound) or (isinstance(error, ServerError) and error.query_not_found)
    ):
        agent = getattr(error, "agent", "") or "Consul"
        return ExitStatus(
            EXIT_UNKNOWN, f"unknown prepared query {spec.query!r}: {agent} has no such query"
        )
    if isinstance(error, UnsupportedByAgent):  # an option this agent's Consul cannot honour
        return ExitStatus(EXIT_USAGE, f"cannot resolve {source}: {error}")
    return ExitStatus(EXIT_UNAVAILABLE, f"cannot resolve {source}: {error}")


def empty_exit(
    spec: Target, source: str, known: bool | None, instances: int | None, agents: str
) -> ExitStatus:
    """The exit code and message when the target resolved to no endpoint (pure).

    ``known``: whether Consul's catalog lists the service (``None``: not asked, or the
    question failed); ``instances``: how many instances it has regardless of health.
    """
    if isinstance(spec, HealthTarget):
        dc = f" in datacenter {spec.dc!r}" if spec.dc else ""
        if known is False:
            return ExitStatus(
                EXIT_UNKNOWN,
                f"unknown service {spec.service!r}: Consul ({agents}) knows no such service{dc}",
            )
        tag = f" with tag {spec.tag!r}" if spec.tag else ""
        if known is None:
            count = " (Consul could not be asked whether it knows the service)"
        else:
            count = "" if instances is None else f" ({instances} instance(s), none passing)"
        return ExitStatus(
            EXIT_NO_ENDPOINTS,
            f"service {spec.service!r}{dc} has no passing instance{tag}{count}",
        )
    if isinstance(spec, PreparedQueryTarget):
        return ExitStatus(
            EXIT_NO_ENDPOINTS,
            f"prepared query {spec.query!r} found no instance without a critical check "
            "(in any datacenter its failover allows)",
        )
    return ExitStatus(EXIT_NO_ENDPOINTS, f"{source} has no endpoint")


async def _why_empty(spec: Target, source: str, config: ConsulConfig) -> ExitStatus:
    """Ask Consul whether an empty stage-2 answer means an unknown service or one whose
    instances all fail; other targets need no question."""
    if not isinstance(spec, HealthTarget):
        return empty_exit(spec, source, None, None, _agents(config))
    known: bool | None = None
    instances: int | None = None
    try:
        async with ConsulClient(config) as client:
            services = await client.catalog_services(dc=spec.dc)
            known = spec.service in services.value
            if known:
                tags = (spec.tag,) if spec.tag else ()
                listed = await client.health_service(  # the target's own selection
                    spec.service,
                    tags=tags,
                    dc=spec.dc,
                    node_meta=dict(spec.node_meta),
                    filter=spec.filter,
                    ns=spec.ns,
                    partition=spec.partition,
                )
                instances = len(listed.value)
    except ConsulError as error:
        logging.getLogger("mcresolve.cli").info("cannot tell why %s is empty: %s", source, error)
    return empty_exit(spec, source, known, instances, _agents(config))


@dataclass(frozen=True, slots=True)
class _Setup:
    spec: Target
    source: Source
    #: The Consul configuration the target uses (its own agent when it names one).
    consul: ConsulConfig | None


def _build(args: argparse.Namespace) -> _Setup:
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {args.timeout!r}")
    try:
        spec = parse_target(args.target)
    except TargetError as error:
        raise UsageError(f"invalid target {args.target!r}: {error}") from None
    spec = _with_filter(spec, getattr(args, "filter", None))
    try:
        config = consul_config(args.consul_addr, args.timeout)
        source = from_target(spec, consul=config)
        if not isinstance(spec, HealthTarget | PreparedQueryTarget):
            return _Setup(spec, source, None)
        return _Setup(spec, source, _agent_config(spec, config))
    except ConsulConfigError as error:
        raise UsageError(f"Consul configuration: {error}") from None


def _with_filter(spec: Target, expression: str | None) -> Target:
    """``spec`` with ``--filter`` applied (consul:// targets only; not beside a filter= option)."""
    if expression is None:
        return spec
    if isinstance(spec, PreparedQueryTarget):
        raise UsageError(f"--filter: {PREPARED_QUERY_FILTER_REFUSAL}")
    if not isinstance(spec, HealthTarget):
        raise UsageError("--filter applies to consul://<service> targets only")
    if spec.filter is not None:
        raise UsageError("--filter given and the target has a filter= option; give one of them")
    try:
        return dataclasses.replace(spec, filter=expression)
    except TargetError as error:
        raise UsageError(f"--filter: {error}") from None


def _no_answer(setup: _Setup, within: float) -> str:
    """The message for a first answer that did not come in time, naming the agent(s)."""
    where = "" if setup.consul is None else f" from Consul ({_agents(setup.consul)})"
    return f"no answer for {setup.source.description}{where} within {within:g} s"


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
    setup = _build(args)
    spec, source = setup.spec, setup.source
    await _start(source)
    try:
        resolution = await _first(source, args.timeout)
    except TimeoutError:
        _print(err, [f"mcresolve: {_no_answer(setup, args.timeout)}"])
        return EXIT_UNAVAILABLE
    finally:
        await _stop(source)
    now = time.time()
    if resolution.error is not None and not resolution.endpoints:
        failed = failure_exit(spec, resolution.source, resolution.error)
        _print(err, [f"mcresolve: {failed.message}"])
        return failed.code
    if args.json:
        _print(out, [json.dumps(resolution_json(resolution, now))])
    else:
        _print(out, [*endpoint_table(resolution.endpoints), ""])
        _print(out, describe_resolution(resolution, spec.stage, now))
    if not resolution.endpoints:
        if setup.consul is None:
            empty = empty_exit(spec, resolution.source, None, None, "")
        else:
            empty = await _why_empty(spec, resolution.source, setup.consul)
        _print(err, [f"mcresolve: {empty.message}"])
        return empty.code
    return EXIT_OK


async def _start(source: Source) -> None:
    """Start the source; a Consul setting found wrong only now is a usage error."""
    try:
        await source.start()
    except ConsulConfigError as error:
        await _stop(source)
        raise UsageError(f"Consul configuration: {error}") from None


async def _watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    setup = _build(args)
    spec, source = setup.spec, setup.source
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
        await _start(source)
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
                except TimeoutError:
                    _print(err, [f"mcresolve: {_no_answer(setup, args.timeout)}"])
                    return EXIT_UNAVAILABLE
                if resolution.error is not None and not resolution.endpoints:
                    failed = failure_exit(spec, resolution.source, resolution.error)
                    _print(err, [f"mcresolve: {failed.message}"])
                    return failed.code
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
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["sidecar"]:
        from mcresolve.sidecar.cli import main as sidecar_main

        return sidecar_main(arguments[1:])
    parser = _parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    command = _resolve if args.command == "resolve" else _watch
    level = {0: logging.CRITICAL + 1, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="mcresolve: %(levelname)s %(name)s: %(message)s")
    try:
        return _run(command(args, sys.stdout, sys.stderr))
    except UsageError as error:
        print(f"mcresolve: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except ConsulConfigError as error:
        print(f"mcresolve: Consul configuration: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: still one line (the traceback with -vv)
        logging.getLogger("mcresolve.cli").debug("unexpected error", exc_info=True)
        what = f"{type(error).__name__}: {_one_line(str(error))}"
        print(f"mcresolve: unexpected error: {what} (-vv shows where)", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _one_line(text: str) -> str:
    """``text`` as one printable line (control characters escaped)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
