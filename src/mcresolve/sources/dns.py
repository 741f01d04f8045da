"""Stage 1: resolve through DNS (Consul's DNS interface, or any DNS server).

How a lookup goes (``dns://<name>``):

* ``type=srv`` (default): ask SRV. Ports come from the answer; each target's address from the
  additional section, else from an A/AAAA lookup of the target (Consul's targets are
  ``<node>.node.<dc>.consul.``, which also gives the node and datacenter of each endpoint;
  ``<hex>.addr.<dc>.consul.`` targets are decoded). No SRV record (NOERROR, empty answer) ->
  A/AAAA with the ``port=`` option.
* ``type=a``: A (then AAAA when there is no A record), every address with ``port=``.
* **Getting every instance.** Consul trims UDP answers *without setting TC*: at most 3 records
  (``udp_answer_limit``), then it drops more records until the *uncompressed* message fits 512
  bytes, so an SRV answer with long names can hold only 2 of 3 healthy instances. A UDP SRV
  answer's size therefore says nothing about whether it is complete. With ``transport=auto``
  (default) SRV questions go over TCP (one round trip; loopback or LAN to the local agent), and
  A/AAAA questions go over UDP and are asked again over TCP when the answer is truncated (TC) or
  holds ``udp-limit`` (3) records or more; if that TCP attempt fails the UDP subset is used.
  ``transport=tcp`` uses TCP for everything, ``transport=udp`` never does (for DNS servers or
  forwarders without TCP: expect a random subset of at most 3 instances).
* NXDOMAIN (no healthy instance, unknown service) is an answer: the empty set (the composing
  :class:`~mcresolve.sources.composite.ResilientSource` treats an empty set right after a
  non-empty one with suspicion). SERVFAIL (unknown or unreachable datacenter), timeouts and
  refused connections are errors: the last good set is kept (``stale``).
* Answers are cached (``cachetools.TLRUCache``) for their TTL, at least ``ttl-floor`` (Consul
  answers TTL 0); the source re-resolves every ``refresh`` seconds (±20 % jitter), on
  :meth:`DnsSource.refresh_now` (bypassing the cache; at once after a change, then damped while
  the answer stays the same: :mod:`mcresolve.sources.refresh`), and after failures with a
  backoff.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.rrset
from cachetools import TLRUCache

from mcresolve.backoff import Backoff, BackoffPolicy
from mcresolve.endpoint import Endpoint
from mcresolve.errors import McResolveError
from mcresolve.sources.base import PublishingSource, Resolution
from mcresolve.sources.prepared_query import jittered
from mcresolve.sources.refresh import RefreshDamper, RefreshDamping
from mcresolve.sources.wakeup import RefreshTrigger, Wake
from mcresolve.target import DnsTarget

__all__ = [
    "DnsAnswer",
    "DnsCache",
    "DnsLookupError",
    "DnsSource",
    "consul_target_location",
    "decode_addr_label",
]

_log = logging.getLogger(__name__)


class DnsLookupError(McResolveError):
    """The answer cannot be turned into endpoints (e.g. no SRV record and no ``port=``)."""


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The outcome of one resolution: endpoints, the datacenter they are in (if one), and how
    long it may be cached (seconds, floor applied)."""

    endpoints: tuple[Endpoint, ...]
    datacenter: str | None
    ttl: float


class DnsCache:
    """A TTL-honouring cache of DNS results (``cachetools.TLRUCache``; shareable between sources).

    Each entry expires after its own TTL (``max(ttl, floor)``, the floor being the caller's).
    """

    def __init__(self, maxsize: int = 1024, timer: Callable[[], float] = time.monotonic) -> None:
        self._cache: TLRUCache[tuple[str, str], tuple[float, object]] = TLRUCache(
            maxsize, ttu=lambda _key, value, now: now + value[0], timer=timer
        )

    def get(self, key: tuple[str, str]) -> object | None:
        """The cached value, ``None`` when missing or expired."""
        entry = self._cache.get(key)
        return None if entry is None else entry[1]

    def put(self, key: tuple[str, str], value: object, ttl: float) -> None:
        """Cache ``value`` for ``ttl`` seconds (``ttl <= 0``: not cached)."""
        if ttl > 0:
            self._cache[key] = (ttl, value)

    def discard(self, key: tuple[str, str]) -> None:
        """Forget ``key``."""
        self._cache.pop(key, None)


