"""Pure blocking-query rules: index handling, wait rendering, client timeout, rate limit."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.consul.blocking import (
    MAX_WAIT,
    SERVER_DEFAULT_WAIT,
    TIMEOUT_MARGIN,
    BlockingPolicy,
    TokenBucket,
    client_timeout,
    effective_wait,
    format_wait,
    is_change,
    next_index,
)

indexes = st.integers(min_value=0, max_value=2**63)


def test_index_rules_from_consul_docs() -> None:
    # A normal wake-up: block on the returned index next time.
    assert next_index(37, 43).next_index == 43
    # Nothing changed: same index.
    step = next_index(43, 43)
    assert step.unchanged and step.next_index == 43 and not step.went_backwards
    # Went backwards (server restored/restarted): reset to 0 = one immediate read.
    step = next_index(999, 12)
    assert step.went_backwards and step.next_index == 0
    # A (buggy) zero index after a read is never used to block: 1 is always safe.
    assert next_index(0, 0).next_index == 1
    assert next_index(50, 0).next_index == 1


def test_negative_indexes_are_rejected() -> None:
    with pytest.raises(ValueError):
        next_index(-1, 3)


@given(indexes, indexes)
def test_next_index_properties(sent: int, returned: int) -> None:
    step = next_index(sent, returned)
    if returned < sent:
        assert step.went_backwards and not step.unchanged
        assert step.next_index == (0 if returned else 1)
    else:
        assert not step.went_backwards
        assert step.next_index == max(returned, 1) >= 1
        assert step.unchanged == (returned == sent)


@given(st.lists(indexes, min_size=1, max_size=50))
def test_a_loop_only_sends_zero_at_start_or_right_after_a_reset(answers: list[int]) -> None:
    sent = 0
    sent_indexes = [sent]
    for returned in answers:
        step = next_index(sent, returned)
        if sent_indexes[-1] == 0:
            # An immediate read is always accepted as the new baseline: no reset loop.
            assert not step.went_backwards
        sent = step.next_index
        sent_indexes.append(sent)
        assert sent >= 1 or step.went_backwards


def test_is_change() -> None:
    assert is_change(first=True, previous=None, current=[])
    assert not is_change(first=False, previous=[1], current=[1])
    assert is_change(first=False, previous=[1], current=[2])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(60, "60000ms"), (1.5, "1500ms"), (0.1, "100ms"), (0, "1ms"), (-5, "1ms"), (3600, "600000ms")],
)
def test_format_wait(seconds: float, text: str) -> None:
    assert format_wait(seconds) == text


def test_format_wait_rejects_nan() -> None:
    with pytest.raises(ValueError):
        format_wait(math.nan)


@given(st.floats(min_value=-1e6, max_value=1e9, allow_nan=False))
def test_format_wait_is_never_zero_nor_above_the_cap(seconds: float) -> None:
    text = format_wait(seconds)
    assert text.endswith("ms")
    assert 1 <= int(text[:-2]) <= MAX_WAIT * 1000


@given(st.one_of(st.none(), st.floats(min_value=-10, max_value=1e5)))
def test_client_timeout_exceeds_the_longest_legitimate_block(wait: float | None) -> None:
    applied = effective_wait(wait)
    assert client_timeout(wait) > applied + applied / 16
    assert client_timeout(wait) == pytest.approx(applied * 17 / 16 + TIMEOUT_MARGIN)


def test_effective_wait_matches_consul() -> None:
    # Recorded: no wait / wait=0 / negative -> 5 min; 15m and 1h capped at 10 min.
    assert effective_wait(None) == effective_wait(0) == effective_wait(-1) == SERVER_DEFAULT_WAIT
    assert effective_wait(900) == effective_wait(3600) == MAX_WAIT
    assert effective_wait(2.5) == 2.5


def test_blocking_policy_defaults_and_validation() -> None:
    policy = BlockingPolicy()
    assert (policy.wait, policy.min_interval, policy.burst) == (60.0, 0.1, 2)
    assert policy.client_timeout == pytest.approx(60 + 3.75 + TIMEOUT_MARGIN)
    for bad in ({"wait": 0}, {"wait": 601}, {"min_interval": -1}, {"burst": 0}):
        with pytest.raises(ValueError):
            BlockingPolicy(**bad)  # type: ignore[arg-type]


def test_token_bucket_allows_a_burst_of_two_then_one_per_interval() -> None:
    bucket = TokenBucket(interval=0.1, burst=2, now=0.0)
    assert bucket.reserve(0.0) == 0
    assert bucket.reserve(0.0) == 0
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    assert bucket.reserve(0.1) == pytest.approx(0.1)
    # After a quiet second the burst is available again, but not more.
    assert bucket.reserve(5.0) == 0
    assert bucket.reserve(5.0) == 0
    assert bucket.reserve(5.0) > 0


def test_token_bucket_with_zero_interval_never_waits() -> None:
    bucket = TokenBucket(interval=0, burst=1, now=0)
    assert all(bucket.reserve(0) == 0 for _ in range(100))


@given(
    st.floats(min_value=0.01, max_value=5),
    st.integers(min_value=1, max_value=5),
    st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=80),
)
def test_token_bucket_never_exceeds_its_rate(
    interval: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(interval, burst, now=0.0)
    now = 0.0
    sent: list[float] = []
    for gap in gaps:
        now += gap
        now += bucket.reserve(now)  # the loop sleeps the returned delay, then sends
        sent.append(now)
    assert sent == sorted(sent)
    # In any window of length W, at most burst + W / interval requests go out.
    for i, start in enumerate(sent):
        for j in range(i, len(sent)):
            window = sent[j] - start
            assert j - i + 1 <= burst + window / interval + 1e-6
