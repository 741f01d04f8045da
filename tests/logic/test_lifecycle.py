"""The shared ``async with`` mixins: what is awaited on entry and exit, and what is bound."""

from __future__ import annotations

import pytest

from mcresolve.lifecycle import AsyncClosing, AsyncStartStop


class _Recorder(AsyncStartStop):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> str:
        self.calls.append("start")
        return "ignored"

    async def stop(self) -> None:
        self.calls.append("stop")


class _Closable(AsyncClosing):
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_start_stop_binds_the_object_and_stops_on_exit() -> None:
    recorder = _Recorder()
    async with recorder as bound:
        assert bound is recorder
        assert recorder.calls == ["start"]
    assert recorder.calls == ["start", "stop"]


async def test_start_stop_stops_when_the_body_raises_and_lets_the_error_through() -> None:
    recorder = _Recorder()
    with pytest.raises(LookupError, match="body"):
        async with recorder:
            raise LookupError("body")
    assert recorder.calls == ["start", "stop"]


async def test_closing_binds_the_object_without_starting_and_closes_on_exit() -> None:
    closable = _Closable()
    with pytest.raises(LookupError, match="body"):
        async with closable as bound:
            assert bound is closable
            assert closable.closed == 0
            raise LookupError("body")
    assert closable.closed == 1


def test_the_mixins_cannot_be_used_without_their_steps() -> None:
    with pytest.raises(TypeError, match="abstract"):
        AsyncStartStop()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="abstract"):
        AsyncClosing()  # type: ignore[abstract]
