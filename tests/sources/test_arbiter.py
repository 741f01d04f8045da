"""The pure composition rules: last known good, suspect empty answers, fallback engagement."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from manual_source import eps
from mcresolve.sources.arbiter import Arbiter, ArbiterPolicy
from mcresolve.sources.base import Resolution
from mcresolve.sources.target import parse_target

DESC = "consul://svc"


def good(*ports: int, dc: str = "dc1") -> Resolution:
    return Resolution(eps(*ports, dc=dc), DESC, dc, resolved_at=1000.0)


def failed(error: Exception | None = None) -> Resolution:
    return Resolution((), DESC, stale=True, error=error or ConnectionError("down"))


def test_policy_from_target_options() -> None:
    options = parse_target("consul://svc?empty-hold=2s&empty-confirm=4&fallback-after=30s").options
    assert ArbiterPolicy.from_options(options) == ArbiterPolicy(2.0, 4, 30.0)


def test_nothing_published_before_any_answer() -> None:
    decision = Arbiter(ArbiterPolicy(), DESC).start(0.0)
    assert (decision.publish, decision.fallback_wanted, decision.wake_at) == (None, False, None)


def test_good_answer_is_published_fresh_and_persisted() -> None:
    arbiter = Arbiter(ArbiterPolicy(), DESC)
    decision = arbiter.on_primary(good(1, 2), 0.0)
    assert decision.publish is not None
    assert decision.publish.endpoints == eps(1, 2)
    assert decision.publish.ok
    assert decision.snapshot == decision.publish
    # the same set again: nothing new to publish or persist
    again = arbiter.on_primary(good(1, 2), 1.0)
    assert (again.publish, again.snapshot) == (None, None)


def test_failure_keeps_lkg_with_error_and_age() -> None:
    arbiter = Arbiter(ArbiterPolicy(), DESC)
    arbiter.on_primary(good(1, 2), 0.0)
    error = ConnectionError("agent down")
    decision = arbiter.on_primary(failed(error), 5.0)
    assert decision.publish is not None
    assert decision.publish.endpoints == eps(1, 2)
    assert decision.publish.stale and decision.publish.error is error
    assert decision.publish.age(now=1030.0) == 30.0
    assert not decision.fallback_wanted  # an LKG exists and fallback_after is not set
    recovered = arbiter.on_primary(good(1, 2), 9.0)
    assert recovered.publish is not None and recovered.publish.ok


def test_failure_without_lkg_wants_the_fallback_at_once() -> None:
    arbiter = Arbiter(ArbiterPolicy(), DESC)
    decision = arbiter.on_primary(failed(), 0.0)
    assert decision.fallback_wanted
    assert decision.publish is not None and decision.publish.endpoints == ()
    with_fallback = arbiter.on_fallback(
        Resolution(eps(9), "static://127.0.0.1:9", resolved_at=1.0), 0.1
    )
    assert with_fallback.publish is not None
    assert with_fallback.publish.endpoints == eps(9)
    assert with_fallback.publish.fallback
    assert isinstance(with_fallback.publish.error, ConnectionError)
    back = arbiter.on_primary(good(1), 3.0)
    assert not back.fallback_wanted
    assert back.publish is not None and back.publish.endpoints == eps(1)
    assert not back.publish.fallback


def test_fallback_after_a_delay_even_with_lkg() -> None:
    arbiter = Arbiter(ArbiterPolicy(fallback_after=30.0), DESC)
    arbiter.on_primary(good(1), 0.0)
    first = arbiter.on_primary(failed(), 10.0)
    assert not first.fallback_wanted
    assert first.wake_at == 40.0
    assert not arbiter.tick(39.9).fallback_wanted
    assert arbiter.tick(40.0).fallback_wanted


def test_empty_fallback_does_not_replace_lkg() -> None:
    arbiter = Arbiter(ArbiterPolicy(fallback_after=0.0), DESC)
    arbiter.on_primary(good(1), 0.0)
    arbiter.on_primary(failed(), 1.0)
    decision = arbiter.on_fallback(Resolution((), "dns://x", resolved_at=2.0), 2.0)
    assert decision.publish is None or decision.publish.endpoints == eps(1)
    assert arbiter.tick(3.0).fallback_wanted


def test_empty_after_non_empty_is_held_until_confirmed_by_count() -> None:
    arbiter = Arbiter(ArbiterPolicy(empty_hold=60.0, empty_confirm=3), DESC)
    arbiter.on_primary(good(1, 2), 0.0)
    held = arbiter.on_primary(good(), 1.0)
    assert held.publish is not None
    assert held.publish.endpoints == eps(1, 2)
    assert held.publish.suspect_empty and held.publish.stale
    assert held.wake_at == 61.0
    assert arbiter.on_primary(good(), 2.0).publish is None
    confirmed = arbiter.on_primary(good(), 3.0)
    assert confirmed.publish is not None
    assert confirmed.publish.endpoints == ()
    assert not confirmed.publish.suspect_empty
    assert confirmed.snapshot is None  # empty sets are never persisted


def test_empty_is_confirmed_by_time() -> None:
    arbiter = Arbiter(ArbiterPolicy(empty_hold=5.0, empty_confirm=100), DESC)
    arbiter.on_primary(good(1), 0.0)
    held = arbiter.on_primary(good(), 10.0)
    assert held.wake_at == 15.0
    still = arbiter.tick(14.0)
    assert still.publish is None
    confirmed = arbiter.tick(15.0)
    assert confirmed.publish is not None and confirmed.publish.endpoints == ()
    assert confirmed.wake_at is None


def test_a_non_empty_answer_ends_the_suspicion() -> None:
    arbiter = Arbiter(ArbiterPolicy(empty_hold=5.0, empty_confirm=2), DESC)
    arbiter.on_primary(good(1), 0.0)
    arbiter.on_primary(good(), 1.0)
    back = arbiter.on_primary(good(1, 3), 2.0)
    assert back.publish is not None and back.publish.endpoints == eps(1, 3)
    assert back.wake_at is None
    # the count starts over: one more empty answer is held again
    held = arbiter.on_primary(good(), 3.0)
    assert held.publish is not None and held.publish.suspect_empty


def test_empty_hold_zero_accepts_empty_at_once() -> None:
    arbiter = Arbiter(ArbiterPolicy(empty_hold=0.0), DESC)
    arbiter.on_primary(good(1), 0.0)
    decision = arbiter.on_primary(good(), 1.0)
    assert decision.publish is not None and decision.publish.endpoints == ()


def test_empty_first_answer_is_not_suspect() -> None:
    arbiter = Arbiter(ArbiterPolicy(), DESC)
    decision = arbiter.on_primary(good(), 0.0)
    assert decision.publish is not None
    assert decision.publish.endpoints == () and decision.publish.ok


def test_warm_start_publishes_snapshot_as_stale_then_replaces_it() -> None:
    warm = Resolution(eps(5), "snapshot:/x.json", "dc1", resolved_at=10.0, stale=True)
    arbiter = Arbiter(ArbiterPolicy(), DESC, warm=warm)
    start = arbiter.start(0.0)
    assert start.publish is not None
    assert start.publish.endpoints == eps(5) and start.publish.stale
    assert start.publish.source == "snapshot:/x.json"
    # Consul down at start: the snapshot is served, no fallback needed
    down = arbiter.on_primary(failed(), 1.0)
    assert not down.fallback_wanted
    assert down.publish is not None and down.publish.endpoints == eps(5)
    fresh = arbiter.on_primary(good(5), 2.0)
    assert fresh.publish is not None and fresh.publish.ok
    assert fresh.snapshot is not None  # same endpoints, but now confirmed: persisted again


def test_warm_start_then_empty_answer_is_suspect() -> None:
    warm = Resolution(eps(5), "snapshot:/x.json", resolved_at=10.0, stale=True)
    arbiter = Arbiter(ArbiterPolicy(), DESC, warm=warm)
    arbiter.start(0.0)
    decision = arbiter.on_primary(good(), 1.0)
    assert decision.publish is not None and decision.publish.suspect_empty
    assert decision.publish.endpoints == eps(5)


# --- properties ----------------------------------------------------------------------------

_events = st.lists(
    st.tuples(
        st.sampled_from(["good", "empty", "fail", "tick", "fallback"]),
        st.floats(min_value=0.0, max_value=5.0),
        st.integers(min_value=1, max_value=4),
    ),
    max_size=40,
)


@given(
    events=_events,
    hold=st.floats(min_value=0.0, max_value=20.0),
    confirm=st.integers(min_value=1, max_value=5),
    after=st.one_of(st.none(), st.floats(min_value=0.0, max_value=20.0)),
)
def test_invariants(
    events: list[tuple[str, float, int]], hold: float, confirm: int, after: float | None
) -> None:
    arbiter = Arbiter(ArbiterPolicy(hold, confirm, after), DESC)
    now = 0.0
    published: Resolution | None = None
    empty_run = 0
    empty_since: float | None = None
    failing = False
    for kind, step, size in events:
        now += step
        if kind == "good":
            decision = arbiter.on_primary(good(*range(1, size + 1)), now)
            failing, empty_run, empty_since = False, 0, None
        elif kind == "empty":
            decision = arbiter.on_primary(good(), now)
            failing = False
            empty_run += 1
            empty_since = now if empty_since is None else empty_since
        elif kind == "fail":
            decision = arbiter.on_primary(failed(), now)
            failing = True
        elif kind == "fallback":
            decision = arbiter.on_fallback(Resolution(eps(99), "static://x"), now)
        else:
            decision = arbiter.tick(now)
        before = published
        if decision.publish is not None:
            published = decision.publish
        # the fallback is only ever wanted while the primary fails
        if decision.fallback_wanted:
            assert failing
        # a fallback set is published only while the fallback is wanted
        if published is not None and published.fallback:
            assert decision.fallback_wanted
        # a non-empty primary set is never emptied by an unconfirmed empty answer
        if (
            before is not None
            and before.endpoints
            and not before.fallback
            and published is not None
            and not published.endpoints
            and empty_since is not None
            and hold > 0
        ):
            assert empty_run >= confirm or now - empty_since >= hold
        # suspicion is always visible
        if published is not None and published.suspect_empty:
            assert published.stale
        # snapshots are only ever fresh non-empty primary answers
        if decision.snapshot is not None:
            assert decision.snapshot.endpoints and decision.snapshot.ok
            assert not decision.snapshot.fallback
