"""``mcresolve resolve`` / ``mcresolve watch`` as real subprocesses against the Consul emulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcresolve.cli import diff_endpoints, endpoint_table
from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.endpoint import Endpoint
from mcresolve.testing.consul import ConsulEmulator

SERVICE = "storage-object-minio"
DC1 = [("minio-aws-0", 9001), ("minio-aws-1", 9002)]
DC2 = [("minio-gcp-0", 9101)]
#: Generous: a subprocess start (imports) on a loaded 2-core machine takes ~0.5-2 s.
PROCESS_DEADLINE_S = 30.0


@dataclass
class Bed:
    consul: ConsulEmulator

    def addr(self, dc: str = "dc1") -> str:
        return f"127.0.0.1:{self.consul.dc(dc).http_port}"


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    """Every test with the emulator runs against the recorded 1.0.8 and the modern 1.21."""
    return str(request.param)


@pytest.fixture
async def bed(consul_version: str) -> AsyncIterator[Bed]:
    async with ConsulEmulator(
        ["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0}, version=consul_version
    ) as consul:
        for dc, instances in (("dc1", DC1), ("dc2", DC2)):
            config = ConsulConfig.for_addresses(consul.dc(dc).http_url)
            async with ConsulClient(config) as client:
                for service_id, port in instances:
                    await client.agent_service_register(
                        {
                            "Name": SERVICE,
                            "ID": service_id,
                            "Port": port,
                            "Address": "127.0.0.1",
                            "Tags": ["minio"],
                            "Meta": {"version": str(port % 2)},
                            "Check": {
                                "CheckID": f"{service_id}-ttl",
                                "TTL": "10m",
                                "Status": "passing",
                            },
                        }
                    )
                await client.query_create(
                    {"Name": SERVICE, "Service": {"Service": SERVICE, "Failover": {"NearestN": 1}}}
                )
        yield Bed(consul)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str, float]:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcresolve.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=PROCESS_DEADLINE_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode(), time.monotonic() - started


async def test_resolve_prints_a_table_using_consul_http_addr(bed: Bed) -> None:
    code, out, err, _ = await run_cli(
        "resolve", f"consul://{SERVICE}", env=cli_env(CONSUL_HTTP_ADDR=bed.addr())
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ADDRESS", "PORT", "NODE", "DC", "SERVICE", "ID", "TAGS"]
    rows = {tuple(line.split()) for line in lines[1:3]}
    assert rows == {
        ("127.0.0.1", "9001", "n1", "dc1", "minio-aws-0", "minio"),
        ("127.0.0.1", "9002", "n1", "dc1", "minio-aws-1", "minio"),
    }
    assert f"source: consul://{SERVICE}" in out
    assert "health: passing instances only" in out
    assert err == ""


async def test_filter_option_selects_on_modern_agents_and_exits_2_on_1_0_8(
    bed: Bed, consul_version: str
) -> None:
    code, out, err, _ = await run_cli(
        "resolve",
        f"consul://{SERVICE}",
        "--filter",
        'Service.Meta.version == "1"',
        "--json",
        env=cli_env(CONSUL_HTTP_ADDR=bed.addr()),
    )
    if consul_version == "1.0.8":  # would be ignored there: refused instead of unfiltered
        assert code == 2, (out, err)
        assert "does not know ?filter=" in err and "1.0.8" in err
        return
    assert code == 0, (out, err)
    assert [e["service_id"] for e in json.loads(out)["endpoints"]] == ["minio-aws-0"]


@pytest.mark.parametrize("consul_version", ["1.21"], indirect=True)  # 1.0.8 refuses it (above)
async def test_an_empty_filtered_answer_counts_only_the_instances_the_filter_selects(
    bed: Bed,
) -> None:
    code, out, err, _ = await run_cli(
        "resolve",
        f"consul://{SERVICE}",
        "--filter",
        'Service.Meta.version == "no-such-version"',
        env=cli_env(CONSUL_HTTP_ADDR=bed.addr()),
    )
    assert code == 1, (out, err)
    assert "(0 instance(s), none passing)" in err  # not every instance of the service


async def test_consul_addr_overrides_the_environment_and_json_output(bed: Bed) -> None:
    dead = f"127.0.0.1:{free_port()}"
    code, out, err, _ = await run_cli(
        "resolve",
        f"{SERVICE}.query.consul",
        "--consul-addr",
        bed.addr("dc2"),
        "--json",
        env=cli_env(CONSUL_HTTP_ADDR=dead),
    )
    assert code == 0, (out, err)
    answer = json.loads(out)
    assert [e["service_id"] for e in answer["endpoints"]] == ["minio-gcp-0"]
    assert answer["datacenter"] == "dc2" and answer["error"] is None


async def test_prepared_query_failover_shows_the_answering_datacenter(bed: Bed) -> None:
    for service_id, _ in DC1:
        bed.consul.dc("dc1").set_check_status(f"{service_id}-ttl", "critical", "down")
    code, out, err, _ = await run_cli(
        "resolve", f"consul+query://{bed.addr()}/{SERVICE}", env=cli_env()
    )
    assert code == 0, err
    assert "minio-gcp-0" in out and "minio-aws" not in out
    assert "datacenter: dc2" in out


async def test_dns_target_resolves_through_the_emulators_dns(bed: Bed) -> None:
    dns_port = bed.consul.dc("dc1").dns_port
    code, out, err, _ = await run_cli(
        "resolve", f"dns://{SERVICE}.service.consul?server=127.0.0.1:{dns_port}", env=cli_env()
    )
    assert code == 0, err
    assert {tuple(line.split()[:2]) for line in out.splitlines()[1:3]} == {
        ("127.0.0.1", "9001"),
        ("127.0.0.1", "9002"),
    }


async def test_unknown_service_exits_4_and_all_critical_exits_1(bed: Bed) -> None:
    """An unknown service and a known one whose instances all fail are told apart: by exit
    code (4 and 1) and by message (before: both exit 1 with "has no endpoint")."""
    env = cli_env(CONSUL_HTTP_ADDR=bed.addr())
    code, _, err, _ = await run_cli("resolve", "consul://unknown-service", env=env)
    assert code == 4, err
    assert err.splitlines() == [
        f"mcresolve: unknown service 'unknown-service': Consul (http://{bed.addr()}) knows no "
        "such service"
    ]
    for service_id, _port in DC1:
        bed.consul.dc("dc1").set_check_status(f"{service_id}-ttl", "critical", "down")
    code, out, err, _ = await run_cli("resolve", f"consul://{SERVICE}", env=env)
    assert code == 1, err
    assert err.splitlines() == [
        f"mcresolve: service '{SERVICE}' has no passing instance (2 instance(s), none passing)"
    ]
    assert "health: passing instances only" in out  # the (empty) table is still printed


async def test_unknown_prepared_query_exits_4(bed: Bed) -> None:
    for command in ("resolve", "watch"):
        code, _, err, _ = await run_cli(
            command, "consul+query://no-such-query", env=cli_env(CONSUL_HTTP_ADDR=bed.addr())
        )
        assert code == 4, err
        assert err.splitlines() == [
            f"mcresolve: unknown prepared query 'no-such-query': http://{bed.addr()} has no "
            "such query"
        ]


@pytest.mark.parametrize("target", [f"consul://{SERVICE}", f"consul+query://{SERVICE}"])
@pytest.mark.parametrize(
    "variable", ["CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_HTTP_TOKEN_FILE"]
)
async def test_missing_tls_or_token_file_exits_2_naming_variable_and_file(
    target: str, variable: str
) -> None:
    """Before: a missing CONSUL_CACERT gave a 35-line traceback and exit 1 for consul://, and a
    line without the file's name for consul+query://."""
    missing = f"/nonexistent/{variable.lower()}.pem"
    env = cli_env(CONSUL_HTTP_SSL="true", CONSUL_HTTP_ADDR="127.0.0.1:1", **{variable: missing})
    if variable == "CONSUL_CLIENT_CERT":
        env["CONSUL_CLIENT_KEY"] = "/dev/null"
    code, out, err, _ = await run_cli("resolve", target, env=env)
    assert code == 2, (out, err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mcresolve: Consul configuration: ")
    assert variable in err and missing in err


@pytest.mark.parametrize("target", [f"consul://{SERVICE}", f"consul+query://{SERVICE}"])
async def test_a_ca_file_that_is_not_pem_exits_2_naming_it(target: str, tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    env = cli_env(CONSUL_HTTP_SSL="true", CONSUL_HTTP_ADDR="127.0.0.1:1", CONSUL_CACERT=str(bad))
    code, out, err, _ = await run_cli("watch", target, env=env)
    assert code == 2, (out, err)
    assert len(err.splitlines()) == 1 and "CONSUL_CACERT" in err and str(bad) in err


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["resolve", "bogus://x"], {}, "invalid target 'bogus://x': unknown scheme"),
        (["resolve", "consul+query://"], {}, "expected a prepared query name"),
        (["watch", "static://10.0.0.1"], {}, "has no port"),
        (["resolve", "consul://web"], {"CONSUL_HTTP_SSL": "maybe"}, "CONSUL_HTTP_SSL must be"),
        (["resolve", "consul://web", "--consul-addr", "unix:///x"], {}, "unix:// sockets"),
        (["resolve", "consul://web", "--timeout", "0"], {}, "--timeout must be > 0"),
        (
            ["resolve", "static://127.0.0.1:1", "--filter", "a == b"],
            {},
            "consul://<service> targets",
        ),
        (["resolve", "consul://web?filter=x", "--filter", "y"], {}, "give one of them"),
        # Consul's prepared-query execution ignores filter: refused, pointing at the definition
        (["resolve", "consul+query://web", "--filter", "y"], {}, "query definition's own"),
        (["resolve", "consul+query://web?filter=y"], {}, "option filter is ignored by Consul"),
        (["resolve", "consul://web", "--filter", " "], {}, "--filter: filter: expected"),
        (["frobnicate", "x"], {}, "invalid choice"),
    ],
)
async def test_usage_errors_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    code, out, err, _ = await run_cli(*args, env=cli_env(**env))
    assert code == 2, (out, err)
    assert message in err


