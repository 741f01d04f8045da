"""Exchanges whose recorded answer depends on *when* Consul answered, and every answer Consul
gives for them, each with the moments it gives it.

Around the SIGKILL of the dc2 agent (10_dc2_failure.json) Consul's answer changes over time: the
WAN member turns failed 0.5 s after the kill, ``?dc=dc2`` reads fail with a connection error and
later with ``No path to datacenter``, and a blocking query fails with ``EOF`` only if it was in
flight when the agent died. The recording holds one of these answers, taken at one moment; a
replay on a loaded machine reaches the same exchange a little earlier or later (in Consul time)
and must then see the answer Consul gives *at that moment*.

So such an exchange is compared with every answer whose period overlaps the replay's window
(the Consul-time seconds since the kill when the request was sent and when its answer came back),
and with no other: an answer is never accepted outside its documented period. Every period cites
the line of the recordings' README and the recorded exchanges it comes from.

The same holds for a blocking query woken by a write sent while it waits (05: a watch with a 5 s
wait woken by a write 1 s in, replayed at 1/20 of Consul's time, so 200 ms of real time apart):
if the replay could only send the write after the agent's wait for the watch had run out (a
stall of the loaded machine), Consul answers what it answers when nothing changes: the state
and index of the recorded read the watch started from. When the wait ran out is taken from the
agent's own record of the held query (:class:`~mcresolve.testing.consul.http_api.HeldQuery`),
in Consul time, not from the wall clock.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from golden_loader import GOLDEN_DIR, HttpExchange, load_file

#: README, "Remote datacenter failure": "The WAN member `n2.dc2` was shown as failed (Status 4)
#: 0.5 s after the kill"; recorded 10#18 (22 ms after the kill: Status 1) and 10#22 (544 ms:
#: Status 4).
MEMBER_FAILED_AFTER_S = 0.5
#: README, "Remote datacenter failure": "Next, every `?dc=dc2` call failed at once (~1 ms) with
#: 500 `rpc error getting client: ...connection refused`; from 54.6 s after the kill the message
#: became 500 `No path to datacenter`"; recorded 10#14 (6 ms) and 10#23 (54631 ms).
NO_PATH_AFTER_S = 54.6

KILLED_DC = "dc2"
KILLED_MEMBER = "n2.dc2"
REFUSED = (
    "rpc error getting client: failed to get conn: dial tcp 127.0.0.1:0->127.0.0.1:8330: "
    "connect: connection refused"
)
NO_PATH = "No path to datacenter"
IN_FLIGHT_EOF = "rpc error making call: EOF"


#: README, "Blocking queries": "Nothing changes: the query returns at `wait` plus random jitter
#: of up to wait/16, with status 200, the same index and the same body."
NOTHING_CHANGED_CITE = (
    "README 'Blocking queries': nothing changes: the query returns at wait plus jitter, status "
    "200, the same index and the same body"
)


@dataclass(frozen=True)
class Interval:
    """Consul-time seconds: when a request was sent (``start``) and when its answer had arrived
    (``end``, ``math.inf`` while it has not); the server acted somewhere in between."""

    start: float
    end: float


@dataclass(frozen=True)
class Window:
    """Consul-time seconds since the reference event (the kill) when the request was sent
    (``sent``) and when its answer had arrived (``answered``)."""

    sent: float
    answered: float

    def overlaps(self, start: float, end: float) -> bool:
        """Whether Consul may have answered within ``[start, end)`` after the event."""
        return self.sent < end and self.answered >= start


@dataclass(frozen=True)
class Moment:
    """What decides a timed answer: when this exchange ran, when its reference event ran
    (``None``: not yet) and, for a blocking query the agent held, when the agent's wait for it
    ran out (``None``: not held, or not known)."""

    exchange: Interval
    event: Interval | None
    wait_end: float | None = None

    def since_event(self) -> Window | None:
        """The exchange's interval relative to the start of an instantaneous event."""
        if self.event is None:
            return None
        return Window(self.exchange.start - self.event.start, self.exchange.end - self.event.start)


def _after_event(start: float, end: float) -> Callable[[Moment], bool]:
    """Possible if Consul may have answered within ``[start, end)`` seconds after the event."""

    def possible(moment: Moment) -> bool:
        window = moment.since_event()
        return window is not None and window.overlaps(start, end)

    return possible


