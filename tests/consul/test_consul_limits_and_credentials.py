"""Today's Consul at the transport level, against loopback servers: the rate limiter's 429
("retry elsewhere") and 503 ("back off"), a token file rotated while the client runs (re-read on
change and after a 403), basic auth, namespace and partition sent only when configured."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from pathlib import Path

import pytest
from consul_replay import Planned, ReplayServer
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.consul import ConsulClient, ConsulConfig, ConsulConfigError
from mcresolve.consul.client import (
    NextAgent,
    RateLimitPolicy,
    Refuse,
    RetryLater,
    plan_refusal,
)
from mcresolve.consul.config import BasicAuth
from mcresolve.consul.errors import (
    BadRequest,
    Overloaded,
    PermissionDenied,
    RateLimited,
    ServerError,
)
from mcresolve.consul.token_file import TokenFile
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.timing import BackoffPolicy, Jitter

LEADER = Planned(body=b'"127.0.0.1:8300"', headers={"Content-Type": "application/json"})
#: Consul's rate limiter answers (agent/consul/rate: "rate limit exceeded, try a different
#: server" / "try again later"); the texts do not matter to the client, the status does.
TOO_MANY = Planned(status=429, body=b"rate limit exceeded, try a different server")
RETRY_LATER = Planned(status=503, body=b"rate limit exceeded, try again later")
#: Tiny deterministic backoff so that tests do not wait (the decision is tested separately).
QUICK = RateLimitPolicy(backoff=BackoffPolicy(base=0.001, cap=0.001, jitter=Jitter.NONE))


# --- rate limiting: the decision ----------------------------------------------------------------


@given(
    status=st.sampled_from([429, 503]),
    agents_left=st.integers(0, 5),
    retry=st.integers(1, 10),
    delay=st.floats(0, 20),
    time_left=st.floats(-1, 30),
    retries=st.integers(0, 5),
)
def test_plan_refusal_invariants(
    status: int, agents_left: int, retry: int, delay: float, time_left: float, retries: int
) -> None:
    policy = RateLimitPolicy(overloaded_retries=retries)
    plan = plan_refusal(
        status,
        agents_left=agents_left,
        retry=retry,
        delay=delay,
        time_left=time_left,
        policy=policy,
    )
    if status == 429:  # never waits; elsewhere while an agent is left
        assert plan == (NextAgent() if agents_left else Refuse())
    else:  # never another agent (none could serve); waits only within budget and count
        assert not isinstance(plan, NextAgent)
        if isinstance(plan, RetryLater):
            assert plan.delay == delay < time_left and retry <= retries
        else:
            assert retry > retries or delay >= time_left


# --- rate limiting: against loopback agents ---------------------------------------------------


async def test_429_moves_to_the_next_agent_at_once(
    replay: ReplayServer, replay2: ReplayServer
) -> None:
    replay.answer(TOO_MANY)
    replay2.answer(LEADER)
    config = ConsulConfig.for_addresses(replay.address, replay2.address)
    async with ConsulClient(config, rate_limit=QUICK) as client:
        assert await client.status_leader() == "127.0.0.1:8300"
        assert client.current_address.port == replay2.port
    assert len(replay.seen) == 1 and len(replay2.seen) == 1


async def test_429_from_every_agent_is_rate_limited_naming_the_agent(
    replay: ReplayServer, replay2: ReplayServer
) -> None:
    replay.answer(TOO_MANY)
    replay2.answer(TOO_MANY)
    config = ConsulConfig.for_addresses(replay.address, replay2.address)
    async with ConsulClient(config, rate_limit=QUICK) as client:
        with pytest.raises(RateLimited) as caught:
            await client.status_leader()
    assert caught.value.status == 429
    assert caught.value.agent == f"http://{replay2.address}"
    assert f"Consul agent http://{replay2.address} answered 429" in str(caught.value)
    assert len(replay.seen) == 1 and len(replay2.seen) == 1  # each asked once, no waiting


async def test_429_with_one_agent_is_raised_without_retrying(replay: ReplayServer) -> None:
    replay.answer(TOO_MANY, LEADER)
    async with ConsulClient(ConsulConfig.for_addresses(replay.address), rate_limit=QUICK) as c:
        with pytest.raises(RateLimited):
            await c.status_leader()
    assert len(replay.seen) == 1


async def test_503_is_retried_after_a_backoff_on_the_same_agent(
    replay: ReplayServer, replay2: ReplayServer
) -> None:
    replay.answer(RETRY_LATER, RETRY_LATER, LEADER)
    draws: list[float] = []

    def random() -> float:
        draws.append(0.5)
        return 0.5

    policy = RateLimitPolicy(backoff=BackoffPolicy(base=0.002, cap=0.01))  # full jitter
    config = ConsulConfig.for_addresses(replay.address, replay2.address)
    async with ConsulClient(config, rate_limit=policy, random=random) as client:
        assert await client.status_leader() == "127.0.0.1:8300"
    assert len(replay.seen) == 3 and replay2.seen == []  # no other server could serve it
    assert len(draws) == 2  # one jittered delay per retry, from the backoff module


async def test_503_beyond_the_retries_is_overloaded(replay: ReplayServer) -> None:
    replay.answer(*([RETRY_LATER] * 5))
    policy = RateLimitPolicy(
        overloaded_retries=2, backoff=BackoffPolicy(base=0.001, jitter=Jitter.NONE)
    )
    async with ConsulClient(ConsulConfig.for_addresses(replay.address), rate_limit=policy) as c:
        with pytest.raises(Overloaded) as caught:
            await c.status_leader()
    assert isinstance(caught.value, ServerError) and caught.value.status == 503
    assert f"http://{replay.address}" in str(caught.value)
    assert len(replay.seen) == 3  # the request and 2 retries


async def test_503_retry_that_would_outlast_the_time_limit_is_not_made(
    replay: ReplayServer,
) -> None:
    replay.answer(RETRY_LATER, LEADER)
    policy = RateLimitPolicy(backoff=BackoffPolicy(base=30.0, cap=30.0, jitter=Jitter.NONE))
    config = ConsulConfig.for_addresses(replay.address, request_timeout=5.0)
    async with ConsulClient(config, rate_limit=policy) as client:
        with pytest.raises(Overloaded):
            await client.status_leader()
    assert len(replay.seen) == 1


# --- token file -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_file_is_re_read_when_it_changes_at_most_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("token-one\n")
    clock = FakeClock()
    tokens = TokenFile(str(path), check_interval=10.0, clock=clock)
    assert tokens.current() == "token-one"
    path.write_text("token-two-longer\n")
    clock.now = 9.9
    assert tokens.current() == "token-one"  # not looked at before the interval
    clock.now = 10.0
    assert tokens.current() == "token-two-longer"


def test_token_file_unreadable_or_invalid_keeps_the_last_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    path.write_text("good-token\n")
    clock = FakeClock()
    tokens = TokenFile(str(path), check_interval=1.0, clock=clock)
    path.write_text("bad token with\nline breaks and secret-part\n")
    clock.now = 1.0
    with caplog.at_level(logging.WARNING, logger="mcresolve.consul"):
        assert tokens.current() == "good-token"
    assert "secret-part" not in caplog.text and str(path) in caplog.text
    os.unlink(path)
    assert not tokens.reload() and tokens.current() == "good-token"


async def test_a_403_re_reads_the_token_file_and_retries_once(
    replay: ReplayServer, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text("old-token\n")
    config = ConsulConfig.from_env(
        {"CONSUL_HTTP_ADDR": replay.address, "CONSUL_HTTP_TOKEN_FILE": str(path)}
    )
    replay.answer(LEADER, Planned(status=403, body=b"ACL not found"), LEADER)
    async with ConsulClient(config) as client:
        await client.status_leader()
        # Rotated (same size, same second: only the 403 makes the client look).
        path.write_text("new-token\n")
        await client.status_leader()
    sent = [seen.headers.get("X-Consul-Token") for seen in replay.seen]
    assert sent == ["old-token", "old-token", "new-token"]


async def test_a_403_with_an_unchanged_token_file_is_raised_without_retry(
    replay: ReplayServer, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text("the-token\n")
    config = ConsulConfig.for_addresses(replay.address, token_file=str(path))
    replay.answer(Planned(status=403, body=b"Permission denied"), LEADER)
    async with ConsulClient(config) as client:
        with pytest.raises(PermissionDenied) as caught:
            await client.status_leader()
    assert len(replay.seen) == 1
    assert "the-token" not in str(caught.value) and "the-token" not in repr(client)


async def test_a_changed_token_file_is_used_after_the_check_interval(
    replay: ReplayServer, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    config = ConsulConfig.for_addresses(
        replay.address, token_file=str(path), token_file_check_interval=0.001
    )
    replay.answer(LEADER, LEADER)
    async with ConsulClient(config) as client:
        await client.status_leader()
        path.write_text("second-token\n")
        os.utime(path, ns=(1, 1))  # a different modification time whatever the clock's grain
        # Let the 1 ms check interval pass for certain (a sleep never ends early); on a fast
        # machine both requests could otherwise fall within one interval. The decision itself
        # is tested on an injected clock in the TokenFile tests.
        await asyncio.sleep(0.01)
        await client.status_leader()
    assert [s.headers.get("X-Consul-Token") for s in replay.seen] == ["first", "second-token"]


# --- basic auth, namespace, partition ---------------------------------------------------------


async def test_basic_auth_is_sent_and_never_shown(replay: ReplayServer) -> None:
    config = ConsulConfig.from_env(
        {"CONSUL_HTTP_ADDR": replay.address, "CONSUL_HTTP_AUTH": "ops:pa:ss-hunter2"}
    )
    assert config.http_auth == BasicAuth("ops", "pa:ss-hunter2")
    replay.answer(LEADER)
    async with ConsulClient(config) as client:
        await client.status_leader()
        shown = repr(client) + str(config) + repr(config.http_auth)
    expected = base64.b64encode(b"ops:pa:ss-hunter2").decode()
    assert replay.seen[0].headers["Authorization"] == f"Basic {expected}"
    assert "hunter2" not in shown


def test_basic_auth_refuses_control_characters_without_quoting() -> None:
    with pytest.raises(ConsulConfigError) as caught:
        ConsulConfig.from_env({"CONSUL_HTTP_AUTH": "ops:pw\r\nX-Evil: hunter2"})
    assert "hunter2" not in str(caught.value)


async def test_nothing_about_namespaces_is_sent_by_default(replay: ReplayServer) -> None:
    """Consul CE answers 400 "Namespaces are a Consul Enterprise feature" to any ``ns``."""
    replay.answer(LEADER, Planned(body=b"[]", headers={"X-Consul-Index": "3"}))
    async with ConsulClient(ConsulConfig.from_env({"CONSUL_HTTP_ADDR": replay.address})) as c:
        await c.status_leader()
        await c.health_service("web", passing=True)
    for seen in replay.seen:
        assert "ns" not in seen.query and "partition" not in seen.query
        assert not any(h.lower().startswith("x-consul-namespace") for h in seen.headers)


async def test_namespace_and_partition_are_sent_on_every_request_when_set(
    replay: ReplayServer,
) -> None:
    env = {
        "CONSUL_HTTP_ADDR": replay.address,
        "CONSUL_NAMESPACE": "team-a",
        "CONSUL_PARTITION": "part-1",
    }
    config = ConsulConfig.from_env(env)
    assert (config.namespace, config.partition) == ("team-a", "part-1")
    replay.answer(LEADER, Planned(body=b"[]", headers={"X-Consul-Index": "3"}))
    async with ConsulClient(config) as client:
        await client.status_leader()
        await client.health_service("web", passing=True, index=2, wait=1)
    for seen in replay.seen:
        assert seen.query.getall("ns") == ["team-a"]
        assert seen.query.getall("partition") == ["part-1"]
    assert replay.seen[1].query["passing"] == "1" and replay.seen[1].query["index"] == "2"


def test_namespace_must_be_a_plain_name() -> None:
    with pytest.raises(ConsulConfigError, match="CONSUL_NAMESPACE"):
        ConsulConfig.from_env({"CONSUL_NAMESPACE": "a b"})


@given(password=st.text(min_size=1, max_size=40))
def test_no_basic_auth_password_in_any_repr_or_error(password: str) -> None:
    """Whatever the password (control characters, colons, non-ASCII...), it never shows in the
    config's or the credentials' ``repr``, nor in the refusal."""
    secret = f"Zq{password}Zq"  # long and distinctive enough not to occur by chance
    try:
        config = ConsulConfig.from_env({"CONSUL_HTTP_AUTH": f"ops:{secret}"})
    except ConsulConfigError as error:
        assert secret not in str(error)
        return
    assert config.http_auth is not None and config.http_auth.password == secret
    assert secret not in repr(config) + str(config) + repr(config.http_auth)


def test_a_client_certificate_that_cannot_be_loaded_names_both_files(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client-key.pem"
    cert.write_text("not PEM\n")
    key.write_text("not PEM either\n")
    config = ConsulConfig.for_addresses(
        "127.0.0.1:8501", scheme="https", client_cert=str(cert), client_key=str(key)
    )
    with pytest.raises(ConsulConfigError) as caught:
        ConsulClient(config)
    message = str(caught.value)
    assert "CONSUL_CLIENT_CERT" in message and str(cert) in message and str(key) in message


# --- against the emulator's modern profile (Consul 1.21 answers) ------------------------------


async def test_against_a_modern_emulated_agent_503s_are_retried_and_namespaces_never_sent() -> None:
    """The emulator's 1.21 profile: its rate limiter answers 503 twice, then the read is
    served after two backoffs; Consul CE refuses any ``ns`` with 400, and the default config
    sends none (a configured namespace gets CE's refusal, typed and naming the agent)."""
    async with ConsulEmulator(["dc1"], version="1.21") as consul:
        dc1 = consul.dc("dc1")
        dc1.agent.register_service({"Name": "web", "Port": 80})
        config = ConsulConfig.for_addresses(dc1.http_url)
        async with ConsulClient(config, rate_limit=QUICK) as client:
            dc1.faults.rate_limit("retry-later", count=2)
            answer = await client.health_service("web")
            assert [e.service.port for e in answer.value] == [80]
            dc1.faults.rate_limit("retry-elsewhere", count=1)
            with pytest.raises(RateLimited):  # one agent: nowhere else to go
                await client.health_service("web")
            assert [e.service.port for e in (await client.health_service("web")).value] == [80]
        async with ConsulClient(config.with_options(namespace="default")) as client:
            with pytest.raises(BadRequest) as caught:
                await client.health_service("web")
        assert "Namespaces are a Consul Enterprise feature" in caught.value.message
        assert dc1.http_url in str(caught.value)