@pytest.mark.parametrize(
    ("where", "address", "message"),
    [
        ("env", "exa mple:8500", "white space or control characters"),
        ("option", "exa mple:8500", "white space or control characters"),
        ("env", "http://admin:hunter2pw@127.0.0.1:1", "credentials in the address are not"),
        ("option", "http://admin:hunter2pw@127.0.0.1:1", "credentials in the address are not"),
        ("env", "127.0.0.1:1\r\nX-Consul-Token: hunter2pw", "white space or control"),
        ("option", "http://127.0.0.1:1/?token=hunter2pw", "without a path, query or fragment"),
        ("env", "999.1.1.1:8500", "not a valid IPv4 address"),
    ],
)
async def test_bad_consul_addresses_exit_2_with_one_line_and_no_secret(
    where: str, address: str, message: str
) -> None:
    args = ["resolve", f"consul://{SERVICE}", "--timeout", "2"]
    env = cli_env(CONSUL_HTTP_TOKEN="tok-hunter3")
    if where == "env":
        env["CONSUL_HTTP_ADDR"] = address
    else:
        args += ["--consul-addr", address]
    code, out, err, _ = await run_cli(*args, "-vv", env=env)
    assert code == 2, (out, err)
    assert message in err and "--consul-addr" in err if where == "option" else message in err
    errors = [line for line in err.splitlines() if " DEBUG " not in line]  # -vv logs
    assert len(errors) == 1 and errors[0].startswith("mcresolve: Consul configuration: ")
    assert "hunter2pw" not in out + err and "tok-hunter3" not in out + err


