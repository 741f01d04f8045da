"""Prepared queries of one emulated datacenter, as Consul 1.0.8 serves them under ``/v1/query``.

:class:`PreparedQueryStore` keeps the datacenter's query definitions (queries are per
datacenter, like Consul's) and answers the HTTP API through :meth:`PreparedQueryStore.handle`;
:meth:`PreparedQueryStore.execute` is what ``DatacenterView.execute_prepared_query`` (and so the
DNS ``<name>.query.consul`` lookups) runs. The decisions live in pure modules:
``prepared_query_definition`` (decoding, normalisation, validation), ``prepared_query_template``
(templates), ``prepared_query_execution`` (filters, ordering, failover) and
``prepared_query_golang`` (Go's error texts). This module holds the state and the HTTP mapping.

Forwarding (``?dc=<other>``): execute goes through ``DatacenterView.execute_prepared_query`` of
the remote datacenter; the other operations need the remote view to expose its store as a
``prepared_queries`` attribute (see :class:`ForwardablePreparedQueries`).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .contracts import (
    ClusterView,
    DatacenterUnreachable,
    DatacenterView,
    EmulatorError,
    HealthEntry,
    HttpAnswer,
    QueryNotFound,
)
from .prepared_query_definition import (
    DefinitionError,
    decode_definition,
    is_template,
    stored_form,
    validate_definition,
)
from .prepared_query_execution import (
    FailoverOutcome,
    RemoteFailed,
    failover_targets,
    filter_instances,
    limited,
    move_node_first,
    rpc_rendering,
    run_failover,
    shuffled,
)
from .prepared_query_golang import (
    GoError,
    decode_json_value,
    go_atoi,
    is_uuid,
    parse_duration_ns,
    uuid_index_error,
)
from .prepared_query_template import CompiledTemplate, TemplateError, compile_template

AGENT_NODE_ALIAS = "_agent"

_COLLECTION_METHODS = ("GET", "POST")
_ITEM_METHODS = ("GET", "PUT", "DELETE")


@runtime_checkable
class ForwardablePreparedQueries(Protocol):
    """A ``DatacenterView`` that exposes its datacenter's store, so that ``?dc=`` requests other
    than execute (list, get, explain, create, update, delete) can be forwarded to it."""

    @property
    def prepared_queries(self) -> PreparedQueryStore: ...


@dataclass
class _Entry:
    stored: dict[str, Any]
    template: CompiledTemplate | None


def _read_headers(index: int, consistency: str) -> dict[str, str]:
    return {
        "X-Consul-Index": str(index),
        "X-Consul-Knownleader": "true",
        "X-Consul-Lastcontact": "0",
        "X-Consul-Effective-Consistency": consistency,
    }


#: Headers Consul sends when a server-side read fails (``setMeta`` of an empty reply).
_FAILED_READ_HEADERS = {
    "X-Consul-Index": "0",
    "X-Consul-Knownleader": "false",
    "X-Consul-Lastcontact": "0",
}


def _text(status: int, message: str, headers: Mapping[str, str] | None = None) -> HttpAnswer:
    return HttpAnswer(status, message, False, dict(headers or {}))


def _first(query: Mapping[str, list[str]], name: str) -> str:
    """Go's ``url.Values.Get``: the first value, ``""`` when absent."""
    values = query.get(name) or []
    return values[0] if values else ""


class _BadRequest(Exception):
    def __init__(self, answer: HttpAnswer) -> None:
        super().__init__(answer.body)
        self.answer = answer


