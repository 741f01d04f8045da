"""Pure rules of the emulator: Go durations, blocking parameters, the ?passing order."""

from __future__ import annotations

import pytest

from mcresolve.testing.consul import EmulatorError
from mcresolve.testing.consul.durations import GoDurationError, parse_go_duration
from mcresolve.testing.consul.queries import filter_passing, parse_blocking


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("2.5s", 2.5),
        ("100ms", 0.1),
        ("0", 0.0),
        ("-1s", -1.0),
        ("1h", 3600.0),
        ("15m", 900.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10", 'time: missing unit in duration "10"'),
        ("ten", 'time: invalid duration "ten"'),
        ("5S", 'time: unknown unit "S" in duration "5S"'),
    ],
)
def test_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(GoDurationError, match=message):
        parse_go_duration(text)


def test_blocking_parameters() -> None:
    assert parse_blocking({}).wait == 300.0
    assert parse_blocking({"wait": ["0s"]}).wait == 300.0
    assert parse_blocking({"wait": ["-1s"]}).wait == 300.0
    assert parse_blocking({"wait": [""]}).wait == 300.0
    assert parse_blocking({"wait": ["1h"]}).wait == 600.0
    assert parse_blocking({"wait": ["1m30s"], "index": ["7"]}).index == 7
    assert parse_blocking({"index": [""]}).index == 0
    for bad in ("5", "abc", "5S"):
        with pytest.raises(EmulatorError, match="Invalid wait time"):
            parse_blocking({"wait": [bad]})
    for bad in ("abc", "-1", "1.5"):
        with pytest.raises(EmulatorError, match="Invalid index"):
            parse_blocking({"index": [bad]})


def test_passing_filter_replaces_dropped_entries_with_the_last_one() -> None:
    def entry(name: str, status: str) -> dict[str, object]:
        return {"Service": {"ID": name}, "Checks": [{"Status": status}]}

    entries = [
        entry("x1", "passing"),
        entry("x2", "warning"),
        entry("a", "warning"),
        entry("b", "passing"),
        entry("c", "passing"),
        entry("http", "passing"),
    ]
    kept = [e["Service"]["ID"] for e in filter_passing(entries)]  # type: ignore[index]
    assert kept == ["x1", "http", "c", "b"]  # as recorded in 03_ttl_transitions.json