async def test_unreachable_consul_exits_3_at_once() -> None:
    port = free_port()
    code, _, err, elapsed = await run_cli(
        "resolve", f"consul://{SERVICE}", env=cli_env(CONSUL_HTTP_ADDR=f"127.0.0.1:{port}")
    )
    assert code == 3
    assert f"cannot resolve consul://{SERVICE}: no Consul agent reachable" in err
    assert f"127.0.0.1:{port}" in err
    assert "Traceback" not in err and "WARNING" not in err
    assert elapsed < PROCESS_DEADLINE_S


@pytest.mark.parametrize("target", [f"consul://{SERVICE}", f"consul+query://{SERVICE}"])
@pytest.mark.parametrize("command", ["resolve", "watch"])
async def test_silent_consul_is_reported_naming_the_agent_before_the_deadline(
    target: str, command: str
) -> None:
    """An agent that accepts and never answers: each Consul call is bounded by 3/4 of
    ``--timeout``, and stage 2's first request (an immediate read) is such a call too, so both
    stages report the agent by name from the call's own timeout (before: stage 2 waited for
    the command's deadline and said only "no answer for consul://... within 4 s")."""
    with silent_listener() as port:
        code, _, err, elapsed = await run_cli(
            command,
            target,
            "--timeout",
            "4",
            env=cli_env(CONSUL_HTTP_ADDR=f"127.0.0.1:{port}"),
        )
    assert code == 3, err
    assert len(err.splitlines()) == 1, err
    assert f"(http://127.0.0.1:{port}: no answer within 3 s)" in err, err
    assert elapsed < PROCESS_DEADLINE_S


