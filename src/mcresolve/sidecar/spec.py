"""What the sidecar listens on and forwards where: ``--listen`` values, parsed (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcresolve.errors import McResolveError
from mcresolve.sources.target import TargetError, parse_target

__all__ = ["ListenSpec", "SidecarUsageError", "format_address", "parse_address", "parse_listens"]

Mode = Literal["tcp", "http"]
MODES: tuple[Mode, ...] = ("tcp", "http")


class SidecarUsageError(McResolveError, ValueError):
    """A sidecar argument that cannot work (bad address, port, target, duplicate listen)."""


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """One local address forwarded to one target in one mode."""

    listen: tuple[str, int]
    target: str
    mode: Mode = "tcp"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SidecarUsageError(f"mode must be 'tcp' or 'http', got {self.mode!r}")
        host, port = self.listen
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise SidecarUsageError(f"port must be 0..65535, got {port!r}")
        if not host:
            raise SidecarUsageError("listen address needs a host, e.g. 127.0.0.1:9000")
        try:
            parse_target(self.target)
        except TargetError as error:
            raise SidecarUsageError(f"invalid target {self.target!r}: {error}") from None


def parse_address(text: str, what: str = "--listen") -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port); port 0 asks the system for a free one."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise SidecarUsageError(f"{what} {text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise SidecarUsageError(f"{what} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9000")
        if ":" in host:
            raise SidecarUsageError(f"{what} {text!r}: write an IPv6 address as [ADDR]:PORT")
    if not host:
        raise SidecarUsageError(f"{what} {text!r}: the host is missing, e.g. 127.0.0.1:9000")
    if not port_text.isascii() or not port_text.isdigit():
        raise SidecarUsageError(f"{what} {text!r}: the port must be a number 0..65535")
    port = int(port_text)
    if port > 65535:
        raise SidecarUsageError(f"{what} {text!r}: port {port} is out of range 0..65535")
    return host, port


def format_address(address: tuple[Any, ...]) -> str:
    """``host:port`` (``[v6]:port``) of a socket address (an IPv6 one may have 4 fields)."""
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_listens(values: Sequence[str], target: str | None, mode: Mode) -> tuple[ListenSpec, ...]:
    """``--listen`` values (``ADDR`` with the positional ``target``, or ``ADDR=TARGET``) as
    specs; a duplicate address, a missing or unused target is a :class:`SidecarUsageError`."""
    if not values:
        raise SidecarUsageError("give at least one --listen ADDR (or ADDR=TARGET)")
    specs: list[ListenSpec] = []
    seen: set[tuple[str, int]] = set()
    used_default = False
    for value in values:
        address_text, sep, own_target = value.partition("=")
        if not sep:
            if target is None:
                raise SidecarUsageError(
                    f"--listen {value!r} names no target: give ADDR=TARGET or a TARGET argument"
                )
            own_target, used_default = target, True
        elif not own_target:
            raise SidecarUsageError(f"--listen {value!r}: the target after '=' is empty")
        address = parse_address(address_text)
        if address in seen and address[1] != 0:
            raise SidecarUsageError(f"--listen {format_address(address)} is given twice")
        seen.add(address)
        specs.append(ListenSpec(address, own_target, mode))
    if target is not None and not used_default:
        raise SidecarUsageError(
            f"target {target!r} is not used: every --listen names its own target"
        )
    return tuple(specs)
