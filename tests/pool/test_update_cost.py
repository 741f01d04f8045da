"""The cost of a health change, from the answer's bytes to the pool's new picker, does not grow
with the service: doubling the number of instances leaves the Python-level work of one change
(function calls, counted with ``sys.setprofile``, not timed) the same, and the first load of a
service grows linearly, never faster.

What is counted: decoding the answer against the previous one
(:func:`~mcresolve.consul.models.decode_entries`, :meth:`HealthAnswer.decode`, what
:meth:`HealthServiceSpec.fetch` does with a body), the health source's publication, the
resilient source's arbiter, and the pool (balancer, outlier detector, picker). Passes that C
code makes over the endpoints (``bytes.split``, ``map``, set differences) are not Python calls:
they are linear in the service and counted by none of this; the HTTP read is left out (it is
linear in the body's size by nature)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from mcresolve.balancer.outlier import FailureKind
from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.models import HealthAnswer, QueryMeta, decode_entries
from mcresolve.consul.transport import decode_json
from mcresolve.consul.watch import WatchRegistry, WatchUpdate
from mcresolve.pool import EndpointPool
from mcresolve.sources.composite import ResilientSource
from mcresolve.sources.health import HealthSource
from mcresolve.sources.target import HealthTarget, parse_target


class FedHealthSource(HealthSource):
    """The health source with its watch's updates fed by the test (no subscription)."""

    async def start(self) -> None:
        return None


def entry(i: int, status: str = "passing") -> dict[str, Any]:
    address = f"127.{1 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"
    return {
        "Node": {"ID": "", "Node": f"n{i:05d}", "Address": address, "Datacenter": "dc1"},
        "Service": {"ID": f"web-{i}", "Service": "web", "Port": 9000, "Tags": ["a", "b"]},
        "Checks": [{"Node": f"n{i:05d}", "CheckID": "maint", "Status": status, "Output": ""}],
    }


def body(instances: list[int]) -> bytes:
    return json.dumps([entry(i) for i in instances], separators=(",", ":")).encode()


def strict(raw: bytes) -> Any:
    return decode_json(raw, "http://127.0.0.1:1", "GET", "/v1/health/service/web")


def count_calls(action: Callable[[], object]) -> int:
    calls = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


async def costs(n: int) -> dict[str, int]:
    """Calls of: the first load of ``n`` instances, one instance leaving, it coming back, an
    endpoint ejected by failures, and the ejection's end."""
    target = parse_target("consul://web")
    assert isinstance(target, HealthTarget)
    client = ConsulClient(ConsulConfig.for_addresses("127.0.0.1:1"))  # never asked
    source = FedHealthSource(target, WatchRegistry(client))
    memo = source.spec.memo
    index = 1

    def feed(raw: bytes) -> None:
        nonlocal index
        index += 1
        answer = HealthAnswer.decode(decode_entries(raw, strict, "answer", memo), memo=memo)
        source._on_event(WatchUpdate(answer, QueryMeta(index=index), float(index)))

    now = 0.0
    pool = EndpointPool(ResilientSource(source), local_datacenter="dc1", clock=lambda: now)
    everyone = list(range(n))
    try:
        await pool.start()
        result = {"first load": count_calls(lambda: feed(body(everyone)))}
        assert len(pool.snapshot().endpoints) == n
        without = [i for i in everyone if i != n // 2]
        raw_without, raw_all = body(without), body(everyone)
        result["one leaves"] = count_calls(lambda: feed(raw_without))
        assert len(pool.snapshot().endpoints) == n - 1
        result["it returns"] = count_calls(lambda: feed(raw_all))
        assert len(pool.snapshot().endpoints) == n
        victim = pool.snapshot().endpoints[n // 3].endpoint

        def eject() -> None:
            for _ in range(10):
                pool.report_failure(victim, FailureKind.CONNECT)

        result["ejection"] = count_calls(eject)
        assert pool.snapshot().usable == n - 1
        now = 10_000.0
        result["ejection ends"] = count_calls(lambda: pool._refresh_picker(now))
        assert pool.snapshot().usable == n
    finally:
        await pool.aclose()
        await client.aclose()
    return result


async def test_one_change_costs_the_same_python_work_whatever_the_size() -> None:
    small, large = await costs(400), await costs(800)
    for step in ("one leaves", "it returns", "ejection", "ejection ends"):
        # a few calls of slack: nothing here may grow with the service
        assert large[step] <= small[step] + 5, (step, small, large)
    # the first load is linear: twice the instances, at most about twice the calls
    assert large["first load"] <= 2.1 * small["first load"], (small, large)