async def test_watch_prints_changes_and_exits_130_on_ctrl_c(bed: Bed) -> None:
    async with watching(f"consul://{SERVICE}", env=cli_env(CONSUL_HTTP_ADDR=bed.addr())) as w:
        await w.read_until("health: passing instances only")
        assert any("minio-aws-1" in line for line in w.lines)
        bed.consul.dc("dc1").set_check_status("minio-aws-1-ttl", "critical", "gone")
        removed = await w.read_until("- 127.0.0.1:9002")
        assert "id=minio-aws-1" in removed
        bed.consul.dc("dc1").set_check_status("minio-aws-1-ttl", "passing", "back")
        await w.read_until("+ 127.0.0.1:9002")
        w.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(w.process.wait(), timeout=PROCESS_DEADLINE_S) == 130


async def test_watch_follows_failover_and_exits_0_on_sigterm(bed: Bed) -> None:
    target = f"consul+query://{bed.addr()}/{SERVICE}?refresh=1s"
    async with watching(target, "--json", env=cli_env()) as w:
        first = json.loads(await w.read_until('"endpoints"'))
        assert first["datacenter"] == "dc1"
        for service_id, _ in DC1:
            bed.consul.dc("dc1").set_check_status(f"{service_id}-ttl", "critical", "down")
        while True:
            update = json.loads(await w.read_until('"endpoints"'))
            if update["datacenter"] == "dc2":
                break
        assert [e["service_id"] for e in update["endpoints"]] == ["minio-gcp-0"]
        w.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(w.process.wait(), timeout=PROCESS_DEADLINE_S) == 0


def test_pure_table_and_diff() -> None:
    a = Endpoint("127.0.0.1", 1, node="n1", datacenter="dc1", service_id="a", tags=("x",))
    b = Endpoint("127.0.0.1", 2)
    b2 = Endpoint("127.0.0.1", 2, tags=("new",))
    c = Endpoint("::1", 3)
    assert endpoint_table([a, b]) == [
        "ADDRESS    PORT  NODE  DC   SERVICE ID  TAGS",
        "127.0.0.1  1     n1    dc1  a           x",
        "127.0.0.1  2     -     -    -           -",
    ]
    change = diff_endpoints([a, b], [b2, c])
    assert change.added == (c,) and change.removed == (a,) and change.changed == (b2,)
    assert not diff_endpoints([a, b], [b, a])


# --- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@dataclass
class Watching:
    process: asyncio.subprocess.Process
    lines: list[str]

    async def read_until(self, needle: str, within: float = PROCESS_DEADLINE_S) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"watch ended before {needle!r}: {self.lines}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if needle in line:
                    return line


@contextlib.asynccontextmanager
async def watching(target: str, *args: str, env: dict[str, str]) -> AsyncIterator[Watching]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcresolve.cli",
        "watch",
        target,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield Watching(process, [])
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def test_exit_status_decisions_are_pure_and_distinct() -> None:
    from mcresolve.cli import (
        EXIT_NO_ENDPOINTS,
        EXIT_UNAVAILABLE,
        EXIT_UNKNOWN,
        empty_exit,
        failure_exit,
    )
    from mcresolve.consul.errors import NotFound, ServerError
    from mcresolve.sources.target import parse_target

    web = parse_target("consul://web?dc=dc2")
    agents = "http://127.0.0.1:8500"
    assert empty_exit(web, "consul://web", False, None, agents).code == EXIT_UNKNOWN
    known = empty_exit(web, "consul://web", True, 3, agents)
    assert known.code == EXIT_NO_ENDPOINTS and "(3 instance(s), none passing)" in known.message
    unasked = empty_exit(web, "consul://web", None, None, agents)
    assert unasked.code == EXIT_NO_ENDPOINTS and "could not be asked" in unasked.message
    query = parse_target("consul+query://q")
    missing = NotFound(404, "Query not found", agent=agents)
    assert failure_exit(query, "consul+query://q", missing).code == EXIT_UNKNOWN
    elsewhere = ServerError(500, "rpc error making call: Query not found", agent=agents)
    assert failure_exit(query, "consul+query://q", elsewhere).code == EXIT_UNKNOWN
    down = ServerError(500, "No cluster leader", agent=agents)
    assert failure_exit(query, "consul+query://q", down).code == EXIT_UNAVAILABLE
    assert failure_exit(web, "consul://web", missing).code == EXIT_UNAVAILABLE
