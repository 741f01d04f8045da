"""The refresh_now() damping rule (pure, property-tested) and the trigger that applies it."""

from __future__ import annotations

import asyncio
import math
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.sources.refresh import RefreshDamper, RefreshDamping
from mcresolve.sources.wakeup import RefreshTrigger, Wake

policies = st.builds(
    RefreshDamping,
    base=st.floats(0.01, 0.5),
    multiplier=st.floats(1.0, 4.0),
    cap=st.floats(0.5, 5.0),
    quiet=st.floats(6.0, 60.0),  # > cap + the slowest hammer below
)
unit = st.floats(0.0, 1.0, exclude_max=True)


def test_defaults_and_their_bound() -> None:
    policy = RefreshDamping()
    assert (policy.base, policy.multiplier, policy.cap, policy.quiet) == (0.05, 2.0, 2.0, 10.0)
    assert [policy.ceiling(n) for n in range(1, 9)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    # lower bounds of the gaps: 25, 50, 100, 200, 400, 800 ms (sum 1.575 s), then 1 s each
    assert policy.max_forced(0) == 1
    assert policy.max_forced(1.575) == 7
    assert policy.max_forced(1.574) == 6
    assert policy.max_forced(2.575) == 8
    assert policy.max_forced(20) == 7 + 18


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": 0}, "base must be > 0"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
        ({"base": 3.0, "cap": 2.0}, "cap (2.0) must be >= base (3.0)"),
        ({"cap": 2.0, "quiet": 2.0}, "quiet (2.0) must be > cap (2.0)"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        RefreshDamping(**kwargs)


@given(policies, st.integers(1, 10_000), unit)
def test_delay_is_within_half_and_full_ceiling_and_capped(
    policy: RefreshDamping, streak: int, draw: float
) -> None:
    ceiling = policy.ceiling(streak)
    assert policy.base <= ceiling <= policy.cap
    assert ceiling / 2 <= policy.delay(streak, draw) <= ceiling
    assert ceiling <= policy.ceiling(streak + 1)


@given(policies, st.lists(st.tuples(st.integers(0, 3), st.booleans(), unit), max_size=60))
def test_the_first_refresh_after_a_change_is_never_delayed(
    policy: RefreshDamping, steps: list[tuple[int, bool, float]]
) -> None:
    draws = iter([d for _, _, d in steps] + [0.5])
    damper = RefreshDamper(policy, lambda: next(draws))
    now = 0.0
    previous: object = None
    for outcome, forced, _ in steps:
        now += 0.01
        changed = damper.observe(outcome, now, forced=forced)
        assert changed == (previous is None or outcome != previous)
        previous = outcome
        if changed:
            assert damper.ready_at == -math.inf and damper.streak == 0
        else:
            assert damper.ready_at <= now + policy.cap


@given(policies, st.integers(0, 20), unit)
def test_unforced_unchanged_resolutions_leave_the_damping_alone(
    policy: RefreshDamping, forced_before: int, draw: float
) -> None:
    damper = RefreshDamper(policy, lambda: draw)
    now = 0.0
    damper.observe("same", now, forced=False)
    for _ in range(forced_before):
        now += policy.cap
        damper.observe("same", now, forced=True)
    ready, streak = damper.ready_at, damper.streak
    damper.observe("same", now + 0.001, forced=False)  # periodic or health-watch triggered
    assert (damper.ready_at, damper.streak) == (ready, streak)


def test_quiet_period_starts_the_sequence_over() -> None:
    policy = RefreshDamping()
    damper = RefreshDamper(policy, lambda: 0.0)
    damper.observe("same", 0.0, forced=False)
    now = 0.0
    for _ in range(10):
        now = max(now, damper.ready_at)
        damper.observe("same", now, forced=True)
    assert damper.streak == 10 and damper.ready_at == now + policy.cap / 2
    damper.observe("same", now + 9.99, forced=True)  # still the same episode
    assert damper.streak == 11
    now += 9.99 + policy.quiet
    damper.observe("same", now, forced=True)  # a new episode
    assert damper.streak == 1 and damper.ready_at == now + policy.base / 2


@given(
    policies,
    st.floats(0.0, 10.0),
    st.lists(unit, min_size=1, max_size=50),
    st.floats(0.002, 0.5),
    st.integers(0, 2**32 - 1),
)
@settings(max_examples=150, deadline=None)
def test_a_hammered_source_with_an_unchanging_answer_stays_within_the_bound(
    policy: RefreshDamping,
    duration: float,
    draws: list[float],
    hammer_every: float,
    seed: int,
) -> None:
    """Requests every ``hammer_every`` seconds or faster (continuous hammering, as a pool with
    every endpoint ejected does); each released request re-resolves and gets the same answer.
    Counted from the first forced re-resolution, the densest window."""
    draw_cycle = iter(draws * 10_000)
    damper = RefreshDamper(policy, lambda: next(draw_cycle))
    rng = random.Random(seed)
    damper.observe("same", -1.0, forced=False)  # the initial resolution
    now, start, executions = 0.0, None, 0
    while start is None or now <= start + duration:
        if damper.ready_at <= now:  # a pending request is released
            start = now if start is None else start
            executions += 1
            damper.observe("same", now, forced=True)
        now += rng.uniform(0.0, hammer_every)
    assert executions <= policy.max_forced(duration)


# --- the trigger (a real event loop) -----------------------------------------------------------


async def test_trigger_wakes_periodically_on_a_signal_and_on_a_released_request() -> None:
    trigger = RefreshTrigger(RefreshDamper(RefreshDamping(base=60.0, cap=60.0, quiet=120.0)))
    assert await trigger.wait(0.0) is Wake.PERIODIC
    trigger.observe("same", forced=False)
    trigger.request()  # first after the initial answer: at once
    assert await asyncio.wait_for(trigger.wait(60.0), 10) is Wake.FORCED
    trigger.observe("same", forced=True)  # unchanged: the next request waits >= 30 s
    trigger.request()
    trigger.request()
    waiting = asyncio.ensure_future(trigger.wait(60.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    trigger.signal()  # a health-watch event is never damped, and serves the pending requests
    assert await asyncio.wait_for(waiting, 10) is Wake.SIGNAL
    trigger.observe("changed", forced=False)
    trigger.request()  # first after a change: at once again
    assert await asyncio.wait_for(trigger.wait(60.0), 10) is Wake.FORCED


async def test_trigger_releases_a_damped_request_when_the_damper_allows() -> None:
    trigger = RefreshTrigger(RefreshDamper(RefreshDamping(base=0.2, cap=0.2), lambda: 0.0))
    trigger.observe("same", forced=False)
    trigger.observe("same", forced=True)  # ready 0.1 s from now
    loop = asyncio.get_running_loop()
    trigger.request()
    started = loop.time()
    assert await asyncio.wait_for(trigger.wait(60.0), 10) is Wake.FORCED
    assert loop.time() >= trigger.damper.ready_at >= started + 0.09
    trigger.observe("same", forced=True)
    trigger.request()  # not released before the periodic deadline: the periodic one serves it
    assert await asyncio.wait_for(trigger.wait(0.01), 10) is Wake.PERIODIC
    assert await asyncio.wait_for(trigger.wait(0.0), 10) is Wake.PERIODIC  # nothing pending
