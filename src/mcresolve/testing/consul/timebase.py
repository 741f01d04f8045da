"""The emulator's clock: the event loop's monotonic time plus a time scale.

``scale`` multiplies every duration the emulator waits for (blocking waits, TTLs, check intervals,
the reaper, deferred syncs, failure detection), so tests can run Consul's minute-long rules in
milliseconds. ``1.0`` (the default) is Consul's real timing. It may be changed at run time; a new
value applies to waits that start afterwards.
"""

from __future__ import annotations

import asyncio


class EmulatorClock:
    """Monotonic time and scaled sleeping for one emulator."""

    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        self.scale = scale

    @staticmethod
    def now() -> float:
        """Monotonic seconds (the running loop's clock)."""
        return asyncio.get_running_loop().time()

    def scaled(self, consul_seconds: float) -> float:
        """Real seconds for a duration expressed in Consul's time."""
        return consul_seconds * self.scale

    def consul_elapsed(self, since: float) -> float:
        """Consul-time seconds elapsed since the monotonic instant ``since``."""
        return (self.now() - since) / self.scale

    async def sleep(self, consul_seconds: float) -> None:
        """Sleep for a duration expressed in Consul's time."""
        await asyncio.sleep(max(0.0, consul_seconds * self.scale))
