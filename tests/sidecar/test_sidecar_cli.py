"""``mcresolve sidecar`` / ``python -m mcresolve.sidecar``: one-line errors with exit 2 for bad
arguments, and a real process forwarding, answering /health and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator

import pytest
from sidecar_upstreams import answering, serving

from mcresolve import cli
from mcresolve.sidecar import SidecarUsageError
from mcresolve.sidecar import cli as sidecar_cli

SECRET = "5ecret-t0ken-never-shown"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


ERRORS = [
    (["--listen", "127.0.0.1:65536", "static://127.0.0.1:1"], "port 65536 is out of range"),
    (["--listen", "127.0.0.1:x", "static://127.0.0.1:1"], "the port must be a number"),
    (["--listen", "127.0.0.1:0", "bogus://x"], "invalid target 'bogus://x'"),
    (["--listen", "127.0.0.1:0", "consul://"], "invalid target"),
    (["--listen", "127.0.0.1:9", "--listen", "127.0.0.1:9", "static://h:1"], "given twice"),
    (["--listen", "127.0.0.1:9"], "names no target"),
    (["static://127.0.0.1:1"], "at least one --listen"),
    (["--listen", "127.0.0.1:0", "--max-connections", "0", "static://h:1"], "--max-connections"),
    (["--listen", "127.0.0.1:0", "--drain-grace", "nan", "static://h:1"], "--drain-grace"),
    (["--listen", "127.0.0.1:0", "--admin", "nowhere", "static://h:1"], "--admin 'nowhere'"),
    (["--listen", "127.0.0.1:0", "--consul-addr", "http://", "consul://s"], "--consul-addr"),
]


@pytest.mark.parametrize(("argv", "message"), ERRORS)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sidecar", *argv]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("ts=")]
    assert len(lines) == 1, err
    assert lines[0].startswith("mcresolve sidecar: ") and message in lines[0], lines[0]


def test_an_address_in_use_exits_2_with_the_os_reason(
    taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = sidecar_cli.main(["--listen", f"127.0.0.1:{taken_port}", "static://127.0.0.1:1"])
    assert code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"mcresolve sidecar: cannot listen on 127.0.0.1:{taken_port}: ")
    assert "in use" in last.lower()


async def _line(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        raw = await asyncio.wait_for(stream.readline(), 30)
        assert raw, "the sidecar ended early:\n" + "".join(seen)
        seen.append(raw.decode())
        match = re.search(pattern, seen[-1])
        if match:
            return match


async def test_the_process_forwards_answers_health_and_drains_on_sigterm() -> None:
    env = {**os.environ, "CONSUL_HTTP_TOKEN": SECRET}
    async with serving(answering()) as up:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mcresolve.sidecar",
            "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
            "--drain-delay", "0", "--drain-grace", "10", f"static://{up.endpoint}",
            stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        assert process.stderr is not None
        seen: list[str] = []
        try:
            listen = await _line(
                process.stderr, r"event=listening .*listen=127\.0\.0\.1:(\d+)", seen
            )
            admin = await _line(process.stderr, r"event=admin listen=127\.0\.0\.1:(\d+)", seen)
            reader, writer = await asyncio.open_connection("127.0.0.1", int(listen[1]))
            writer.write(b"via process\n")
            assert await reader.readuntil(b"\n") == b"ok:via process\n"
            writer.close()
            r, w = await asyncio.open_connection("127.0.0.1", int(admin[1]))
            w.write(b"GET /health HTTP/1.1\r\n\r\n")
            assert (await r.read()).startswith(b"HTTP/1.1 200 ")
            w.close()
            process.send_signal(signal.SIGTERM)
            await _line(process.stderr, r"event=drained", seen)
            rest = await process.stderr.read()
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = "".join(seen) + rest.decode()
    assert "event=drain_started" in output
    assert SECRET not in output
    assert all(line.startswith("ts=") for line in output.splitlines()), output


def test_the_event_loop_is_uvloop_when_installed_unless_asyncio_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvloop

    assert sidecar_cli._event_loop("asyncio") == ("asyncio", None)
    assert sidecar_cli._event_loop("auto") == ("uvloop", uvloop.new_event_loop)
    assert sidecar_cli._event_loop("uvloop") == ("uvloop", uvloop.new_event_loop)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert sidecar_cli._event_loop("auto") == ("asyncio", None)
    with pytest.raises(SidecarUsageError, match=r"mcresolve\[uvloop\]"):
        sidecar_cli._event_loop("uvloop")
