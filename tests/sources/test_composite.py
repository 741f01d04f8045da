"""ResilientSource: the arbiter's decisions carried out (snapshot file, fallback source, timers)."""

from __future__ import annotations

import json
from pathlib import Path

from manual_source import ManualSource, eps
from mcresolve.endpoint import Endpoint
from mcresolve.sources import Resolution, StaticSource
from mcresolve.sources.arbiter import ArbiterPolicy
from mcresolve.sources.composite import ResilientSource
from mcresolve.sources.snapshot import load_snapshot, save_snapshot

from .helpers import next_matching


def test_snapshot_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "lkg.json"
    endpoint = Endpoint("10.0.0.1", 9000, "n1", "dc1", "minio-1", ("v1", "primary"), {"zone": "z1"})
    save_snapshot(path, Resolution((endpoint,), "consul://svc", "dc1", 123.5), "consul://svc")
    loaded = load_snapshot(path, "consul://svc")
    assert loaded is not None
    assert loaded.endpoints == (endpoint,)
    assert dict(loaded.endpoints[0].meta) == {"zone": "z1"}
    assert (loaded.datacenter, loaded.resolved_at, loaded.stale) == ("dc1", 123.5, True)
    assert loaded.source == f"snapshot:{path}"
    assert [p.name for p in path.parent.iterdir()] == ["lkg.json"]  # no temporary left behind


def test_snapshot_missing_malformed_or_foreign_is_ignored(tmp_path: Path) -> None:
    assert load_snapshot(tmp_path / "none.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert load_snapshot(bad) is None
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"version": 1, "target": "x", "endpoints": [{"port": 1}]}))
    assert load_snapshot(wrong) is None
    other = tmp_path / "other.json"
    save_snapshot(other, Resolution(eps(1), "consul://a", None, 1.0), "consul://a")
    assert load_snapshot(other, "consul://b") is None
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"version": 2, "target": "x", "endpoints": []}))
    assert load_snapshot(future) is None


async def test_good_answers_are_persisted_and_warm_start_serves_them(tmp_path: Path) -> None:
    path = tmp_path / "lkg.json"
    primary = ManualSource()
    async with ResilientSource(primary, snapshot=str(path)) as source:
        primary.answer(eps(1, 2))
        assert source.current is not None and source.current.ok
    assert load_snapshot(path, primary.description) is not None

    # restart while Consul is down: the snapshot is served at once, marked stale
    restarted = ManualSource()
    async with ResilientSource(restarted, snapshot=str(path)) as source:
        current = source.current
        assert current is not None
        assert current.endpoints == eps(1, 2) and current.stale
        restarted.fail(ConnectionError("connection refused"))
        current = source.current
        assert current is not None and current.endpoints == eps(1, 2)
        assert isinstance(current.error, ConnectionError)
        restarted.answer(eps(3))
        assert source.current is not None and source.current.endpoints == eps(3)
    loaded = load_snapshot(path, restarted.description)
    assert loaded is not None and loaded.endpoints == eps(3)


async def test_fallback_to_static_when_primary_fails_without_lkg() -> None:
    primary = ManualSource()
    static = StaticSource(eps(9100, dc=""))
    async with ResilientSource(primary, fallback=lambda: static) as source:
        primary.fail(ConnectionError("refused"))
        engaged = await next_matching(source, lambda r: r.fallback)
        assert engaged.endpoints == eps(9100, dc="")
        assert isinstance(engaged.error, ConnectionError)
        assert source.fallback_source is static
        primary.answer(eps(1))
        back = await next_matching(source, lambda r: not r.fallback)
        assert back.endpoints == eps(1) and back.ok
        assert source.fallback_source is None
    assert static.current is not None  # it ran


async def test_fallback_after_delay_with_lkg() -> None:
    primary = ManualSource()
    made: list[StaticSource] = []

    def fallback() -> StaticSource:
        made.append(StaticSource(eps(9200)))
        return made[-1]

    policy = ArbiterPolicy(fallback_after=0.05)
    async with ResilientSource(primary, policy=policy, fallback=fallback) as source:
        primary.answer(eps(1))
        primary.fail(TimeoutError("watch"))
        current = source.current
        assert current is not None and current.endpoints == eps(1) and current.stale
        assert made == []  # not yet: the LKG is served during the delay
        engaged = await next_matching(source, lambda r: r.fallback)
        assert engaged.endpoints == eps(9200)


async def test_suspect_empty_is_confirmed_by_the_timer() -> None:
    primary = ManualSource()
    policy = ArbiterPolicy(empty_hold=0.05, empty_confirm=100)
    async with ResilientSource(primary, policy=policy) as source:
        primary.answer(eps(1, 2))
        primary.answer(())
        held = source.current
        assert held is not None and held.suspect_empty and held.endpoints == eps(1, 2)
        confirmed = await next_matching(source, lambda r: not r.endpoints)
        assert confirmed.ok


async def test_refresh_now_reaches_the_primary() -> None:
    primary = ManualSource()
    async with ResilientSource(primary) as source:
        source.refresh_now()
    assert primary.refreshes == 1


async def test_stop_stops_primary_and_fallback() -> None:
    primary = ManualSource()
    static = StaticSource(eps(9))
    source = ResilientSource(primary, fallback=lambda: static)
    await source.start()
    primary.fail(OSError("x"))
    await next_matching(source, lambda r: r.fallback)
    await source.aclose()
    assert primary._stopped and static._stopped