@dataclass(frozen=True)
class TimedAnswer:
    """One answer Consul gives for an exchange, and when it gives it."""

    name: str
    citation: str
    possible: Callable[[Moment], bool]
    response: Callable[[HttpExchange], dict[str, Any]]
    #: the recorded duration of this answer (ms; ``None``: as recorded), for the timing check
    elapsed_ms: float | None = None


@dataclass(frozen=True)
class TimedExchange:
    """Which exchanges are timing-dependent, and their answers."""

    name: str
    applies: Callable[[HttpExchange], bool]
    answers: tuple[TimedAnswer, ...]
    #: the event the answers depend on: ``"kill dc2"`` or a recorded exchange's label prefix
    #: (``"05_blocking_queries.json#88"``)
    event: str = "kill dc2"


def _text_error(message: str) -> Callable[[HttpExchange], dict[str, Any]]:
    """The recorded forwarded-error response (500, X-Consul-Index 0...) with another message."""

    def response(exchange: HttpExchange) -> dict[str, Any]:
        out = copy.deepcopy(exchange.response)
        out["status"] = 500
        out["body_format"] = "text"
        out["body"] = message
        return out

    return response


def _member_status(status: int) -> Callable[[HttpExchange], dict[str, Any]]:
    """The recorded WAN member list with the killed agent's member in ``status``."""

    def response(exchange: HttpExchange) -> dict[str, Any]:
        out = copy.deepcopy(exchange.response)
        for member in out["body"]:
            if member.get("Name") == KILLED_MEMBER:
                member["Status"] = status
        return out

    return response


def _in_flight_at_event(moment: Moment) -> bool:
    window = moment.since_event()
    return window is not None and window.sent < 0 <= window.answered


def _sent_after_event(start: float, end: float) -> Callable[[Moment], bool]:
    overlaps = _after_event(start, end)

    def possible(moment: Moment) -> bool:
        window = moment.since_event()
        return window is not None and window.sent >= 0 and overlaps(moment)

    return possible


def _woken_by_write(moment: Moment) -> bool:
    """The write had been sent before the watcher's answer arrived."""
    return moment.event is not None and moment.event.start < moment.exchange.end


#: README, "Blocking queries": "A change wakes the watcher 2-30 ms after the write request is
#: sent": a write done less than this before the wait runs out may be answered after it.
WAKE_LATENCY_MAX_S = 0.030


def _wait_ran_out_first(wait_s: float) -> Callable[[Moment], bool]:
    """The write may have reached Consul, or woken the watcher, only after the watcher's wait
    had run out (the agent's record of the held query; else ``wait_s`` after the send)."""

    def possible(moment: Moment) -> bool:
        wait_end = moment.wait_end
        if wait_end is None:
            wait_end = moment.exchange.start + wait_s
        return moment.event is None or moment.event.end + WAKE_LATENCY_MAX_S >= wait_end

    return possible


def _both(*tests: Callable[[Moment], bool]) -> Callable[[Moment], bool]:
    return lambda moment: all(test(moment) for test in tests)


@functools.cache
def _recorded(file: str, position: int) -> HttpExchange:
    entry = load_file(GOLDEN_DIR / file).entries[position]
    assert isinstance(entry, HttpExchange)
    return entry


def _as_read_by(position: int) -> Callable[[HttpExchange], dict[str, Any]]:
    """Nothing changed: the state and index the watcher started from (the answer of the
    recorded read at ``position`` of the same file)."""

    def response(exchange: HttpExchange) -> dict[str, Any]:
        return copy.deepcopy(_recorded(exchange.file, position).response)

    return response


def _as_recorded(exchange: HttpExchange) -> dict[str, Any]:
    return copy.deepcopy(exchange.response)


def _after_kill(exchange: HttpExchange) -> bool:
    return exchange.file.startswith("10_") and "after kill" in exchange.step


def _dc2_read(exchange: HttpExchange) -> bool:
    return (
        exchange.file.startswith("10_")
        and exchange.method == "GET"
        and exchange.query.get("dc") == [KILLED_DC]
        and exchange.status == 500
    )


_REFUSED_CITE = (
    "README 'Remote datacenter failure': next, every ?dc=dc2 call failed at once with 500 "
    "rpc error getting client ... connection refused (10#14)"
)
_NO_PATH_CITE = (
    "README 'Remote datacenter failure': from 54.6 s after the kill the message became 500 "
    "No path to datacenter (10#23, 10#26)"
)

_BLOCKING_FILE = "05_blocking_queries.json"


