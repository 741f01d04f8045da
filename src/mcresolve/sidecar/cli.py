"""``mcresolve sidecar`` (also ``python -m mcresolve.sidecar``): local ports through pools.

::

    mcresolve sidecar --listen 127.0.0.1:9000 consul+query://storage-object-minio
    mcresolve sidecar --listen 127.0.0.1:9000=consul://minio --listen 127.0.0.1:9001=consul://db \\
        --admin 127.0.0.1:9901

On start one line per listener on stdout, ``mcresolve sidecar: forwarding ADDR -> TARGET (MODE)``.
Exit codes: 0 stopped by SIGTERM after draining, 130 stopped by SIGINT (Ctrl-C) after draining,
2 bad arguments (address, port, target, duplicate listen, address in use, Consul settings),
3 unexpected error. Every error is one line on stderr; logs are one ``logfmt`` line per event.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence

from mcresolve.consul.config import ConsulConfig, parse_addresses
from mcresolve.consul.errors import ConsulConfigError
from mcresolve.sidecar.core import DrainPolicy, Sidecar
from mcresolve.sidecar.http_mode import HttpProxyPolicy
from mcresolve.sidecar.logs import log_event, logfmt
from mcresolve.sidecar.spec import (
    MODES,
    Mode,
    SidecarUsageError,
    format_address,
    parse_address,
    parse_listens,
)
from mcresolve.sidecar.tcp_rules import TcpProxyPolicy

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130

#: Policy fields as the options that set them (for error messages).
_FLAGS = {
    "TcpProxyPolicy.max_connections": "--max-connections",
    "DrainPolicy.unready_delay": "--drain-delay",
    "DrainPolicy.grace": "--drain-grace",
}


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Forward local ports to the endpoints of targets (Consul health, prepared "
        "queries, DNS, static lists) through mcresolve's failover pools.",
        epilog="Exit codes: 0 drained after SIGTERM, 2 bad arguments, 3 error, "
        "130 drained after Ctrl-C. See docs/sidecar.md.",
    )
    parser.add_argument("target", nargs="?", help="target of every --listen without '=TARGET'")
    parser.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="ADDR[=TARGET]",
        help="local HOST:PORT to accept on (repeatable; ADDR=TARGET names its own target)",
    )
    parser.add_argument("--mode", choices=MODES, default="tcp", help="tcp (default) or http")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop if installed (auto, the default; mcresolve[uvloop]) or asyncio's",
    )
    parser.add_argument("--admin", metavar="ADDR", help="HOST:PORT of /health and /metrics")
    parser.add_argument(
        "--consul-addr",
        metavar="ADDR",
        help="Consul agent(s) host:port or URL, comma-separated (default: $CONSUL_HTTP_ADDR)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=TcpProxyPolicy().max_connections,
        metavar="N",
        help="client connections at once per listener, either mode; more are reset (default 1024)",
    )
    parser.add_argument(
        "--drain-delay",
        type=float,
        default=DrainPolicy().unready_delay,
        metavar="SECONDS",
        help="on SIGTERM: seconds /health answers 503 before the ports close (default 5)",
    )
    parser.add_argument(
        "--drain-grace",
        type=float,
        default=DrainPolicy().grace,
        metavar="SECONDS",
        help="on SIGTERM: seconds connections may take to finish before they are cut (default 25)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v per-connection events too"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


class _LogfmtFormatter(logging.Formatter):
    """``ts=... level=... event=...``; other loggers' messages as ``event=log msg=...``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        head = f"ts={stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()}"
        message = record.getMessage()
        if record.name == "mcresolve.sidecar" and message.startswith("event="):
            return f"{head} {message}"
        return f"{head} {logfmt('log', logger=record.name, msg=message)}"


def _logging(verbose: int, quiet: bool) -> Callable[[], None]:
    """Log events to stderr as logfmt; returns what puts the previous set-up back (``main``
    may run inside another program, e.g. a test)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogfmtFormatter())
    root, ours = logging.getLogger(), logging.getLogger("mcresolve.sidecar")
    saved = (root.handlers[:], root.level, ours.level)
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    ours.setLevel(logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO))

    def restore() -> None:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])

    return restore


def _consul(consul_addr: str | None) -> ConsulConfig:
    config = ConsulConfig.from_env()
    if consul_addr is not None:
        scheme = config.addresses[0].scheme
        config = config.with_options(
            addresses=parse_addresses(consul_addr, scheme, "--consul-addr")
        )
    if config.uses_tls:
        config.ssl_context()
    return config


def _build(args: argparse.Namespace) -> Sidecar:
    mode: Mode = args.mode
    specs = parse_listens(args.listen, args.target, mode)
    admin = None if args.admin is None else parse_address(args.admin, "--admin")
    if admin is not None and admin[1] != 0 and admin in {s.listen for s in specs}:
        raise SidecarUsageError(f"--admin {format_address(admin)} is also a --listen address")
    try:
        tcp = TcpProxyPolicy(max_connections=args.max_connections)
        http = HttpProxyPolicy(max_connections=args.max_connections)
        drain = DrainPolicy(unready_delay=args.drain_delay, grace=args.drain_grace)
    except (TypeError, ValueError) as error:
        text = str(error)
        for field, flag in _FLAGS.items():
            text = text.replace(field, flag)
        raise SidecarUsageError(text) from None
    return Sidecar(
        specs,
        consul=_consul(args.consul_addr),
        admin=admin,
        tcp_policy=tcp,
        http_policy=http,
        drain=drain,
    )


async def _serve(sidecar: Sidecar) -> int:
    interrupted = False

    def on_signal(signum: int) -> None:
        nonlocal interrupted
        interrupted = interrupted or signum == signal.SIGINT
        sidecar.stop()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with sidecar:
            for spec, listener in zip(sidecar.specs, sidecar.listeners, strict=True):
                print(
                    f"mcresolve sidecar: forwarding {format_address(listener.address)} -> "
                    f"{spec.target} ({spec.mode})",
                    flush=True,
                )
            await sidecar.wait_stopped()
            await sidecar.drain()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def main(argv: Sequence[str] | None = None, prog: str = "mcresolve sidecar") -> int:
    """Run the sidecar until SIGTERM / SIGINT; returns the exit code."""
    parser = _parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    restore_logging = _logging(args.verbose, args.quiet)
    try:
        sidecar = _build(args)
        loop_name, loop_factory = _event_loop(args.loop)
        log_event("start", loop=loop_name)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_serve(sidecar))
    except (SidecarUsageError, ConsulConfigError) as error:
        print(f"{prog}: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: still one line
        print(f"{prog}: unexpected error: {type(error).__name__}: {_one_line(str(error))}",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    finally:
        restore_logging()


def _event_loop(
    choice: str,
) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The loop to run on: uvloop (measured 10-15 % less CPU per request in the http mode,
    docs/benchmarks.md "Sidecar") when installed, unless ``asyncio`` is asked for."""
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SidecarUsageError(
                "--loop uvloop: uvloop is not installed (pip install 'mcresolve[uvloop]')"
            ) from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
