"""The I/O of HTTP and TCP health checks, with Consul 1.0.8's status mapping and Output texts."""

from __future__ import annotations

import asyncio
import contextlib
import http

import aiohttp

from .catalog import CRITICAL, PASSING, WARNING

#: Consul reads at most this much of a check's HTTP body into the Output.
BODY_LIMIT = 4096


def http_status_to_check(code: int) -> str:
    """2xx is passing, 429 warning, anything else critical."""
    if 200 <= code < 300:
        return PASSING
    if code == 429:
        return WARNING
    return CRITICAL


def _reason(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return ""


def _go_dial_error(host: str, exc: BaseException) -> str:
    text = str(exc).lower()
    if isinstance(exc, ConnectionRefusedError) or "refused" in text:
        return f"dial tcp {host}: connect: connection refused"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"dial tcp {host}: i/o timeout"
    return f"dial tcp {host}: {exc}"


async def http_probe(
    session: aiohttp.ClientSession,
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    time_limit: float = 10.0,
) -> tuple[str, str]:
    """Run one HTTP check; returns ``(status, output)`` as Consul would record them."""
    try:
        async with session.request(
            method,
            url,
            headers={"User-Agent": "Consul Health Check", "Accept": "text/plain, text/*, */*"}
            | (headers or {}),
            timeout=aiohttp.ClientTimeout(total=time_limit),
            allow_redirects=False,
        ) as resp:
            body = await resp.content.read(BODY_LIMIT)
            output = f"{method} {url}: {resp.status} {_reason(resp.status)} Output: "
            output = "HTTP " + output + body.decode("utf-8", errors="replace")
            return http_status_to_check(resp.status), output
    except TimeoutError:
        return (
            CRITICAL,
            f"Get {url}: net/http: request canceled (Client.Timeout exceeded while awaiting "
            "headers)",
        )
    except aiohttp.ClientConnectorError as exc:
        host = f"{exc.host}:{exc.port}"
        return CRITICAL, f"Get {url}: {_go_dial_error(host, exc.os_error)}"
    except (aiohttp.ClientError, OSError) as exc:
        return CRITICAL, f"Get {url}: {exc}"


async def tcp_probe(address: str, *, time_limit: float = 10.0) -> tuple[str, str]:
    """Run one TCP check (connect, then close); returns ``(status, output)``."""
    host, _, port = address.rpartition(":")
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), time_limit
        )
    except (OSError, TimeoutError, ValueError) as exc:
        return CRITICAL, _go_dial_error(address, exc)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return PASSING, f"TCP connect {address}: Success"