class PreparedQueryStore:
    """The prepared queries defined in one datacenter.

    ``rng`` drives the result shuffles and the generated query IDs (pass a seeded
    ``random.Random`` for reproducible tests). ``enforce_version_8`` mirrors Consul's
    ``acl_enforce_version_8`` (default true in 1.0.8): an unnamed, non-template query must then be
    bound to a session.
    """

    def __init__(
        self,
        dc: DatacenterView,
        cluster: ClusterView,
        *,
        rng: random.Random | None = None,
        enforce_version_8: bool = True,
    ) -> None:
        self._dc = dc
        self._cluster = cluster
        self._rng = rng if rng is not None else random.Random()
        self._enforce_version_8 = enforce_version_8
        self._entries: dict[str, _Entry] = {}
        self._table_index = 0

    # ------------------------------------------------------------------ Python API

    @property
    def index(self) -> int:
        """The raft index of the last write to this datacenter's queries (0 before any)."""
        return self._table_index

    def queries(self) -> list[dict[str, Any]]:
        """Every stored definition, sorted by ID (``GET /v1/query``)."""
        return [copy.deepcopy(self._entries[key].stored) for key in sorted(self._entries)]

    def get(self, query_id: str) -> dict[str, Any]:
        """One stored definition by ID (``GET /v1/query/<id>``, unrendered for templates).
        Raises :class:`QueryNotFound`, or a 500 :class:`EmulatorError` for a malformed ID."""
        problem = uuid_index_error(query_id)
        if problem is not None:
            raise EmulatorError(500, f"failed prepared query lookup: index error: {problem}")
        entry = self._entries.get(query_id.lower())
        if entry is None:
            raise QueryNotFound()
        return copy.deepcopy(entry.stored)

    def create(self, definition: Any) -> str:
        """Create a query from a JSON-shaped definition (keys in any case); returns its ID.
        Raises :class:`EmulatorError` with Consul's status and text."""
        decoded = self._decode(definition)
        if decoded["ID"]:
            raise EmulatorError(500, "ID must be empty when creating a new prepared query")
        query_id = self._new_id()
        decoded["ID"] = query_id
        self._validate(decoded)
        self._store(decoded, existing=None)
        return query_id

    def update(self, query_id: str, definition: Any) -> None:
        """Replace a query's whole definition (``PUT /v1/query/<id>``)."""
        decoded = self._decode(definition)
        decoded["ID"] = query_id
        existing = self._existing_for_write(query_id)
        self._validate(decoded)
        self._store(decoded, existing=existing)

    def delete(self, query_id: str) -> None:
        """Delete a query (``DELETE /v1/query/<id>``)."""
        self._existing_for_write(query_id)
        index = self._dc.next_index()
        del self._entries[query_id.lower()]
        self._table_index = index

    def explain(self, name_or_id: str) -> dict[str, Any]:
        """The definition that executing ``name_or_id`` would run (templates rendered)."""
        return self._resolve(name_or_id)

    def execute(
        self, name_or_id: str, *, limit: int | None = None, near: str | None = None
    ) -> dict[str, Any]:
        """Execute a query defined here: the ``/v1/query/<q>/execute`` response body.

        ``near``: a node name or ``_agent`` (overrides the query's ``Service.Near``); ``limit``:
        cut after shuffling when positive. Raises :class:`QueryNotFound`.
        """
        return self._execute(name_or_id, limit=limit, near=near, consistency="leader")

    # ------------------------------------------------------------------ HTTP

    def handle(
        self, method: str, subpath: str, query: Mapping[str, list[str]], body: bytes | None
    ) -> HttpAnswer:
        """Answer ``<method> /v1/query<subpath>?<query>`` exactly as Consul 1.0.8 does."""
        try:
            return self._route(method.upper(), subpath, query, body)
        except _BadRequest as bad:
            return bad.answer

    def _route(
        self, method: str, subpath: str, query: Mapping[str, list[str]], body: bytes | None
    ) -> HttpAnswer:
        if subpath == "":
            allowed: Sequence[str] = _COLLECTION_METHODS
        elif subpath.startswith("/"):
            allowed = _ITEM_METHODS
        else:
            return _text(404, "")
        allow = ",".join(("OPTIONS", *allowed))
        if method == "OPTIONS":
            return HttpAnswer(200, "", False, {"Allow": allow})
        if method not in allowed:
            return _text(405, f"method {method} not allowed", {"Allow": allow})
        if subpath == "":
            return self._http_list(query) if method == "GET" else self._http_create(query, body)
        tail = subpath[1:]
        if tail.endswith("/execute"):
            return self._http_execute(tail.removesuffix("/execute"), query)
        if tail.endswith("/explain"):
            return self._http_explain(tail.removesuffix("/explain"), query)
        if method == "GET":
            return self._http_get(tail, query)
        if method == "PUT":
            return self._http_update(tail, query, body)
        return self._http_delete(tail, query)

    # -- request parsing (Consul's s.parse / parseSource / parseLimit)

    def _target_dc(self, query: Mapping[str, list[str]]) -> str:
        return _first(query, "dc") or self._dc.name

    @staticmethod
    def _consistency(query: Mapping[str, list[str]]) -> str:
        stale, consistent = "stale" in query, "consistent" in query
        if stale and consistent:
            raise _BadRequest(
                _text(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
            )
        wait = _first(query, "wait")
        if wait:
            try:
                parse_duration_ns(wait)
            except GoError:
                raise _BadRequest(_text(400, "Invalid wait time")) from None
        index = _first(query, "index")
        if index and not (index.isascii() and index.isdigit() and int(index) < 1 << 64):
            raise _BadRequest(_text(400, "Invalid index"))
        return "stale" if stale else "consistent" if consistent else "leader"

    def _near(self, query: Mapping[str, list[str]]) -> str | None:
        near = _first(query, "near")
        if near == AGENT_NODE_ALIAS:
            return self._dc.agent_node
        return near or None

    @staticmethod
    def _limit(query: Mapping[str, list[str]]) -> int | None:
        raw = _first(query, "limit")
        if not raw:
            return None
        try:
            return go_atoi(raw)
        except GoError as exc:
            raise _BadRequest(_text(500, f"Bad limit: {exc}")) from None

    @staticmethod
    def _body(body: bytes | None) -> Any:
        try:
            return decode_json_value(body)
        except GoError as exc:
            raise _BadRequest(_text(400, f"Request decode failed: {exc}")) from None

    # -- forwarding

    def _remote(self, dc: str, *, read: bool) -> DatacenterView:
        try:
            return self._cluster.reach(self._dc.name, dc)
        except EmulatorError as exc:
            raise _BadRequest(
                _text(exc.status, exc.message, _FAILED_READ_HEADERS if read else None)
            ) from None

    def _remote_store(self, dc: str, *, read: bool) -> PreparedQueryStore:
        view = self._remote(dc, read=read)
        store = view.prepared_queries if isinstance(view, ForwardablePreparedQueries) else None
        if isinstance(store, PreparedQueryStore):
            return store
        raise _BadRequest(
            _text(
                500,
                "rpc error making call: the emulated datacenter does not expose its prepared "
                "queries for forwarding",
                _FAILED_READ_HEADERS if read else None,
            )
        )

    @staticmethod
    def _forwarded_error(exc: EmulatorError) -> str:
        if isinstance(exc, DatacenterUnreachable):
            return exc.message
        return f"rpc error making call: {exc.message}"

    # -- endpoints

    def _http_list(self, query: Mapping[str, list[str]]) -> HttpAnswer:
        consistency = self._consistency(query)
        dc = self._target_dc(query)
        store = self if dc == self._dc.name else self._remote_store(dc, read=True)
        return HttpAnswer(200, store.queries(), True, _read_headers(store.index, consistency))

    def _http_get(self, query_id: str, query: Mapping[str, list[str]]) -> HttpAnswer:
        consistency = self._consistency(query)
        dc = self._target_dc(query)
        forwarded = dc != self._dc.name
        store = self._remote_store(dc, read=True) if forwarded else self
        try:
            stored = store.get(query_id)
        except QueryNotFound as exc:
            if forwarded:
                return _text(500, self._forwarded_error(exc), _FAILED_READ_HEADERS)
            return _text(404, exc.message)
        except EmulatorError as exc:
            message = self._forwarded_error(exc) if forwarded else exc.message
            return _text(500, message, _FAILED_READ_HEADERS)
        return HttpAnswer(200, [stored], True, _read_headers(store.index, consistency))

    def _http_execute(self, name_or_id: str, query: Mapping[str, list[str]]) -> HttpAnswer:
        near = self._near(query)
        consistency = self._consistency(query)
        limit = self._limit(query)
        dc = self._target_dc(query)
        try:
            if dc == self._dc.name:
                result = self._execute(name_or_id, limit=limit, near=near, consistency=consistency)
            else:
                result = self._execute_forwarded(dc, name_or_id, limit, consistency)
        except QueryNotFound as exc:
            return _text(404, exc.message)
        except EmulatorError as exc:
            return _text(exc.status, exc.message, _FAILED_READ_HEADERS)
        return HttpAnswer(200, result, True, _read_headers(0, consistency))

    def _execute_forwarded(
        self, dc: str, name_or_id: str, limit: int | None, consistency: str
    ) -> dict[str, Any]:
        remote = self._remote(dc, read=True)
        try:
            result = remote.execute_prepared_query(name_or_id)
        except EmulatorError as exc:
            raise EmulatorError(500, self._forwarded_error(exc)) from None
        result = dict(result)
        result["Nodes"] = limited(result.get("Nodes") or [], limit)
        result["ConsistencyLevel"] = consistency
        return result

    def _http_explain(self, name_or_id: str, query: Mapping[str, list[str]]) -> HttpAnswer:
        consistency = self._consistency(query)
        self._limit(query)
        dc = self._target_dc(query)
        forwarded = dc != self._dc.name
        store = self._remote_store(dc, read=True) if forwarded else self
        try:
            rendered = store.explain(name_or_id)
        except EmulatorError as exc:
            if forwarded:
                return _text(500, self._forwarded_error(exc), _FAILED_READ_HEADERS)
            if isinstance(exc, QueryNotFound):
                return _text(404, exc.message)
            return _text(exc.status, exc.message, _FAILED_READ_HEADERS)
        answer = {
            "Query": rendered,
            "Index": 0,
            "LastContact": 0,
            "KnownLeader": True,
            "ConsistencyLevel": consistency,
        }
        return HttpAnswer(200, answer, True, _read_headers(0, consistency))

    def _write_store(self, query: Mapping[str, list[str]]) -> PreparedQueryStore:
        dc = self._target_dc(query)
        return self if dc == self._dc.name else self._remote_store(dc, read=False)

    def _write(self, action: Any, *, forwarded: bool) -> Any:
        try:
            return action()
        except EmulatorError as exc:
            message = self._forwarded_error(exc) if forwarded else exc.message
            raise _BadRequest(_text(500 if forwarded else exc.status, message)) from None

    def _http_create(self, query: Mapping[str, list[str]], body: bytes | None) -> HttpAnswer:
        raw = self._body(body)
        definition = self._decode(raw, wrap=True)
        store = self._write_store(query)
        query_id = self._write(lambda: store.create(definition), forwarded=store is not self)
        return HttpAnswer(200, {"ID": query_id}, True, {})

    def _http_update(
        self, query_id: str, query: Mapping[str, list[str]], body: bytes | None
    ) -> HttpAnswer:
        raw = self._body(body) if body else None
        definition = self._decode(raw, wrap=True)
        store = self._write_store(query)
        self._write(lambda: store.update(query_id, definition), forwarded=store is not self)
        return _text(200, "")

    def _http_delete(self, query_id: str, query: Mapping[str, list[str]]) -> HttpAnswer:
        store = self._write_store(query)
        self._write(lambda: store.delete(query_id), forwarded=store is not self)
        return _text(200, "")

    # ------------------------------------------------------------------ internals

    def _decode(self, raw: Any, *, wrap: bool = False) -> dict[str, Any]:
        modern = bool(getattr(getattr(self._dc, "profile", None), "modern", False))
        try:
            return decode_definition(raw, modern=modern)
        except GoError as exc:
            answer = _text(400, f"Request decode failed: {exc}")
            if wrap:
                raise _BadRequest(answer) from None
            raise EmulatorError(400, answer.body) from None

    def _validate(self, definition: dict[str, Any]) -> None:
        try:
            validate_definition(definition, enforce_version_8=self._enforce_version_8)
        except DefinitionError as exc:
            raise EmulatorError(500, str(exc)) from None

    def _new_id(self) -> str:
        while True:
            raw = f"{self._rng.getrandbits(128):032x}"
            query_id = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
            if query_id not in self._entries:
                return query_id

    def _existing_for_write(self, query_id: str) -> _Entry:
        problem = uuid_index_error(query_id)
        if problem is not None:
            raise EmulatorError(
                500,
                "Prepared Query lookup failed: failed prepared query lookup: index error: "
                + problem,
            )
        entry = self._entries.get(query_id.lower())
        if entry is None:
            raise EmulatorError(500, f"Cannot modify non-existent prepared query: '{query_id}'")
        return entry

    def _store(self, definition: dict[str, Any], *, existing: _Entry | None) -> None:
        """Consul's state-store ``PreparedQuerySet``: the raft index is consumed even when the
        checks below refuse the write."""
        index = self._dc.next_index()
        create_index = existing.stored["CreateIndex"] if existing else index
        existing_id = existing.stored["ID"].lower() if existing else None
        name: str = definition["Name"]
        if name:
            other = self._by_name(name)
            if other is not None and other != existing_id:
                raise EmulatorError(500, f"name '{name}' aliases an existing query name")
        elif is_template(definition):
            other = self._empty_template()
            if other is not None and other != existing_id:
                raise EmulatorError(500, "a query template with an empty name already exists")
        if name and is_uuid(name) and name.lower() in self._entries:
            raise EmulatorError(500, f"name '{name}' aliases an existing query ID")
        if definition["Session"]:
            raise EmulatorError(500, f"invalid session {json.dumps(definition['Session'])}")
        stored = stored_form(definition, definition["ID"], create_index, index)
        template = None
        if is_template(definition):
            try:
                template = compile_template(stored)
            except TemplateError as exc:
                raise EmulatorError(500, f"failed compiling template: {exc}") from None
        if existing_id is not None:
            del self._entries[existing_id]
        self._entries[definition["ID"].lower()] = _Entry(stored, template)
        self._table_index = index

    def _by_name(self, name: str) -> str | None:
        for key, entry in self._entries.items():
            stored_name: str = entry.stored["Name"]
            if stored_name and stored_name.lower() == name.lower():
                return key
        return None

    def _empty_template(self) -> str | None:
        for key, entry in self._entries.items():
            if entry.template is not None and entry.stored["Name"] == "":
                return key
        return None

    def _resolve(self, name_or_id: str) -> dict[str, Any]:
        """Consul's ``PreparedQueryResolve``: by ID, then exact name, then the template with the
        longest matching name prefix; templates are rendered for ``name_or_id``."""
        if name_or_id == "":
            raise EmulatorError(500, "Missing query ID")
        entry = None
        if is_uuid(name_or_id):
            entry = self._entries.get(name_or_id.lower())
        if entry is None:
            key = self._by_name(name_or_id)
            entry = self._entries[key] if key is not None else None
        if entry is None:
            entry = self._longest_template_prefix(name_or_id)
        if entry is None:
            raise QueryNotFound()
        if entry.template is None:
            return copy.deepcopy(entry.stored)
        try:
            return entry.template.render(name_or_id)
        except TemplateError as exc:
            raise EmulatorError(500, str(exc)) from None

    def _longest_template_prefix(self, name: str) -> _Entry | None:
        best: _Entry | None = None
        for entry in self._entries.values():
            prefix: str = entry.stored["Name"]
            if entry.template is None or not name.lower().startswith(prefix.lower()):
                continue
            if best is None or len(prefix) > len(best.stored["Name"]):
                best = entry
        return best

    def _execute(
        self, name_or_id: str, *, limit: int | None, near: str | None, consistency: str
    ) -> dict[str, Any]:
        definition = self._resolve(name_or_id)
        service: dict[str, Any] = definition["Service"]
        nodes = filter_instances(self._dc.health_service(service["Service"]), service)
        nodes = shuffled(nodes, self._rng)
        source = near or service["Near"]
        if source == AGENT_NODE_ALIAS:
            source = self._dc.agent_node
        if source:
            nodes = move_node_first(self._dc.sort_near(nodes, source), source)
        nodes = limited(nodes, limit)
        datacenter = self._dc.name
        failovers = 0
        if not nodes:
            others = [
                dc for dc in self._cluster.datacenters_by_rtt(self._dc.name) if dc != datacenter
            ]
            if service["Failover"].get("Targets"):
                outcome = self._failover_to_targets(service, others, limit)
            else:
                outcome = run_failover(
                    failover_targets(service["Failover"], others),
                    lambda dc: self._execute_remote(dc, service, limit),
                )
            nodes = outcome.nodes
            datacenter = outcome.datacenter or datacenter
            failovers = outcome.failovers
        return {
            "Service": service["Service"],
            "Nodes": rpc_rendering(nodes),
            "DNS": copy.deepcopy(definition["DNS"]),
            "Datacenter": datacenter,
            "Failovers": failovers,
            "Index": 0,
            "LastContact": 0,
            "KnownLeader": True,
            "ConsistencyLevel": consistency,
        }

    def _failover_to_targets(
        self, service: dict[str, Any], known: Sequence[str], limit: int | None
    ) -> FailoverOutcome:
        """``Failover.Targets`` in order (agent/consul/prepared_query_endpoint.go
        ``queryFailover``, 1.14+): a ``Datacenter`` target unknown here is skipped uncounted;
        a ``Peer`` target executes on the peer's exported instances, which carry
        ``PeerName``; the answer's ``Datacenter`` is the peer's (*inferred*)."""
        keys: dict[str, tuple[str, str]] = {}
        order: list[str] = []
        for number, target in enumerate(service["Failover"]["Targets"]):
            peer, dc = target.get("Peer") or "", target.get("Datacenter") or ""
            if not peer and dc not in known:
                continue
            key = f"{number}"
            keys[key] = (peer, dc)
            order.append(key)

        def attempt(key: str) -> list[HealthEntry]:
            peer, dc = keys[key]
            if not peer:
                return self._execute_remote(dc, service, limit)
            entries = getattr(self._dc, "peer_health_service", lambda *_: None)(
                peer, service["Service"]
            )
            if entries is None:
                raise RemoteFailed(peer)
            return limited(shuffled(filter_instances(entries, service), self._rng), limit)

        outcome = run_failover(order, attempt)
        answered = None
        if outcome.datacenter is not None:
            peer, dc = keys[outcome.datacenter]
            answered = dc
            if peer:
                link = self._dc.peers[peer]  # type: ignore[attr-defined]
                answered = link.remote.name
        return FailoverOutcome(outcome.nodes, answered, outcome.failovers)

    def _execute_remote(
        self, dc: str, service: dict[str, Any], limit: int | None
    ) -> list[HealthEntry]:
        """Consul's ``ExecuteRemote``: the remote datacenter applies the (rendered) definition
        to its own instances, shuffles and limits; no distance sort across datacenters."""
        try:
            remote = self._cluster.reach(self._dc.name, dc)
            entries = remote.health_service(service["Service"])
        except EmulatorError:
            raise RemoteFailed(dc) from None
        return limited(shuffled(filter_instances(entries, service), self._rng), limit)
