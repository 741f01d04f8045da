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
* Answers are cached (``cachetools.TLRUCache``) for their TTL, at most
  :attr:`DnsPolicy.max_ttl` (30 s) and at least ``ttl-floor`` (Consul answers TTL 0); the source
  re-resolves every ``refresh`` seconds (±20 % jitter), on :meth:`DnsSource.refresh_now`
  (bypassing the cache; at once after a change, then damped while the answer stays the same:
  :mod:`mcresolve.sources.refresh`), and after failures with a backoff.
* **Bad answers.** Records are converted one by one: an SRV record with port 0, or whose target
  has no address, is rejected on its own (the others are published, with an
  :class:`~mcresolve.sources.base.AnswerRejected` naming the server and the records); an SRV
  target of ``.`` means "no service here" (RFC 2782) and is left out silently. An answer whose
  every record is rejected, a malformed message, or any other exception is a failed attempt:
  the last good set is kept (``stale``) and the source retries after its backoff. No answer
  stops the source.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.rrset
from cachetools import TLRUCache

from mcresolve.arguments import (
    check_instance,
    check_int_range,
    check_optional_instances,
    check_seconds,
    type_name,
)
from mcresolve.endpoint import Converted, Endpoint, Rejected, endpoint_problem, shorten
from mcresolve.errors import McResolveError
from mcresolve.sources.base import PublishingSource
from mcresolve.sources.refresh import RefreshDamper, RefreshDamping
from mcresolve.sources.target import DnsTarget
from mcresolve.sources.wakeup import RefreshTrigger, Wake
from mcresolve.timing import Backoff, BackoffPolicy, RandomSource, jittered

__all__ = [
    "DnsAnswer",
    "DnsCache",
    "DnsLookupError",
    "DnsPolicy",
    "DnsSource",
    "consul_target_location",
    "decode_addr_label",
]

_log = logging.getLogger(__name__)


class DnsLookupError(McResolveError):
    """The answer cannot be turned into endpoints (e.g. no SRV record and no ``port=``)."""


