"""The safety net under every source loop: a loop that raises anyway (a bug) is published as an
error with the last good set kept, logged once per episode, and run again after a backoff."""

from __future__ import annotations

import asyncio
import logging

import pytest

from manual_source import eps
from mcresolve.sources.base import RESTART_BACKOFF, PublishingSource, Resolution
from mcresolve.timing import Backoff, BackoffPolicy, Jitter

from .helpers import next_matching


class Crashing(PublishingSource):
    """Publishes a good set, then raises ``crashes`` times before publishing another one."""

    def __init__(self, crashes: int) -> None:
        super().__init__("crashing://test")
        self.crashes = crashes
        self.runs = 0

    def _restart_backoff(self) -> Backoff:
        return Backoff(BackoffPolicy(base=0.01, cap=0.02, jitter=Jitter.NONE), lambda: 0.5)

    async def _run(self) -> None:
        self.runs += 1
        if self.runs == 1:
            self._publish(Resolution.answered(eps(9001), self.description))
        if self.runs <= self.crashes:
            raise KeyError(f"bug number {self.runs}")
        self._publish(Resolution.answered(eps(9002), self.description))
        await asyncio.Event().wait()


async def test_a_crashing_loop_is_published_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mcresolve")
    async with Crashing(crashes=3) as source:
        failed = await next_matching(source, lambda r: r.error is not None)
        assert failed.stale and [e.port for e in failed.endpoints] == [9001]  # LKG kept
        assert isinstance(failed.error, KeyError)
        good = await next_matching(source, lambda r: r.ok)
        assert [e.port for e in good.endpoints] == [9002]
        assert source.restarts == 3 and source.runs == 4
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None  # one traceback per episode


def test_the_restart_backoff_is_documented_policy() -> None:
    assert RESTART_BACKOFF.base == 1.0 and RESTART_BACKOFF.cap == 30.0
