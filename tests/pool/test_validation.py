"""Wrong arguments to the pool fail at once with the parameter's name, not deep inside."""

from __future__ import annotations

import inspect

import pytest

from mcresolve import lifecycle
from mcresolve.errors import PoolClosed
from mcresolve.pool import BackgroundPool, EndpointPool
from mcresolve.sources.target import parse_target

STATIC = "static://127.0.0.1:9001,127.0.0.1:9002"


@pytest.mark.parametrize("source", [None, 123, 1.5, b"static://127.0.0.1:9001", object()])
def test_a_source_of_the_wrong_type_is_a_type_error_naming_the_parameter(source: object) -> None:
    with pytest.raises(TypeError, match="source must be"):
        EndpointPool(source)  # type: ignore[arg-type]


@pytest.mark.parametrize("source", [None, 123])
def test_a_background_pool_checks_its_source_before_starting_anything(source: object) -> None:
    with pytest.raises(TypeError, match="source must be"):
        BackgroundPool(source)  # type: ignore[arg-type]


def test_a_parsed_target_and_a_string_are_both_accepted() -> None:
    assert EndpointPool(parse_target(STATIC)).source.description.startswith("static://")
    assert EndpointPool(STATIC).source.description.startswith("static://")


async def test_wait_ready_with_a_string_timeout_is_a_type_error() -> None:
    async with EndpointPool(STATIC) as pool:
        with pytest.raises(TypeError, match="timeout must be a number"):
            await pool.wait_ready("2")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be a non-negative"):
            await pool.wait_ready(-1)
        assert (await pool.wait_ready(1.0)).usable == 2  # a number still works


@pytest.mark.parametrize("ready_timeout", [-1, -0.5, float("nan")])
def test_a_negative_ready_timeout_is_a_value_error(ready_timeout: float) -> None:
    with pytest.raises(ValueError, match="ready_timeout must be a non-negative"):
        EndpointPool.start_in_thread(STATIC, ready_timeout=ready_timeout)
    background = BackgroundPool(STATIC)
    with pytest.raises(ValueError, match="ready_timeout"):
        background.start(ready_timeout=ready_timeout)
    with pytest.raises(PoolClosed):  # nothing was started
        background.pool  # noqa: B018


def test_a_string_ready_timeout_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="ready_timeout must be a number"):
        EndpointPool.start_in_thread(STATIC, ready_timeout="2")  # type: ignore[arg-type]


async def test_start_on_a_closed_pool_raises_pool_closed() -> None:
    pool = EndpointPool(STATIC)
    await pool.start()
    await pool.aclose()
    with pytest.raises(PoolClosed):
        await pool.start()
    never_started = EndpointPool(STATIC)
    await never_started.aclose()
    with pytest.raises(PoolClosed):
        await never_started.start()


async def test_close_is_a_deprecated_alias_of_aclose() -> None:
    lifecycle._warned.discard((EndpointPool, "close"))
    pool = EndpointPool(STATIC)
    await pool.start()
    with pytest.warns(DeprecationWarning, match=r"EndpointPool\.close\(\) is deprecated"):
        await pool.close()
    with pytest.raises(PoolClosed):
        await pool.start()


@pytest.mark.parametrize(
    "function",
    [BackgroundPool.__init__, BackgroundPool.call_sync, EndpointPool.start_in_thread],
)
def test_forwarding_signatures_name_every_parameter(function: object) -> None:
    """No ``**kwargs``: a misspelt keyword fails at the call, and editors show the options."""
    kinds = {p.kind for p in inspect.signature(function).parameters.values()}  # type: ignore[arg-type]
    assert inspect.Parameter.VAR_KEYWORD not in kinds


def test_a_misspelt_keyword_fails_at_the_call() -> None:
    with pytest.raises(TypeError, match="polcy"):
        BackgroundPool(STATIC, polcy=None)  # type: ignore[call-arg]