@dataclass(frozen=True)
class WokenWatch:
    """A recorded blocking query of 05 and the write sent while it waited, with the recorded
    read whose state and index it started from (same endpoint and filters, the ``?index`` it
    waits on)."""

    position: int
    wait_s: float
    write: int
    started_from: int
    why: str


#: README, "Blocking queries", each with the exchanges it was recorded from.
WOKEN_WATCHES: tuple[WokenWatch, ...] = (
    WokenWatch(
        24,
        5.0,
        23,
        22,
        "an index above the current one blocks for the full wait even if the service changes "
        "meanwhile, then returns the current index (05#24 after the write 05#23; 05#22 read 45)",
    ),
    WokenWatch(
        33,
        5.0,
        32,
        31,
        "a node-level check change on a node that hosts an instance wakes it (05#33 woken by "
        "05#32; 05#31 read index 47)",
    ),
    WokenWatch(
        67,
        5.0,
        66,
        62,
        "a watcher of a service that does not exist is woken by an unrelated registration "
        "(05#67 woken by 05#66; 05#62 read index 96)",
    ),
    WokenWatch(
        73,
        5.0,
        72,
        71,
        "an identical agent re-register writes once and wakes the watcher (05#73 woken by "
        "05#72; 05#71 read index 96)",
    ),
    WokenWatch(
        87,
        2.0,
        88,
        86,
        "an identical agent re-register writes once and wakes the watcher (05#87 woken by "
        "05#88 0.5 s into its wait, 05#89; 05#86 read index 100)",
    ),
)


def _woken_watch(watch: WokenWatch) -> TimedExchange:
    recorded = _recorded(_BLOCKING_FILE, watch.position)
    waited_full = recorded.elapsed_ms >= 0.9 * watch.wait_s * 1000
    ran_out = _wait_ran_out_first(watch.wait_s)
    new_index = recorded.headers.get("X-Consul-Index")
    old_index = _recorded(_BLOCKING_FILE, watch.started_from).headers.get("X-Consul-Index")
    answers = [
        TimedAnswer(
            f"the write landed while it waited (index {new_index}, as recorded)",
            f"README 'Blocking queries': {watch.why}",
            _woken_by_write,
            _as_recorded,
        )
    ]
    if not waited_full:
        answers.append(
            TimedAnswer(
                f"wait ran out as the write landed (index {new_index} after the full wait)",
                "README 'Blocking queries': a query that waits out its wait returns the state "
                "current then; a change wakes the watcher 2-30 ms after the write is sent",
                _both(_woken_by_write, ran_out),
                _as_recorded,
                elapsed_ms=watch.wait_s * 1000,
            )
        )
    answers.append(
        TimedAnswer(
            f"wait ran out before the write (index {old_index}, unchanged)",
            NOTHING_CHANGED_CITE + f" (the state 05#{watch.started_from} read)",
            ran_out,
            _as_read_by(watch.started_from),
            elapsed_ms=watch.wait_s * 1000,
        )
    )
    return TimedExchange(
        f"watch 05#{watch.position} and the write 05#{watch.write} sent while it waits",
        lambda ex, position=watch.position: ex.file == _BLOCKING_FILE and ex.position == position,
        tuple(answers),
        event=f"{_BLOCKING_FILE}#{watch.write}",
    )


WATCHES_WOKEN_BY_A_WRITE = tuple(_woken_watch(watch) for watch in WOKEN_WATCHES)

#: 09b#0 registers ``reap-1`` with a TTL check of 2 s (``"TTL": "2s"``), never passed.
REAP_TTL_S = 2.0
#: README, "TTL": "Output becomes ``TTL expired (last output before timeout follows): <previous
#: output>``"; with no previous output it is ``TTL expired`` (the expired TTL checks of 05, 09).
TTL_EXPIRED = "TTL expired"


def _ttl_not_expired(moment: Moment) -> bool:
    """Read before the TTL could have run out (it starts when the registration is handled)."""
    return moment.event is not None and moment.exchange.start < moment.event.end + REAP_TTL_S


def _ttl_expired(moment: Moment) -> bool:
    return moment.event is not None and moment.exchange.end >= moment.event.start + REAP_TTL_S


def _reap_check_expired(exchange: HttpExchange) -> dict[str, Any]:
    out = copy.deepcopy(exchange.response)
    out["body"]["reap-1-ttl"]["Output"] = TTL_EXPIRED
    return out


