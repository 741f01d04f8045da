"""The shared ``async with`` mixins: what is awaited on entry and exit, and what is bound."""

from __future__ import annotations

import warnings

import pytest

from mcresolve import lifecycle
from mcresolve.consul import ConsulClient, ConsulConfig, ConsulError
from mcresolve.lifecycle import AsyncClosing, AsyncStartClose, AsyncStartStop


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


class _Service(AsyncStartClose):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def aclose(self) -> None:
        self.calls.append("aclose")


class _Neither(AsyncStartClose):
    async def start(self) -> None:
        return None


async def test_start_close_closes_with_aclose_on_exit() -> None:
    service = _Service()
    async with service as bound:
        assert bound is service
    assert service.calls == ["start", "aclose"]


async def test_stop_is_a_deprecated_alias_of_aclose_that_warns_once_per_class() -> None:
    lifecycle._warned.discard((_Service, "stop"))
    service = _Service()
    with pytest.warns(DeprecationWarning, match=r"_Service\.stop\(\) is deprecated"):
        await service.stop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await _Service().stop()  # the second time: no warning
    assert service.calls == ["aclose"]


async def test_a_subclass_without_aclose_or_stop_says_so() -> None:
    with pytest.raises(NotImplementedError, match="_Neither must implement aclose"):
        await _Neither().aclose()


async def test_public_async_objects_close_with_aclose_and_keep_their_old_verb() -> None:
    """The Consul client's old ``close()`` still closes, with a DeprecationWarning."""
    lifecycle._warned.discard((ConsulClient, "close"))
    client = ConsulClient(ConsulConfig.for_addresses("127.0.0.1:1"))
    with pytest.warns(DeprecationWarning, match=r"ConsulClient\.close\(\) is deprecated"):
        await client.close()
    with pytest.raises(ConsulError, match="closed"):
        await client.agent_self()
    async with ConsulClient(ConsulConfig.for_addresses("127.0.0.1:1")) as other:
        assert isinstance(other, AsyncClosing)
    with pytest.raises(ConsulError, match="closed"):
        await other.agent_self()
