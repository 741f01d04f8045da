"""The sidecar's pure parts: the establishing rule, the replay bound, --listen parsing, logfmt."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.sidecar.logs import logfmt
from mcresolve.sidecar.spec import ListenSpec, SidecarUsageError, parse_address, parse_listens
from mcresolve.sidecar.tcp_rules import (
    Commit,
    TcpProxyPolicy,
    TimedOut,
    WaitFor,
    establish_step,
    idle_left,
    replay_fits,
)

TIMES = st.floats(min_value=0, max_value=1e6, allow_nan=False)
TIMEOUTS = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)


@given(timeout=TIMEOUTS, connected=TIMES, sent_after=st.none() | TIMES, elapsed=TIMES)
def test_establish_waits_then_commits_a_silent_connection_or_times_out_a_sent_one(
    timeout: float, connected: float, sent_after: float | None, elapsed: float
) -> None:
    policy = TcpProxyPolicy(first_byte_timeout=timeout)
    sent = None if sent_after is None else connected + sent_after
    now = (connected if sent is None else sent) + elapsed
    step = establish_step(policy, connected_at=connected, first_sent_at=sent, now=now)
    if isinstance(step, WaitFor):
        assert 0 < step.seconds <= timeout
        assert math.isclose(now + step.seconds, (sent or connected) + timeout, abs_tol=1e-6)
    elif sent is None:
        assert step is Commit.SILENT  # nothing to replay: the connection is kept as it is
    else:
        assert step is TimedOut.NO_FIRST_BYTE  # bytes sent and no answer: the endpoint's fault


@given(
    limit=st.integers(0, 1 << 20), buffered=st.integers(0, 1 << 20), more=st.integers(1, 1 << 20)
)
def test_the_replay_buffer_never_exceeds_its_limit(limit: int, buffered: int, more: int) -> None:
    policy = TcpProxyPolicy(replay_limit=limit)
    assert replay_fits(policy, buffered, more) == (buffered + more <= limit)


def test_an_infinite_idle_timeout_never_ends_a_connection() -> None:
    assert idle_left(TcpProxyPolicy(idle_timeout=math.inf), 0.0, 1e12) == math.inf
    assert idle_left(TcpProxyPolicy(idle_timeout=10), 5.0, 16.0) == -1.0


@given(st.text(max_size=30))
def test_any_listen_text_is_an_address_in_range_or_a_one_line_usage_error(text: str) -> None:
    try:
        host, port = parse_address(text)
    except SidecarUsageError as error:
        assert "\n" not in str(error).replace("\\n", "")
        assert str(error).startswith("--listen")
    else:
        assert host and 0 <= port <= 65535


@pytest.mark.parametrize(
    ("values", "target", "message"),
    [
        ([], "static://127.0.0.1:1", "at least one --listen"),
        (["127.0.0.1:9000"], None, "names no target"),
        (["127.0.0.1:70000"], "static://127.0.0.1:1", "out of range"),
        (["127.0.0.1:-1"], "static://127.0.0.1:1", "must be a number"),
        (["9000"], "static://127.0.0.1:1", "expected HOST:PORT"),
        ([":9000"], "static://127.0.0.1:1", "host is missing"),
        (["::1:9000"], "static://127.0.0.1:1", "[ADDR]:PORT"),
        (["127.0.0.1:9000", "127.0.0.1:9000"], "static://127.0.0.1:1", "given twice"),
        (["127.0.0.1:9000="], None, "empty"),
        (["127.0.0.1:9000=nope://x"], None, "invalid target"),
        (["127.0.0.1:9000=static://127.0.0.1:1"], "static://127.0.0.1:2", "not used"),
    ],
)
def test_bad_listen_values_are_usage_errors(
    values: list[str], target: str | None, message: str
) -> None:
    with pytest.raises(SidecarUsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_listens(values, target, "tcp")


def test_listen_forms_single_and_paired() -> None:
    single = parse_listens(["127.0.0.1:9000", "[::1]:9001"], "consul+query://q", "tcp")
    assert single == (
        ListenSpec(("127.0.0.1", 9000), "consul+query://q"),
        ListenSpec(("::1", 9001), "consul+query://q"),
    )
    paired = parse_listens(["127.0.0.1:9000=consul://a", "127.0.0.1:9001=consul://b"], None, "tcp")
    assert [s.target for s in paired] == ["consul://a", "consul://b"]


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(max_size=20)))
def test_logfmt_is_one_line_whatever_the_values(fields: dict[str, str]) -> None:
    line = logfmt("thing", **fields)
    assert "\n" not in line and "\r" not in line
    assert line.startswith("event=thing")
