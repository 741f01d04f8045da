"""The reference article's resilience battery as data: what each scenario breaks, what the article
says should happen, and what each traffic class is expected to see (pure: no I/O).

The runner (:mod:`mcresolve.demo.runner`) maps each :class:`Fault` to an action on the live
topology; :func:`judge` compares measured :class:`~mcresolve.demo.measure.PhaseStats` with the
:class:`Expectation` of a scenario and says whether they match.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .measure import LOCAL_ONLY, SHOPPERS, SIDECAR, WRITES, PhaseStats


class Fault(enum.Enum):
    """What a scenario breaks (and then repairs)."""

    NONE = "none"
    ONE_STORAGE_NODE = "one-storage-node"
    TWO_STORAGE_NODES = "two-storage-nodes"
    STORAGE_DATACENTER = "storage-datacenter"
    STOREFRONT_DATACENTER = "storefront-datacenter"
    CONSUL_AGENT = "consul-agent"
    WAN_LINK = "wan-link"


class Phase(enum.Enum):
    """The part of a scenario a row of the table measures."""

    FAULT = "fault"
    RECOVERY = "recovery"


@dataclass(frozen=True)
class Expectation:
    """What one traffic class should see during one phase.

    ``serves=True``: failures are allowed only while failing over: every failed request ended
    within ``max_window`` seconds of the phase start (requests in flight when a process is
    killed may fail, as a browser would show them; nothing started after the failover may), and
    at most ``max_failed_fraction`` failed. ``serves=False``: at least ``min_failed_fraction``
    fail (the fault is *meant* to be visible, e.g. the local-only storefront when its
    datacenter's storage is gone). ``moves_to``: some requests must be served by that datacenter
    (shoppers moving to the other cloud).
    """

    traffic: str
    serves: bool = True
    max_window: float = 3.0
    max_failed_fraction: float = 0.25
    min_failed_fraction: float = 0.5
    moves_to: str | None = None

    def describe(self) -> str:
        """A short human reading of the expectation."""
        if not self.serves:
            return f"{self.traffic} fail (≥{self.min_failed_fraction:.0%})"
        if self.max_window == 0:
            text = f"{self.traffic} served, no failure"
        else:
            text = f"{self.traffic} served (failures only within {self.max_window:g} s)"
        if self.moves_to:
            text += f" via {self.moves_to}"
        return text


@dataclass(frozen=True)
class Scenario:
    """One entry of the battery."""

    key: str
    title: str
    fault: Fault
    article: str
    """What the reference article says should happen while the fault lasts."""
    during: tuple[Expectation, ...]
    after: tuple[Expectation, ...]
    """Expectations once the topology is back to steady state after the repair."""
    note: str = ""
    """Anything a reader must know to read the row honestly."""


_ALL_SERVE = (
    Expectation(SHOPPERS),
    Expectation(LOCAL_ONLY),
    Expectation(SIDECAR),
    Expectation(WRITES),
)
_NO_FAILURE = tuple(Expectation(t, max_window=0.0) for t in (SHOPPERS, LOCAL_ONLY, SIDECAR, WRITES))
RECOVERED = _NO_FAILURE
"""What every traffic class must see once the topology is back to steady state."""


def battery(local_dc: str = "dc1", remote_dc: str = "dc2") -> tuple[Scenario, ...]:
    """The scenarios in the order the demo runs them (``local_dc`` is where faults hit)."""
    return (
        _BASELINE,
        *_storage_scenarios(local_dc, remote_dc),
        *_service_scenarios(local_dc, remote_dc),
    )


_BASELINE = Scenario(
    key="baseline",
    title="steady state",
    fault=Fault.NONE,
    article="everything healthy: every request served from the local datacenter",
    during=_NO_FAILURE,
    after=_NO_FAILURE,
)
"""Nothing injected: the reference every other scenario is read against."""


def _storage_scenarios(local_dc: str, remote_dc: str) -> tuple[Scenario, ...]:
    """Storage nodes lost: one, one per datacenter, every one of ``local_dc``."""
    return (
        Scenario(
            key="one-node",
            title=f"1 storage node lost ({local_dc})",
            fault=Fault.ONE_STORAGE_NODE,
            article="MinIO keeps serving with a node down; Consul marks it critical and "
            "clients use the remaining nodes",
            during=_ALL_SERVE,
            after=RECOVERED,
        ),
        Scenario(
            key="two-nodes",
            title="2 storage nodes lost (1 per DC)",
            fault=Fault.TWO_STORAGE_NODES,
            article="reads continue; writes are refused by a real MinIO cluster (write "
            "quorum lost)",
            during=(
                Expectation(SHOPPERS),
                Expectation(LOCAL_ONLY),
                Expectation(SIDECAR),
                Expectation(WRITES, serves=False, min_failed_fraction=0.9),
            ),
            after=RECOVERED,
            note="SeaweedFS would accept the writes; the demo makes the surviving nodes answer "
            "PUTs with MinIO's 503 XMinioWriteQuorum, as a real 4-node MinIO does",
        ),
        Scenario(
            key="storage-dc",
            title=f"all storage of {local_dc} lost",
            fault=Fault.STORAGE_DATACENTER,
            article=f"stage 3 (prepared query) fails over to {remote_dc} storage and keeps "
            "serving; stage 2 with local-only scope does not",
            during=(
                Expectation(SHOPPERS),
                Expectation(LOCAL_ONLY, serves=False),
                Expectation(SIDECAR),
                Expectation(WRITES),
            ),
            after=RECOVERED,
        ),
    )


def _service_scenarios(local_dc: str, remote_dc: str) -> tuple[Scenario, ...]:
    """The storefronts, the Consul agent or the link between the datacenters lost."""
    return (
        Scenario(
            key="storefront-dc",
            title=f"storefront instances of {local_dc} lost",
            fault=Fault.STOREFRONT_DATACENTER,
            article=f"shoppers resolving the storefront through Consul move to {remote_dc}",
            during=(
                Expectation(SHOPPERS, moves_to=remote_dc),
                Expectation(LOCAL_ONLY),
                Expectation(SIDECAR),
                Expectation(WRITES),
            ),
            after=RECOVERED,
            note=f"the stage-2 and the sidecar's storefronts keep running: only the stage-3 "
            f"instances of {local_dc} are killed",
        ),
        Scenario(
            key="consul-agent",
            title=f"Consul agent of {local_dc} lost",
            fault=Fault.CONSUL_AGENT,
            article="applications keep their last known good endpoints and keep serving",
            during=_ALL_SERVE,
            after=RECOVERED,
        ),
        Scenario(
            key="wan-link",
            title=f"{local_dc}-{remote_dc} link cut",
            fault=Fault.WAN_LINK,
            article="each datacenter serves from its own storage: nothing visible to shoppers",
            during=_ALL_SERVE,
            after=RECOVERED,
        ),
    )


@dataclass(frozen=True)
class Verdict:
    """Whether one traffic class behaved as expected, and why."""

    expectation: Expectation
    ok: bool
    reason: str


def judge(expectation: Expectation, stats: PhaseStats | None) -> Verdict:
    """Compare what ``stats`` measured with ``expectation``."""
    if stats is None or stats.total == 0:
        return Verdict(expectation, False, f"no {expectation.traffic} traffic was measured")
    fraction = stats.failed_fraction
    if expectation.serves:
        if stats.failed and stats.failover_window > expectation.max_window:
            return Verdict(
                expectation,
                False,
                f"{stats.failed} failed, the last {stats.failover_window:.1f} s into the phase "
                f"(allowed: {expectation.max_window:g} s)",
            )
        if fraction > expectation.max_failed_fraction:
            return Verdict(
                expectation,
                False,
                f"{stats.failed}/{stats.total} failed ({fraction:.0%} > "
                f"{expectation.max_failed_fraction:.0%})",
            )
        if expectation.moves_to and not stats.served_by.get(expectation.moves_to):
            return Verdict(expectation, False, f"nothing was served by {expectation.moves_to}")
    elif fraction < expectation.min_failed_fraction:
        return Verdict(
            expectation,
            False,
            f"only {stats.failed}/{stats.total} failed ({fraction:.0%} < "
            f"{expectation.min_failed_fraction:.0%}): the fault did not show",
        )
    return Verdict(expectation, True, "as expected")


def judge_all(
    expectations: Sequence[Expectation], stats: Mapping[str, PhaseStats]
) -> tuple[Verdict, ...]:
    """One verdict per expectation, looking up the stats of its traffic class."""
    return tuple(judge(e, stats.get(e.traffic)) for e in expectations)
