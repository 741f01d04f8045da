"""The emulator's clock: Consul time derived from the event loop's monotonic time and a scale.

``scale`` multiplies every duration the emulator waits for (blocking waits, TTLs, check intervals,
the reaper, deferred syncs, failure detection), so tests can run Consul's minute-long rules in
milliseconds. ``1.0`` (the default) is Consul's real timing. The scale may be changed at run
time: Consul time then advances at the new rate, and sleeps in progress adapt.
"""

from __future__ import annotations

import asyncio
import time


class EmulatorClock:
    """Consul time (seconds) and scaled sleeping for one emulator."""

    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        self._scale = scale
        self._real_base = time.monotonic()
        self._consul_base = 0.0
        self._rescaled = asyncio.Event()

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        if value <= 0:
            raise ValueError("time scale must be > 0")
        self._consul_base = self.consul_now()
        self._real_base = time.monotonic()
        self._scale = value
        self._rescaled.set()
        self._rescaled = asyncio.Event()

    @staticmethod
    def now() -> float:
        """Real monotonic seconds."""
        return time.monotonic()

    def consul_now(self) -> float:
        """Consul-time seconds since the clock was made (advances at 1/scale of real time)."""
        return self._consul_base + (time.monotonic() - self._real_base) / self._scale

    def scaled(self, consul_seconds: float) -> float:
        """Real seconds for a duration expressed in Consul time, at the current scale."""
        return consul_seconds * self._scale

    def consul_elapsed(self, since: float) -> float:
        """Consul-time seconds elapsed since the Consul-time instant ``since``."""
        return self.consul_now() - since

    async def sleep(self, consul_seconds: float) -> None:
        """Sleep for a duration expressed in Consul time (following scale changes)."""
        target = self.consul_now() + max(0.0, consul_seconds)
        while True:
            remaining = (target - self.consul_now()) * self._scale
            if remaining <= 0:
                return
            rescaled = self._rescaled
            try:
                await asyncio.wait_for(rescaled.wait(), remaining)
            except TimeoutError:
                return