def decode_addr_label(label: str) -> str | None:
    """Consul's ``<hex>.addr.<dc>.consul`` label as an IP address (8 or 32 hex digits)."""
    try:
        raw = bytes.fromhex(label)
    except ValueError:
        return None
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    return None


def consul_target_location(target: str) -> tuple[str, str]:
    """``(node, datacenter)`` from a Consul SRV target ``<node>.node.<dc>.<domain>.``;
    ``("", "")`` for other names, ``("", dc)`` for ``<hex>.addr.<dc>.<domain>.``."""
    labels = target.rstrip(".").split(".")
    if len(labels) >= 4 and labels[1].lower() == "node":
        return labels[0], labels[2]
    if len(labels) >= 4 and labels[1].lower() == "addr":
        return "", labels[2]
    return "", ""


def _addresses_by_name(sections: Iterable[dns.rrset.RRset]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for rrset in sections:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            name = rrset.name.to_text().lower()
            found.setdefault(name, []).extend(r.address for r in rrset)
    return found


def _single_datacenter(endpoints: Iterable[Endpoint], fallback: str | None) -> str | None:
    datacenters = {e.datacenter for e in endpoints if e.datacenter}
    return datacenters.pop() if len(datacenters) == 1 else fallback


class DnsSource(PublishingSource):
    """Resolves a :class:`~mcresolve.target.DnsTarget` periodically (see the module doc).

    ``damping`` rules how often :meth:`refresh_now` may re-query while the answer stays the same
    (default :class:`~mcresolve.sources.refresh.RefreshDamping`).
    """

    def __init__(
        self,
        target: DnsTarget,
        *,
        cache: DnsCache | None = None,
        backoff: BackoffPolicy | None = None,
        damping: RefreshDamping | None = None,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(str(target))
        self._target = target
        self._cache = cache if cache is not None else DnsCache()
        self._random = random_source
        self._backoff = Backoff(
            backoff or BackoffPolicy(base=0.25, cap=max(target.refresh, 1.0)), random_source
        )
        self._trigger = RefreshTrigger(RefreshDamper(damping, random_source))
        self._resolver = self._make_resolver(target)
        meaning = target.consul_name
        self._name_dc = None if meaning is None else meaning.dc
        #: Queries sent so far, by transport (observability and tests).
        self.queries: dict[str, int] = {"udp": 0, "tcp": 0}

    @staticmethod
    def _make_resolver(target: DnsTarget) -> dns.asyncresolver.Resolver:
        if target.servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(s.address, s.port) for s in target.servers
            ]
        else:
            resolver = dns.asyncresolver.Resolver()
        resolver.timeout = target.timeout
        resolver.lifetime = target.timeout
        resolver.cache = None  # ours honours the TTL floor
        return resolver

    def refresh_now(self) -> None:
        """Re-resolve bypassing the cache: at once after a change, else damped."""
        self._trigger.request()

    async def resolve(self, *, use_cache: bool = True) -> DnsAnswer:
        """One resolution of the target (raises dnspython's errors for failures)."""
        target = self._target
        key = (target.name.lower(), target.record)
        if use_cache:
            cached = self._cache.get(key)
            if isinstance(cached, DnsAnswer):
                return cached
        if target.record == "srv":
            answer = await self._resolve_srv()
        else:
            answer = await self._resolve_addresses(target.name)
        self._cache.put(key, answer, answer.ttl)
        return answer

    async def _run(self) -> None:
        previous: DnsAnswer | None = None
        wake = Wake.PERIODIC
        while True:
            forced = wake is Wake.FORCED
            outcome: object
            try:
                answer = await self.resolve(use_cache=not forced)
            except (dns.exception.DNSException, OSError, DnsLookupError) as exc:
                retry_in = self._backoff.failure()
                _log.log(
                    logging.WARNING if self._backoff.failures == 1 else logging.DEBUG,
                    "DNS %s failed (%d in a row), retry in %.2f s: %s",
                    self._target.name,
                    self._backoff.failures,
                    retry_in,
                    exc,
                )
                self._publish_error(exc)
                previous = None
                outcome = type(exc)
                delay = retry_in
            else:
                self._backoff.success()
                # Identical non-empty answers are not republished; empty ones are, so the
                # consumer can count confirmations of a suspect empty set.
                if answer != previous or not answer.endpoints:
                    self._publish(
                        Resolution.answered(answer.endpoints, self.description, answer.datacenter)
                    )
                previous = answer
                outcome = (frozenset(answer.endpoints), answer.datacenter)  # Consul shuffles
                delay = jittered(self._target.refresh, self._random())
            self._trigger.observe(outcome, forced=forced)
            wake = await self._trigger.wait(delay)

    # --- lookups -------------------------------------------------------------------------------

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        """Ask ``rdtype`` for ``name``: ``None`` for NXDOMAIN, an answer (maybe without rrset)
        otherwise; applies the transport rule (see the module doc)."""
        transport = self._target.transport
        use_tcp = transport == "tcp" or (transport == "auto" and rdtype == "SRV")
        try:
            answer = await self._ask(name, rdtype, use_tcp)
        except dns.resolver.NXDOMAIN:
            return None
        if (
            transport == "auto"
            and not use_tcp
            and answer.rrset is not None
            and len(answer.rrset) >= self._target.udp_answer_limit
        ):
            try:
                answer = await self._ask(name, rdtype, True)
            except dns.resolver.NXDOMAIN:
                return None
            except (dns.exception.DNSException, OSError) as exc:
                _log.info("DNS %s over TCP failed, using the UDP subset: %s", name, exc)
        return answer

    async def _ask(self, name: str, rdtype: str, tcp: bool) -> dns.resolver.Answer:
        self.queries["tcp" if tcp else "udp"] += 1
        return await self._resolver.resolve(name, rdtype, tcp=tcp, raise_on_no_answer=False)

    def _ttl(self, answer: dns.resolver.Answer | None) -> float:
        ttl = 0.0
        if answer is not None and answer.rrset is not None:
            ttl = float(answer.rrset.ttl)
        return max(ttl, self._target.ttl_floor)

    async def _resolve_srv(self) -> DnsAnswer:
        target = self._target
        answer = await self._query(target.name, "SRV")
        if answer is None:
            return DnsAnswer((), self._name_dc, self._ttl(None))
        if answer.rrset is None:
            if target.options.port is None:
                raise DnsLookupError(
                    f"{target.name}: no SRV record, and no port= option to use A records"
                )
            return await self._resolve_addresses(target.name)
        additional = _addresses_by_name(answer.response.additional)
        endpoints: list[Endpoint] = []
        for record in answer.rrset:
            host = record.target.to_text().lower()
            node, dc = consul_target_location(host)
            addresses = additional.get(host)
            if not addresses:
                addresses = await self._addresses_of(host)
            for address in addresses:
                endpoints.append(Endpoint(address, record.port, node=node, datacenter=dc))
        unique = tuple(dict.fromkeys(endpoints))
        return DnsAnswer(unique, _single_datacenter(unique, self._name_dc), self._ttl(answer))

    async def _addresses_of(self, host: str) -> list[str]:
        labels = host.rstrip(".").split(".")
        if len(labels) >= 2 and labels[1] == "addr":
            decoded = decode_addr_label(labels[0])
            if decoded is not None:
                return [decoded]
        key = (host, "addr")
        cached = self._cache.get(key)
        if isinstance(cached, list):
            return cached
        found: list[str] = []
        ttl = self._target.ttl_floor
        for rdtype in ("A", "AAAA"):
            answer = await self._query(host, rdtype)
            if answer is not None and answer.rrset is not None:
                found.extend(r.address for r in answer.rrset)
                ttl = self._ttl(answer)
                break
        self._cache.put(key, found, ttl)
        return found

    async def _resolve_addresses(self, name: str) -> DnsAnswer:
        port = self._target.options.port
        assert port is not None
        for rdtype in ("A", "AAAA"):
            answer = await self._query(name, rdtype)
            if answer is None:
                return DnsAnswer((), self._name_dc, self._ttl(None))
            if answer.rrset is not None:
                endpoints = tuple(
                    dict.fromkeys(
                        Endpoint(r.address, port, datacenter=self._name_dc or "")
                        for r in answer.rrset
                    )
                )
                return DnsAnswer(endpoints, self._name_dc, self._ttl(answer))
        return DnsAnswer((), self._name_dc, self._ttl(None))
