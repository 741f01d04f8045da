"""Small pools never lock out a node that can serve: 2, 3 and 4 endpoints under every mix of
per-endpoint behaviour (healthy, refusing, resetting, timing out) and transitions between them
(flaky → healthy, healthy → failing), on the pool's injected clock.

**Invariant.** A call runs from ``s`` to ``e`` on the pool's clock. An endpoint *would have
succeeded* in it when its behaviour was healthy during all of ``[s, e]``. Whenever a call raises
:class:`~mcresolve.errors.CallFailed`, no endpoint would have succeeded in it. In particular (the
form the requirement states) no call fails while an endpoint that would have succeeded has not
failed more recently than the others: the planner, once every candidate of the picker has failed
in a round, probes the endpoints the picker left out (ejected, avoided) least recently failed
first, so every endpoint of the pool is tried before the call backs off or gives up.

The limits that legitimately end a call before every endpoint was reached are kept out of the
way, and the invariant holds under them: the pool has at most ``max_attempts`` endpoints, the
deadline exceeds ``(n - 1) × attempt_timeout`` plus the other attempts' time, the retry budget is
not binding, calls are idempotent (a reset of a non-idempotent call is raised as is, by design).

Time: the clock moves only when an attempt takes time (the scenario charges each behaviour its
cost) or between calls; backoff waits are real but tiny (1 ms), and un-ejection follows the
clock because every call catches up with due picker rebuilds.
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manual_source import eps
from mcresolve.balancer.retry_budget import RetryBudgetPolicy
from mcresolve.endpoint import Endpoint
from mcresolve.errors import CallFailed
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.sources.static import StaticSource
from mcresolve.timing import BackoffPolicy, Jitter

from .helpers import FakeClock

ATTEMPT_TIMEOUT = 0.5
"""Seconds of pool clock a blackholed attempt costs (the attempt timeout)."""
TINY = BackoffPolicy(base=0.001, cap=0.001, jitter=Jitter.NONE)
CALL = CallPolicy(
    deadline=5.0,
    attempt_timeout=ATTEMPT_TIMEOUT,
    max_attempts=5,
    backoff=TINY,
    cluster_backoff=TINY,
)
UNBOUNDED_BUDGET = RetryBudgetPolicy(percent_can_retry=1000.0, min_retries_per_second=1e6)


class Behaviour(enum.Enum):
    HEALTHY = "healthy"
    REFUSES = "refuses"
    RESETS = "resets"
    TIMES_OUT = "times out"


COST = {
    Behaviour.HEALTHY: 0.005,
    Behaviour.REFUSES: 0.05,
    Behaviour.RESETS: 0.01,
    Behaviour.TIMES_OUT: ATTEMPT_TIMEOUT,
}
"""Pool-clock seconds each kind of attempt takes."""


@dataclass(frozen=True)
class Schedule:
    """One endpoint's behaviour: ``first`` until ``change_at`` (pool clock), ``then`` after."""

    first: Behaviour
    change_at: float | None = None
    then: Behaviour = Behaviour.HEALTHY

    def at(self, t: float) -> Behaviour:
        return self.first if self.change_at is None or t < self.change_at else self.then

    def healthy_throughout(self, start: float, end: float) -> bool:
        if self.change_at is None or self.change_at > end:
            return self.first is Behaviour.HEALTHY
        if self.change_at <= start:
            return self.then is Behaviour.HEALTHY
        return self.first is Behaviour.HEALTHY and self.then is Behaviour.HEALTHY


@dataclass(frozen=True)
class Outcome:
    start: float
    end: float
    error: CallFailed | None


START = 1000.0


async def run_scenario(
    schedules: list[Schedule], gaps: list[float], seed: int, sync: bool, first_on: int | None = None
) -> tuple[list[Outcome], dict[int, Schedule]]:
    """Run one call per gap (the clock advances by the gap before each) on a pool of
    ``len(schedules)`` endpoints; return every call's span and error. ``first_on``: the first
    call starts on that endpoint (the others are excluded from its first round)."""
    clock = FakeClock(START)
    endpoints = eps(*(9001 + i for i in range(len(schedules))))
    by_port = {e.port: s for e, s in zip(endpoints, schedules, strict=True)}
    policy = PoolPolicy(call=CALL, retry_budget=UNBOUNDED_BUDGET)

    def attempt(endpoint: Endpoint) -> int:
        behaviour = by_port[endpoint.port].at(clock())
        clock.advance(COST[behaviour])
        if behaviour is Behaviour.REFUSES:
            raise ConnectionRefusedError("refused")
        if behaviour is Behaviour.RESETS:
            raise ConnectionResetError("reset")
        if behaviour is Behaviour.TIMES_OUT:
            raise TimeoutError("no answer within the attempt timeout")
        return endpoint.port

    async def attempt_async(endpoint: Endpoint) -> int:
        return attempt(endpoint)

    outcomes: list[Outcome] = []
    async with EndpointPool(
        StaticSource(endpoints), policy=policy, clock=clock, rng=random.Random(seed)
    ) as pool:
        await pool.wait_ready(5)
        for number, gap in enumerate(gaps):
            clock.advance(gap)
            start = clock()
            error: CallFailed | None = None
            exclude = []
            if number == 0 and first_on is not None:
                exclude = [e.key for i, e in enumerate(endpoints) if i != first_on]
            try:
                if sync:
                    await asyncio.to_thread(pool.call_sync, attempt, exclude=exclude)
                else:
                    await pool.call(attempt_async, exclude=exclude)
            except CallFailed as exc:
                error = exc
            outcomes.append(Outcome(start, clock(), error))
    return outcomes, by_port


