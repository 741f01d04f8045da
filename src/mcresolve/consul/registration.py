"""Register the running application in Consul and keep it registered.

::

    service = ServiceDefinition(
        name="storefront", service_id="storefront-1", address="10.0.0.5", port=8080,
        check=HttpCheck("http://10.0.0.5:8080/health", interval=2.0, timeout=1.0),
    )
    async with ConsulClient(ConsulConfig.from_env()) as consul:
        async with ConsulRegistration(consul, service) as registration:
            ...                       # serve; deregistered on the way out

:class:`ConsulRegistration` registers the service with its check (HTTP or TTL), heartbeats a TTL
check (every ``ttl / 3`` ± 10 %, always under ``ttl / 2``), and re-registers when the agent has
forgotten the service: an agent restarted with a fresh state answers a heartbeat with 500
``CheckID "…" does not have associated TTL``, and the service disappears from
``/v1/agent/services`` (checked every ``verify_interval`` for HTTP checks, and at once after the
agent was unreachable). ``DeregisterCriticalServiceAfter`` makes Consul remove an instance that
crashed without deregistering. A clean exit deregisters (bounded by ``deregister_timeout``).

The decisions (payload, heartbeat delays, what a failure means) are pure functions; the class is
the thin loop around them and :class:`~mcresolve.consul.client.ConsulClient`. See
``docs/registration.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mcresolve.arguments import (
    check_instance,
    check_int_range,
    check_optional_str,
    check_seconds,
    check_str_tuple,
)
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.errors import ConsulError, ConsulHTTPError, ConsulUnavailable, ServerError
from mcresolve.lifecycle import AsyncStartClose
from mcresolve.tasks import cancel_and_wait
from mcresolve.timing import Backoff, BackoffPolicy, RandomSource, format_duration

__all__ = [
    "CheckState",
    "ConsulRegistration",
    "FailureAction",
    "HttpCheck",
    "RegistrationPolicy",
    "ServiceDefinition",
    "TtlCheck",
    "classify_failure",
    "heartbeat_delay",
]

log = logging.getLogger("mcresolve.consul.registration")

CheckState = Literal["passing", "warning", "critical"]


# --- definitions (values) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """A check the Consul agent runs itself: ``GET url`` every ``interval`` seconds (2xx
    passing, 429 warning, anything else or no answer within ``timeout`` critical).

    ``deregister_critical_after``: seconds a critical check may last before Consul removes the
    service (``None``: never). Consul 1.0.8 reaps at most every 30 s and never before 1 min.
    """

    url: str
    interval: float = 10.0
    timeout: float = 5.0
    method: str = "GET"
    header: Mapping[str, str] = field(default_factory=dict)
    deregister_critical_after: float | None = 60.0
    check_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        check_instance("HttpCheck.url", self.url, (str,), "a string")
        check_seconds("HttpCheck.interval", self.interval)
        check_seconds("HttpCheck.timeout", self.timeout)
        check_instance("HttpCheck.method", self.method, (str,), "a string")
        check_seconds(
            "HttpCheck.deregister_critical_after", self.deregister_critical_after, optional=True
        )
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"HTTP check URL must start with http:// or https://: {self.url!r}")
        if not (self.interval > 0 and self.timeout > 0):
            raise ValueError("HTTP check interval and timeout must be > 0 seconds")
        _check_dereg(self.deregister_critical_after)


@dataclass(frozen=True, slots=True)
class TtlCheck:
    """A check the application keeps alive: Consul turns it critical when no heartbeat came
    for ``ttl`` seconds (a hung or dead process). :class:`ConsulRegistration` heartbeats it.

    ``deregister_critical_after`` as for :class:`HttpCheck`.
    """

    ttl: float = 15.0
    deregister_critical_after: float | None = 60.0
    check_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        check_seconds("TtlCheck.ttl", self.ttl)
        check_seconds(
            "TtlCheck.deregister_critical_after", self.deregister_critical_after, optional=True
        )
        if not self.ttl > 0:
            raise ValueError(f"TTL must be > 0 seconds, got {self.ttl!r}")
        _check_dereg(self.deregister_critical_after)


def _check_dereg(value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"deregister_critical_after must be > 0 seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """The service instance to register (``service_id`` defaults to ``name``)."""

    name: str
    service_id: str | None = None
    address: str = ""
    port: int = 0
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    check: HttpCheck | TtlCheck | None = None

    def __post_init__(self) -> None:
        check_instance("ServiceDefinition.name", self.name, (str,), "a string")
        check_optional_str("ServiceDefinition.service_id", self.service_id)
        check_instance("ServiceDefinition.address", self.address, (str,), "a string")
        check_int_range("ServiceDefinition.port", self.port, 0, 65535)
        check_str_tuple("ServiceDefinition.tags", self.tags)
        if self.check is not None:
            check_instance(
                "ServiceDefinition.check",
                self.check,
                (HttpCheck, TtlCheck),
                "an HttpCheck, a TtlCheck or None",
            )
        if not self.name:
            raise ValueError("service name must not be empty")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port!r}")

    @property
    def id(self) -> str:
        """The service ID (``service_id`` or ``name``)."""
        return self.service_id or self.name

    @property
    def check_id(self) -> str | None:
        """The check's ID (default ``service:<id>``, Consul's own default), ``None`` without a
        check."""
        if self.check is None:
            return None
        return self.check.check_id or f"service:{self.id}"

    def payload(self, initial_status: CheckState | None = None) -> dict[str, Any]:
        """The body of ``PUT /v1/agent/service/register``.

        ``initial_status`` sets the check's ``Status`` at registration (Consul's default is
        critical until the first run or heartbeat).
        """
        body: dict[str, Any] = {"ID": self.id, "Name": self.name, "Tags": list(self.tags)}
        if self.address:
            body["Address"] = self.address
        if self.port:
            body["Port"] = self.port
        if self.meta:
            body["Meta"] = dict(self.meta)
        check = self.check
        if check is None:
            return body
        definition: dict[str, Any] = {"CheckID": self.check_id}
        if isinstance(check, HttpCheck):
            definition["Name"] = check.name or f"{self.name} HTTP check"
            definition["HTTP"] = check.url
            definition["Interval"] = format_duration(check.interval)
            definition["Timeout"] = format_duration(check.timeout)
            if check.method != "GET":
                definition["Method"] = check.method
            if check.header:
                definition["Header"] = {k: [v] for k, v in check.header.items()}
        else:
            definition["Name"] = check.name or f"{self.name} TTL check"
            definition["TTL"] = format_duration(check.ttl)
        if check.deregister_critical_after is not None:
            definition["DeregisterCriticalServiceAfter"] = format_duration(
                check.deregister_critical_after
            )
        if initial_status is not None:
            definition["Status"] = initial_status
        body["Check"] = definition
        return body


@dataclass(frozen=True, slots=True)
class RegistrationPolicy:
    """Timing of :class:`ConsulRegistration`.

    Attributes:
        heartbeat_fraction: a TTL check is refreshed every ``ttl × heartbeat_fraction``
            (default 1/3: two heartbeats may be lost before the TTL expires).
        heartbeat_jitter: ± relative jitter on each heartbeat delay (default 10 %, so that many
            instances restarted together do not heartbeat in lock-step). The delay is always kept
            below ``ttl / 2``.
        verify_interval: how often an HTTP-check (or check-less) registration verifies that
            the agent still has the service (``GET /v1/agent/services``); 10 s, like the
            storefront's health-check cadence × 5. Heartbeats verify TTL registrations for free.
        retry: backoff between attempts while the agent is unreachable or refuses.
        deregister_timeout: upper bound on the deregistration at exit (seconds).
    """

    heartbeat_fraction: float = 1 / 3
    heartbeat_jitter: float = 0.1
    verify_interval: float = 10.0
    retry: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(base=0.2, cap=5.0))
    deregister_timeout: float = 3.0

    def __post_init__(self) -> None:
        for name in (
            "heartbeat_fraction",
            "heartbeat_jitter",
            "verify_interval",
            "deregister_timeout",
        ):
            check_seconds(f"RegistrationPolicy.{name}", getattr(self, name), zero=True)
        check_instance("RegistrationPolicy.retry", self.retry, (BackoffPolicy,), "a BackoffPolicy")
        if not 0 < self.heartbeat_fraction < 0.5:
            raise ValueError("heartbeat_fraction must be in (0, 0.5)")
        if not 0 <= self.heartbeat_jitter < 0.5:
            raise ValueError("heartbeat_jitter must be in [0, 0.5)")
        if not (self.verify_interval > 0 and self.deregister_timeout > 0):
            raise ValueError("verify_interval and deregister_timeout must be > 0")


# --- pure decisions --------------------------------------------------------------------------


def heartbeat_delay(
    ttl: float, random_value: float, *, fraction: float = 1 / 3, jitter: float = 0.1
) -> float:
    """Seconds until the next TTL heartbeat: ``ttl × fraction`` scaled by a factor in
    ``[1 - jitter, 1 + jitter)`` chosen by ``random_value`` (uniform in ``[0, 1)``), and always
    strictly below ``ttl / 2`` so that one lost heartbeat never lets the check expire."""
    delay = ttl * fraction * (1 - jitter + 2 * jitter * random_value)
    return min(delay, ttl * 0.49)


class FailureAction(enum.Enum):
    """What a failed Consul call means for the registration."""

    #: The agent does not know the service or check (restarted with a fresh state): register
    #: again at once.
    REREGISTER = "reregister"
    #: The agent could not be reached (down, restarting, network): retry after a backoff and
    #: verify the registration once it answers again.
    UNREACHABLE = "unreachable"
    #: Consul answered with another error (ACL, rate limit, server trouble): retry after a
    #: backoff.
    RETRY = "retry"


def classify_failure(error: ConsulError) -> FailureAction:
    """Map an error of a registration call to the action to take."""
    if isinstance(error, ServerError) and error.check_has_no_ttl:
        return FailureAction.REREGISTER
    if isinstance(error, ConsulHTTPError) and error.status == 404:
        return FailureAction.REREGISTER
    if isinstance(error, ConsulUnavailable):
        return FailureAction.UNREACHABLE
    return FailureAction.RETRY


# --- the I/O loop ----------------------------------------------------------------------------


class ConsulRegistration(AsyncStartClose):
    """Keeps one service instance registered with the local Consul agent.

    Use as an async context manager (or :meth:`start` / :meth:`stop`). Entering registers once:
    a definition Consul rejects (4xx) raises :class:`~mcresolve.consul.errors.ConsulHTTPError`
    at once; an unreachable agent is logged and retried in the background (see
    :meth:`wait_registered`). Leaving stops the background task and deregisters.

    Counters for observability and tests: :attr:`registrations` (successful register calls,
    the first one included), :attr:`heartbeats`, :attr:`last_error`.
    """

    def __init__(
        self,
        client: ConsulClient,
        service: ServiceDefinition,
        *,
        policy: RegistrationPolicy | None = None,
        deregister_on_exit: bool = True,
        random_source: RandomSource = random.random,
    ) -> None:
        check_instance("client", client, (ConsulClient,), "a ConsulClient")
        check_instance("service", service, (ServiceDefinition,), "a ServiceDefinition")
        if policy is not None:
            check_instance("policy", policy, (RegistrationPolicy,), "a RegistrationPolicy or None")
        check_instance("deregister_on_exit", deregister_on_exit, (bool,), "a bool")
        self._client = client
        self._service = service
        self._policy = policy or RegistrationPolicy()
        self._deregister_on_exit = deregister_on_exit
        self._random = random_source
        self._backoff = Backoff(self._policy.retry, random_source)
        self._status: CheckState = "passing"
        self._note = ""
        self._registered = asyncio.Event()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._needs_register = True
        self._stopped = False
        self.registrations = 0
        self.heartbeats = 0
        self.last_error: ConsulError | None = None

    @property
    def service(self) -> ServiceDefinition:
        """What is registered."""
        return self._service

    @property
    def registered(self) -> bool:
        """Whether the last registration succeeded and nothing showed the agent lost it."""
        return self._registered.is_set()

    async def start(self) -> None:
        """Register once, then keep the registration alive in a background task.

        Raises :class:`ConsulHTTPError` when Consul rejects the definition (not retried); an
        unreachable agent is retried in the background.
        """
        if self._task is not None or self._stopped:
            return
        try:
            await self._register()
        except ConsulHTTPError as error:
            if error.status < 500 and error.status != 429:
                raise  # the definition itself is wrong (or the token may not register it)
            self._note_failure(error)
        except ConsulUnavailable as error:
            self._note_failure(error)
            log.warning("Consul registration of %s deferred: %s", self._service.id, error)
        self._task = asyncio.create_task(self._maintain(), name=f"consul-registration {self}")

    async def aclose(self) -> None:
        """Stop maintaining; deregister (when ``deregister_on_exit``) within
        ``deregister_timeout``. Failures to deregister are logged, not raised. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if self._deregister_on_exit and self.registrations:
            try:
                async with asyncio.timeout(self._policy.deregister_timeout):
                    await self._client.agent_service_deregister(self._service.id)
                log.info("deregistered %s from Consul", self._service.id)
            except (ConsulError, TimeoutError) as error:
                log.warning("could not deregister %s from Consul: %s", self._service.id, error)
        self._registered.clear()

    async def wait_registered(self) -> None:
        """Return once the service is registered (bound it with ``asyncio.timeout``)."""
        await self._registered.wait()

    async def set_status(self, status: CheckState, note: str = "") -> None:
        """Report the application's own health through its TTL check (sent at once, then with
        every heartbeat). Only for :class:`TtlCheck` registrations."""
        if not isinstance(self._service.check, TtlCheck):
            raise TypeError("set_status needs a TTL check registration")
        if status not in ("passing", "warning", "critical"):
            raise ValueError(f"status must be passing, warning or critical, got {status!r}")
        self._status, self._note = status, note
        self._kick.set()

    def __str__(self) -> str:
        return self._service.id

    # -- internals ----------------------------------------------------------------------------

    async def _register(self) -> None:
        """One registration (plus the first heartbeat of a TTL check)."""
        check = self._service.check
        initial: CheckState | None = self._status if isinstance(check, TtlCheck) else None
        await self._client.agent_service_register(self._service.payload(initial))
        self.registrations += 1
        self._needs_register = False
        self._backoff.success()
        if self.registrations > 1:
            log.warning("re-registered %s in Consul", self._service.id)
        else:
            log.info("registered %s in Consul", self._service.id)
        self._registered.set()

    async def _heartbeat(self, check_id: str) -> None:
        await self._client.agent_check_update(check_id, self._status, self._note)
        self.heartbeats += 1

    async def _verify(self) -> None:
        services = await self._client.agent_services()
        if self._service.id not in services:
            log.warning("Consul agent forgot %s; registering again", self._service.id)
            self._registered.clear()
            self._needs_register = True

    def _note_failure(self, error: ConsulError) -> FailureAction:
        self.last_error = error
        action = classify_failure(error)
        if action is FailureAction.REREGISTER:
            self._registered.clear()
            self._needs_register = True
        return action

    def _next_delay(self) -> float:
        check = self._service.check
        if isinstance(check, TtlCheck):
            return heartbeat_delay(
                check.ttl,
                self._random(),
                fraction=self._policy.heartbeat_fraction,
                jitter=self._policy.heartbeat_jitter,
            )
        return self._policy.verify_interval

    async def _pause(self, seconds: float) -> None:
        """Sleep, woken early by :meth:`set_status`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._kick.wait()
        self._kick.clear()

    async def _maintain(self) -> None:
        delay = 0.0 if self._needs_register else self._next_delay()
        while True:
            await self._pause(delay)
            try:
                await self._step()
            except ConsulError as error:
                action = self._note_failure(error)
                if action is FailureAction.REREGISTER:
                    log.warning("Consul lost %s (%s); registering again", self._service.id, error)
                    delay = 0.0
                    continue
                delay = self._backoff.failure()
                log.warning(
                    "Consul registration of %s: %s (retry in %.2f s)",
                    self._service.id,
                    error,
                    delay,
                )
                continue
            self._backoff.success()
            delay = self._next_delay()

    async def _step(self) -> None:
        """One round: register if needed, else heartbeat (TTL) or verify (HTTP / no check).

        After the agent was unreachable the next round comes after a short backoff, and it
        finds out whether the agent came back with its state (heartbeat accepted, service
        listed) or without (500 ``does not have associated TTL``, service missing)."""
        if self._needs_register:
            await self._register()  # a TTL check is registered with the current status
            return
        check_id = self._service.check_id
        if isinstance(self._service.check, TtlCheck) and check_id is not None:
            await self._heartbeat(check_id)
            return
        await self._verify()
        if self._needs_register:
            await self._register()