REAP_CHECK_READ = TimedExchange(
    "the 2 s TTL check of 09b#0 read right after its registration",
    lambda ex: ex.file.startswith("09b_") and ex.position == 1,
    (
        TimedAnswer(
            "TTL not run out yet (Output empty, as recorded)",
            "09b#1, read 1.1 ms after the registration 09b#0: critical from the start, Output ''",
            _ttl_not_expired,
            _as_recorded,
        ),
        TimedAnswer(
            "TTL ran out (Output 'TTL expired')",
            "README 'TTL expiry': the Output becomes 'TTL expired (last output before timeout "
            "follows): <previous output>', 'TTL expired' with none (05, 09: expired checks)",
            _ttl_expired,
            _reap_check_expired,
        ),
    ),
    event="09b_deregister_critical_service_after.json#0",
)

TIMED_EXCHANGES: tuple[TimedExchange, ...] = (
    *WATCHES_WOKEN_BY_A_WRITE,
    REAP_CHECK_READ,
    TimedExchange(
        "WAN members after the kill",
        lambda ex: _after_kill(ex) and ex.route == "/v1/agent/members" and ex.status == 200,
        (
            TimedAnswer(
                "n2.dc2 still alive (Status 1)",
                "README 'Remote datacenter failure': shown as failed 0.5 s after the kill; "
                "alive before (10#18, 22 ms after the kill)",
                _after_event(-math.inf, MEMBER_FAILED_AFTER_S),
                _member_status(1),
            ),
            TimedAnswer(
                "n2.dc2 failed (Status 4)",
                "README 'Remote datacenter failure': the WAN member n2.dc2 was shown as failed "
                "(Status 4) 0.5 s after the kill (10#22, 544 ms after the kill)",
                _after_event(MEMBER_FAILED_AFTER_S, math.inf),
                _member_status(4),
            ),
        ),
    ),
    TimedExchange(
        "?dc=dc2 blocking query in flight at the kill",
        lambda ex: _dc2_read(ex) and "index" in ex.query and ex.body == IN_FLIGHT_EOF,
        (
            TimedAnswer(
                "EOF (the query was in flight when the agent died)",
                "README 'Remote datacenter failure': a blocking ?dc=dc2 query in progress "
                "failed 6 ms after the kill: 500 rpc error making call: EOF (10#24)",
                _in_flight_at_event,
                _text_error(IN_FLIGHT_EOF),
            ),
            TimedAnswer(
                "connection refused (sent after the kill)",
                _REFUSED_CITE,
                _sent_after_event(0.0, NO_PATH_AFTER_S),
                _text_error(REFUSED),
            ),
            TimedAnswer(
                "No path to datacenter (sent long after the kill)",
                _NO_PATH_CITE,
                _sent_after_event(NO_PATH_AFTER_S, math.inf),
                _text_error(NO_PATH),
            ),
        ),
    ),
    TimedExchange(
        "?dc=dc2 reads after the kill",
        lambda ex: _dc2_read(ex) and "index" not in ex.query,
        (
            TimedAnswer(
                "connection refused",
                _REFUSED_CITE,
                _after_event(0.0, NO_PATH_AFTER_S),
                _text_error(REFUSED),
            ),
            TimedAnswer(
                "No path to datacenter",
                _NO_PATH_CITE,
                _after_event(NO_PATH_AFTER_S, math.inf),
                _text_error(NO_PATH),
            ),
        ),
    ),
)


def timed_exchange(exchange: HttpExchange) -> TimedExchange | None:
    """The timing-dependent description of ``exchange``, if it is one."""
    return next((t for t in TIMED_EXCHANGES if t.applies(exchange)), None)


def variant(exchange: HttpExchange, answer: TimedAnswer) -> HttpExchange:
    """``exchange`` as if Consul had given ``answer``."""
    raw = copy.deepcopy(exchange.raw)
    raw["response"] = answer.response(exchange)
    if answer.elapsed_ms is not None:
        raw["elapsed_ms"] = answer.elapsed_ms
    return HttpExchange(exchange.file, exchange.position, exchange.step, raw)


def possible_answers(
    timed: TimedExchange, exchange: HttpExchange, moment: Moment
) -> list[tuple[TimedAnswer, HttpExchange]]:
    """The answers Consul may give for ``exchange`` at ``moment``, as recorded exchanges to
    compare with (possibly none: then no answer is right)."""
    return [(a, variant(exchange, a)) for a in timed.answers if a.possible(moment)]
