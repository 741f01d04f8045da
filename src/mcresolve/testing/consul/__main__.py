"""Run an emulated Consul from the command line and print its ports.

    python -m mcresolve.testing.consul --datacenters dc1,dc2 [--rtt dc1:dc2:40] [--time-scale 1]
        [--version 1.21]

Then ``curl http://127.0.0.1:<port>/v1/catalog/datacenters`` or
``dig @127.0.0.1 -p <dns-port> consul.service.consul SRV``. Stops on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from .emulator import ConsulEmulator


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mcresolve.testing.consul")
    parser.add_argument("--datacenters", default="dc1", help="comma-separated names (dc1,dc2)")
    parser.add_argument(
        "--rtt", action="append", default=[], help="round-trip time a:b:ms, repeatable"
    )
    parser.add_argument("--http-port", action="append", default=[], help="dc:port, repeatable")
    parser.add_argument("--dns-port", action="append", default=[], help="dc:port, repeatable")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument(
        "--version",
        default="1.0.8",
        help="Consul to answer like: 1.0.8 (recorded, default), 1.21 or 2.x; "
        "or per datacenter dc1=1.21,dc2=1.0.8",
    )
    parser.add_argument("--json", action="store_true", help="print the ports as one JSON line")
    return parser.parse_args(argv)


def _pairs(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, port = item.partition(":")
        out[name] = int(port)
    return out


def _versions(text: str) -> str | dict[str, str]:
    if "=" not in text:
        return text
    return dict(item.split("=", 1) for item in text.split(",") if item)


async def _main(args: argparse.Namespace) -> None:
    names = [n.strip() for n in args.datacenters.split(",") if n.strip()]
    rtt = {}
    for item in args.rtt:
        a, b, ms = item.split(":")
        rtt[(a, b)] = float(ms)
    emulator = ConsulEmulator(
        names,
        rtt_ms=rtt,
        http_ports=_pairs(args.http_port),
        dns_ports=_pairs(args.dns_port),
        time_scale=args.time_scale,
        version=_versions(args.version),
    )
    await emulator.start()
    try:
        info = {
            name: {
                "node": emulator.dc(name).agent_node,
                "http": emulator.dc(name).http_url,
                "dns_port": emulator.dc(name).dns_port,
            }
            for name in names
        }
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            for name, item in info.items():
                print(
                    f"{name}: node {item['node']} HTTP {item['http']} DNS 127.0.0.1:"
                    f"{item['dns_port']} (udp+tcp)",
                    flush=True,
                )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await emulator.aclose()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    asyncio.run(_main(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
