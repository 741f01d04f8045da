"""The timing-dependent answers of the golden replay are accepted only in their documented period:
each answer at the moments Consul gives it, never outside them."""

from __future__ import annotations

import math

from golden_loader import HttpExchange, load_recordings
from golden_timed import (
    MEMBER_FAILED_AFTER_S,
    NO_PATH_AFTER_S,
    WOKEN_WATCHES,
    Interval,
    Moment,
    possible_answers,
    timed_exchange,
)

KILL = 100.0  # Consul time of the kill in these tests


def _exchange(file_prefix: str, position: int) -> HttpExchange:
    recorded = next(f for f in load_recordings() if f.name.startswith(file_prefix))
    entry = recorded.entries[position]
    assert isinstance(entry, HttpExchange)
    return entry


def _answers(
    exchange: HttpExchange, sent: float, answered: float, event: Interval | None
) -> set[str]:
    timed = timed_exchange(exchange)
    assert timed is not None, exchange.label
    moment = Moment(Interval(sent, answered), event)
    return {answer.name for answer, _ in possible_answers(timed, exchange, moment)}


def _after_kill(exchange: HttpExchange, sent: float, answered: float) -> set[str]:
    return _answers(exchange, KILL + sent, KILL + answered, Interval(KILL, KILL))


def test_wan_member_status_follows_the_failure_detection_time() -> None:
    members = _exchange("10_", 18)
    assert _after_kill(members, 0.02, 0.03) == {"n2.dc2 still alive (Status 1)"}
    late = MEMBER_FAILED_AFTER_S + 0.1
    assert _after_kill(members, late, late + 0.01) == {"n2.dc2 failed (Status 4)"}
    straddling = _after_kill(members, MEMBER_FAILED_AFTER_S - 0.01, MEMBER_FAILED_AFTER_S + 0.01)
    assert len(straddling) == 2


def test_dc2_reads_change_wording_at_no_path_time() -> None:
    read = _exchange("10_", 14)
    assert _after_kill(read, 0.006, 0.008) == {"connection refused"}
    assert _after_kill(read, NO_PATH_AFTER_S + 1, NO_PATH_AFTER_S + 1.1) == {
        "No path to datacenter"
    }


def test_eof_only_for_a_query_in_flight_at_the_kill() -> None:
    in_flight = _exchange("10_", 24)
    assert _after_kill(in_flight, -1.0, 0.01) == {
        "EOF (the query was in flight when the agent died)"
    }
    assert _after_kill(in_flight, 0.5, 0.51) == {"connection refused (sent after the kill)"}
    # never answered before the kill: no answer is right
    assert _answers(in_flight, KILL - 1.0, KILL - 0.5, None) == set()


def test_chained_watcher_alternatives_follow_the_write() -> None:
    watcher = _exchange("05_", 87)
    woken = "the write landed while it waited (index 109, as recorded)"
    ran_out = "wait ran out before the write (index 100, unchanged)"
    # the write was sent 0.5 s into the wait and answered at once: only the recorded wake-up
    assert _answers(watcher, 0.0, 0.51, Interval(0.5, 0.503)) == {woken}
    # the write was not even sent when the watcher answered: only "nothing changed"
    assert _answers(watcher, 0.0, 2.1, None) == {ran_out}
    # sent before the answer but could land after the wait ran out: all three are Consul's
    assert len(_answers(watcher, 0.0, 2.2, Interval(2.1, math.inf))) == 3


def test_woken_watch_uses_the_agents_record_of_when_its_wait_ran_out() -> None:
    """05#33 (5 s wait, woken by 05#32 1 s in): a write answered long after the send but
    before the agent's own wait for the watch ran out cannot have missed the watcher."""
    watch = _exchange("05_", 33)
    woken = "the write landed while it waited (index 52, as recorded)"
    ran_out = "wait ran out before the write (index 47, unchanged)"
    stalled_write = Interval(5.5, 5.6)  # answered 5.6 s after the watch was sent
    # the agent began holding the watch late (at 1.0): its wait ran out at 6.0, after the write
    late_hold = Moment(Interval(0.0, 6.1), stalled_write, wait_end=6.0 + 0.1)
    timed = timed_exchange(watch)
    assert timed is not None
    assert {a.name for a, _ in possible_answers(timed, watch, late_hold)} == {woken}
    # held from the send: its wait ran out at 5.0, before the write landed
    on_time = Moment(Interval(0.0, 6.1), stalled_write, wait_end=5.0)
    names = {a.name for a, _ in possible_answers(timed, watch, on_time)}
    assert ran_out in names and woken in names
    # the unchanged answer is the state 05#31 read, at the index the watch waited on
    unchanged = next(ex for a, ex in possible_answers(timed, watch, on_time) if a.name == ran_out)
    assert unchanged.headers["X-Consul-Index"] == "47"
    assert unchanged.response == _exchange("05_", 31).response


def test_every_woken_watch_starts_from_a_read_of_the_same_query_at_its_index() -> None:
    for watch in WOKEN_WATCHES:
        exchange = _exchange("05_", watch.position)
        start = _exchange("05_", watch.started_from)
        write = _exchange("05_", watch.write)
        assert start.route == exchange.route, watch
        drop = {"index", "wait"}
        assert {k: v for k, v in start.query.items() if k not in drop} == {
            k: v for k, v in exchange.query.items() if k not in drop
        }, watch
        started, waited_on = int(start.headers["X-Consul-Index"]), int(exchange.query["index"][0])
        if exchange.elapsed_ms < 1000 * watch.wait_s:  # woken: it waited on the read's index
            assert started == waited_on, watch
        else:  # an index above the current one (05#24): the read gave the current one
            assert started < waited_on, watch
        assert exchange.query["wait"] == [f"{watch.wait_s:g}s"], watch
        assert write.method == "PUT", watch
        assert start.position < write.position, watch


def test_reap_check_output_follows_its_two_second_ttl() -> None:
    read = _exchange("09b_", 1)
    registered = Interval(10.0, 10.002)
    assert _answers(read, 10.003, 10.004, registered) == {
        "TTL not run out yet (Output empty, as recorded)"
    }
    assert _answers(read, 12.1, 12.2, registered) == {"TTL ran out (Output 'TTL expired')"}
    assert len(_answers(read, 11.9, 12.1, registered)) == 2
    timed = timed_exchange(read)
    assert timed is not None
    ((_, variant),) = possible_answers(timed, read, Moment(Interval(13, 13.1), registered))
    assert variant.body["reap-1-ttl"]["Output"] == "TTL expired"
    assert variant.body["reap-1-ttl"]["Status"] == read.body["reap-1-ttl"]["Status"] == "critical"


def test_other_exchanges_are_compared_with_the_recording_only() -> None:
    assert timed_exchange(_exchange("10_", 19)) is None  # local dc1 read after the kill
    assert timed_exchange(_exchange("05_", 86)) is None