def check_invariant(outcomes: list[Outcome], by_port: dict[int, Schedule]) -> None:
    for number, outcome in enumerate(outcomes):
        if outcome.error is None:
            continue
        could_serve = [
            port
            for port, schedule in by_port.items()
            if schedule.healthy_throughout(outcome.start, outcome.end)
        ]
        assert not could_serve, (
            f"call {number} at t={outcome.start - START:.3f}..{outcome.end - START:.3f} failed "
            f"({type(outcome.error).__name__}) while {could_serve} could serve: {outcome.error}"
        )


behaviours = st.sampled_from(list(Behaviour))
failures = st.sampled_from([b for b in Behaviour if b is not Behaviour.HEALTHY])
schedules = st.one_of(
    st.builds(Schedule, first=behaviours),  # steady
    st.builds(  # flaky, then healthy (soon: while its ejection still runs)
        Schedule,
        first=failures,
        change_at=st.floats(0.0, 3.0).map(lambda t: START + t),
        then=st.just(Behaviour.HEALTHY),
    ),
    st.builds(  # anything, then anything (healthy → dying, one failure → another, ...)
        Schedule,
        first=behaviours,
        change_at=st.floats(0.0, 30.0).map(lambda t: START + t),
        then=behaviours,
    ),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    pool=st.integers(2, 4).flatmap(lambda n: st.lists(schedules, min_size=n, max_size=n)),
    gaps=st.lists(st.floats(0.0, 3.0), min_size=5, max_size=30),
    seed=st.integers(0, 2**32 - 1),
    sync=st.booleans(),
)
def test_no_call_fails_while_an_endpoint_could_serve(
    pool: list[Schedule], gaps: list[float], seed: int, sync: bool
) -> None:
    """See the module docstring for the invariant and its conditions."""
    outcomes, by_port = asyncio.run(run_scenario(pool, gaps, seed, sync))
    check_invariant(outcomes, by_port)


FLAKY_THEN_HEALTHY = Schedule(Behaviour.RESETS, START + 0.005, Behaviour.HEALTHY)
"""Resets its first attempt (it costs 0.01 s), healthy from then on."""
DYING = Schedule(Behaviour.RESETS)


@pytest.mark.parametrize("sync", [False, True], ids=["call", "call_sync"])
@pytest.mark.parametrize(
    "mix",
    [
        [FLAKY_THEN_HEALTHY, DYING],
        [FLAKY_THEN_HEALTHY, Schedule(Behaviour.TIMES_OUT)],
        [FLAKY_THEN_HEALTHY, DYING, DYING],
        [FLAKY_THEN_HEALTHY, Schedule(Behaviour.REFUSES), DYING, Schedule(Behaviour.TIMES_OUT)],
    ],
    ids=["2:flaky+dying", "2:flaky+hung", "3:flaky+2 dying", "4:flaky+refusing+dying+hung"],
)
def test_a_small_pool_never_locks_out_its_healthy_node(mix: list[Schedule], sync: bool) -> None:
    """The reported two-node lockout and its 3- and 4-node relatives: the first call starts on
    the flaky node, whose one reset ejects it; it is healthy from then on, while the others
    keep failing. No call fails (the old planner failed every call for the 8–10 s of the
    ejection: the cap kept the dying node in, panic mode never engaged, the ejected node was
    never tried)."""
    gaps = [0.0] + [0.1] * 120  # 12 s of calls, 10 per second, longer than the ejection
    outcomes, by_port = asyncio.run(run_scenario(mix, gaps, seed=7, sync=sync, first_on=0))
    check_invariant(outcomes, by_port)
    failed = [o for o in outcomes if o.error is not None]
    assert failed == []
