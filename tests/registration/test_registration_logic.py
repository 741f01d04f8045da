"""Pure parts of the registration helper: payloads, heartbeat delays, failure classification."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.consul.errors import (
    BadRequest,
    ConsulTimeout,
    ConsulUnavailable,
    NotFound,
    PermissionDenied,
    ServerError,
)
from mcresolve.consul.registration import (
    FailureAction,
    HttpCheck,
    RegistrationPolicy,
    ServiceDefinition,
    TtlCheck,
    classify_failure,
    heartbeat_delay,
)


def test_http_check_payload() -> None:
    service = ServiceDefinition(
        "storefront",
        service_id="sf-1",
        address="127.0.0.1",
        port=8081,
        tags=("storefront", "http"),
        meta={"dc": "dc1"},
        check=HttpCheck(
            "http://127.0.0.1:8081/health",
            interval=2.0,
            timeout=0.5,
            header={"X-Probe": "consul"},
            deregister_critical_after=60.0,
        ),
    )
    assert service.payload() == {
        "ID": "sf-1",
        "Name": "storefront",
        "Tags": ["storefront", "http"],
        "Address": "127.0.0.1",
        "Port": 8081,
        "Meta": {"dc": "dc1"},
        "Check": {
            "CheckID": "service:sf-1",
            "Name": "storefront HTTP check",
            "HTTP": "http://127.0.0.1:8081/health",
            "Interval": "2s",
            "Timeout": "500ms",
            "Header": {"X-Probe": ["consul"]},
            "DeregisterCriticalServiceAfter": "60s",
        },
    }


def test_ttl_check_payload_and_defaults() -> None:
    service = ServiceDefinition("worker", check=TtlCheck(ttl=15, deregister_critical_after=None))
    assert service.id == "worker"
    assert service.check_id == "service:worker"
    assert service.payload("passing") == {
        "ID": "worker",
        "Name": "worker",
        "Tags": [],
        "Check": {
            "CheckID": "service:worker",
            "Name": "worker TTL check",
            "TTL": "15s",
            "Status": "passing",
        },
    }
    bare = ServiceDefinition("plain", port=80)
    assert bare.check_id is None
    assert "Check" not in bare.payload()
    named = ServiceDefinition("x", check=TtlCheck(check_id="x-ttl", name="X alive"))
    assert named.payload()["Check"]["CheckID"] == "x-ttl"
    assert named.payload()["Check"]["Name"] == "X alive"


@pytest.mark.parametrize(
    "make",
    [
        lambda: ServiceDefinition(""),
        lambda: ServiceDefinition("x", port=70000),
        lambda: HttpCheck("127.0.0.1:80/health"),
        lambda: HttpCheck("http://h/", interval=0),
        lambda: TtlCheck(ttl=0),
        lambda: TtlCheck(deregister_critical_after=-1),
        lambda: RegistrationPolicy(heartbeat_fraction=0.5),
        lambda: RegistrationPolicy(heartbeat_jitter=0.6),
    ],
)
def test_invalid_definitions_are_rejected(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


@given(
    ttl=st.floats(min_value=0.01, max_value=86400),
    random_value=st.floats(min_value=0, max_value=1, exclude_max=True),
    fraction=st.floats(min_value=0.01, max_value=0.49),
    jitter=st.floats(min_value=0, max_value=0.49),
)
def test_heartbeat_delay_is_always_below_half_the_ttl(
    ttl: float, random_value: float, fraction: float, jitter: float
) -> None:
    delay = heartbeat_delay(ttl, random_value, fraction=fraction, jitter=jitter)
    assert 0 < delay < ttl / 2
    assert delay <= ttl * fraction * (1 + jitter) + 1e-9
    assert delay >= min(ttl * fraction * (1 - jitter), ttl * 0.49) - 1e-9


def test_heartbeat_delay_default_spread() -> None:
    assert heartbeat_delay(15.0, 0.0) == pytest.approx(4.5)
    assert heartbeat_delay(15.0, 0.5) == pytest.approx(5.0)
    assert heartbeat_delay(15.0, 0.999999) == pytest.approx(5.5, abs=1e-4)


def test_failure_classification() -> None:
    no_ttl = ServerError(500, 'CheckID "service:x" does not have associated TTL')
    assert classify_failure(no_ttl) is FailureAction.REREGISTER
    assert classify_failure(NotFound(404, "")) is FailureAction.REREGISTER
    assert classify_failure(ConsulUnavailable("down")) is FailureAction.UNREACHABLE
    assert classify_failure(ConsulTimeout("slow")) is FailureAction.UNREACHABLE
    assert classify_failure(ServerError(500, "No cluster leader")) is FailureAction.RETRY
    assert classify_failure(PermissionDenied(403, "ACL not found")) is FailureAction.RETRY
    assert classify_failure(BadRequest(400, "Invalid check")) is FailureAction.RETRY