@dataclass(frozen=True, slots=True)
class DnsPolicy:
    """Limits a DNS source puts on what servers answer.

    Attributes:
        max_ttl: the longest an answer is cached, in seconds, whatever TTL it carries (a
            ``ttl-floor`` option above it still wins: that is the user's choice). 30 s: the JVM
            caches a successful lookup for 30 s by default (``networkaddress.cache.ttl``), gRPC
            re-resolves DNS at most every 30 s (``dns_min_time_between_resolutions``), and
            Consul's own DNS answers TTL 0 unless configured (``dns_config.service_ttl``). A TTL
            of 2147483647 s (RFC 2181's maximum) would otherwise hide every change until the
            process restarts.
    """

    max_ttl: float = 30.0

    def __post_init__(self) -> None:
        check_seconds("DnsPolicy.max_ttl", self.max_ttl, zero=True)
        if not self.max_ttl >= 0:
            raise ValueError(f"max_ttl must be >= 0 seconds, got {self.max_ttl!r}")

    def cache_ttl(self, answered: float, floor: float) -> float:
        """How long to cache an answer whose TTL is ``answered`` seconds: capped at
        :attr:`max_ttl`, then raised to ``floor``."""
        return max(min(answered, self.max_ttl), floor)


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The outcome of one resolution: endpoints, the datacenter they are in (if one), how long
    it may be cached (seconds, cap and floor applied), and the records rejected."""

    endpoints: tuple[Endpoint, ...]
    datacenter: str | None
    ttl: float
    rejected: tuple[Rejected, ...] = field(default=())

    @property
    def converted(self) -> Converted:
        """The endpoints and rejections as one value."""
        return Converted(self.endpoints, self.rejected)


class DnsCache:
    """A TTL-honouring cache of DNS results (``cachetools.TLRUCache``; shareable between sources).

    Each entry expires after its own TTL (``max(ttl, floor)``, the floor being the caller's).
    """

    def __init__(self, maxsize: int = 1024, timer: Callable[[], float] = time.monotonic) -> None:
        check_int_range("maxsize", maxsize, 1)
        if not callable(timer):
            raise TypeError(f"timer must be a callable, not {type_name(timer)}")
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


def _address_endpoint(address: str, port: int, datacenter: str, rdtype: str) -> Endpoint | Rejected:
    problem = endpoint_problem(address, port)
    if problem is not None:
        return Rejected(f"{rdtype} {shorten(address)}", problem)
    return Endpoint(address, port, datacenter=datacenter)


def _single_datacenter(endpoints: Iterable[Endpoint], fallback: str | None) -> str | None:
    datacenters = {e.datacenter for e in endpoints if e.datacenter}
    return datacenters.pop() if len(datacenters) == 1 else fallback


class DnsSource(PublishingSource):
    """Resolves a :class:`~mcresolve.sources.target.DnsTarget` periodically (see the module doc).

    ``damping`` rules how often :meth:`refresh_now` may re-query while the answer stays the same
    (default :class:`~mcresolve.sources.refresh.RefreshDamping`); ``policy`` caps TTLs
    (:class:`DnsPolicy`).
    """

    def __init__(
        self,
        target: DnsTarget,
        *,
        cache: DnsCache | None = None,
        backoff: BackoffPolicy | None = None,
        damping: RefreshDamping | None = None,
        policy: DnsPolicy | None = None,
        random_source: RandomSource = random.random,
    ) -> None:
        check_instance("target", target, (DnsTarget,), "a DnsTarget")
        check_optional_instances(
            ("cache", cache, DnsCache),
            ("backoff", backoff, BackoffPolicy),
            ("damping", damping, RefreshDamping),
            ("policy", policy, DnsPolicy),
        )
        super().__init__(str(target))
        self._target = target
        self._policy = policy if policy is not None else DnsPolicy()
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
        if answer.endpoints or not answer.rejected:  # never keep an unusable answer
            self._cache.put(key, answer, answer.ttl)
        return answer

    @property
    def servers(self) -> str:
        """The DNS server(s) asked, for logs and errors (``address:port``, comma-separated)."""
        if self._target.servers:
            return ",".join(str(s) for s in self._target.servers)
        return ",".join(str(ns) for ns in self._resolver.nameservers)

    async def _run(self) -> None:
        previous: DnsAnswer | None = None
        wake = Wake.PERIODIC
        while True:
            forced = wake is Wake.FORCED
            outcome: object
            try:
                answer = await self.resolve(use_cache=not forced)
                if answer.endpoints or not answer.rejected:
                    self._backoff.success()
                    delay = jittered(self._target.refresh, self._random())
                else:  # nothing but rejected records: a failed attempt, retried after backoff
                    delay = self._backoff.failure()
                # Identical non-empty answers are not republished; empty ones are, so the
                # consumer can count confirmations of a suspect empty set.
                if answer != previous or not answer.endpoints:
                    self._publish_converted(answer.converted, answer.datacenter, self.servers)
                previous = answer
                outcome = (frozenset(answer.endpoints), answer.datacenter, answer.rejected)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is reported and retried, never raised
                retry_in = self._backoff.failure()
                expected = isinstance(exc, dns.exception.DNSException | OSError | DnsLookupError)
                _log.log(
                    logging.WARNING if self._backoff.failures == 1 else logging.DEBUG,
                    "DNS %s failed (%d in a row, server %s), retry in %.2f s: %s",
                    self._target.name,
                    self._backoff.failures,
                    self.servers,
                    retry_in,
                    exc,
                    exc_info=not expected and self._backoff.failures == 1,
                )
                self._publish_error(exc)
                previous = None
                outcome = type(exc)
                delay = retry_in
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
        return self._policy.cache_ttl(ttl, self._target.ttl_floor)

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
        items: list[Endpoint | Rejected] = []
        for record in answer.rrset:
            host = record.target.to_text().lower()
            if host == ".":
                continue  # RFC 2782: "the service is decidedly not available at this domain"
            what = f"SRV {record.port} {shorten(host, 80)}"
            if record.port == 0:
                items.append(Rejected(what, "port 0 outside 1..65535"))
                continue
            node, dc = consul_target_location(host)
            addresses = additional.get(host)
            if not addresses:
                addresses = await self._addresses_of(host)
            if not addresses:
                items.append(Rejected(what, "the target has no A or AAAA record"))
            for address in addresses:
                problem = endpoint_problem(address, record.port)
                if problem is not None:
                    items.append(Rejected(what, problem))
                else:
                    items.append(Endpoint(address, record.port, node=node, datacenter=dc))
        converted = Converted.of(items)
        return DnsAnswer(
            converted.endpoints,
            _single_datacenter(converted.endpoints, self._name_dc),
            self._ttl(answer),
            converted.rejected,
        )

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
                converted = Converted.of(
                    _address_endpoint(r.address, port, self._name_dc or "", rdtype)
                    for r in answer.rrset
                )
                return DnsAnswer(
                    converted.endpoints, self._name_dc, self._ttl(answer), converted.rejected
                )
        return DnsAnswer((), self._name_dc, self._ttl(None))
