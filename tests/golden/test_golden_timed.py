"""The timing-dependent answers of the golden replay are accepted only in their documented period:
each answer at the moments Consul gives it, never outside them."""

from __future__ import annotations

import math

from golden_loader import HttpExchange, load_recordings
from golden_timed import (
    MEMBER_FAILED_AFTER_S,
    NO_PATH_AFTER_S,
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
    woken = "woken by the write (index 100 -> 109)"
    ran_out = "wait ran out before the write (index 100, unchanged)"
    # the write was sent 0.5 s into the wait and answered at once: only the recorded wake-up
    assert _answers(watcher, 0.0, 0.51, Interval(0.5, 0.503)) == {woken}
    # the write was not even sent when the watcher answered: only "nothing changed"
    assert _answers(watcher, 0.0, 2.1, None) == {ran_out}
    # sent before the answer but could land after the wait ran out: all three are Consul's
    assert len(_answers(watcher, 0.0, 2.2, Interval(2.1, math.inf))) == 3


def test_other_exchanges_are_compared_with_the_recording_only() -> None:
    assert timed_exchange(_exchange("10_", 19)) is None  # local dc1 read after the kill
    assert timed_exchange(_exchange("05_", 86)) is None
