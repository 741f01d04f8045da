"""Endpoint.to_json: the one JSON form of an endpoint (CLI --json output and snapshot files)."""

from __future__ import annotations

import json
from pathlib import Path

from mcresolve.endpoint import Endpoint
from mcresolve.sources.base import Resolution
from mcresolve.sources.snapshot import load_snapshot, save_snapshot


def test_every_field_in_plain_json_types() -> None:
    endpoint = Endpoint("10.0.0.1", 9000, "n1", "dc1", "minio-1", ("v1", "primary"), {"z": "a"})
    assert endpoint.to_json() == {
        "address": "10.0.0.1",
        "port": 9000,
        "node": "n1",
        "datacenter": "dc1",
        "service_id": "minio-1",
        "tags": ["v1", "primary"],
        "meta": {"z": "a"},
    }
    assert json.loads(json.dumps(endpoint.to_json())) == endpoint.to_json()


def test_a_snapshot_stores_the_json_form_and_loads_it_back(tmp_path: Path) -> None:
    endpoint = Endpoint("10.0.0.2", 9001, "n2", "dc2", "minio-2", ("v2",), {"k": "v"})
    path = tmp_path / "snapshot.json"
    save_snapshot(path, Resolution.answered([endpoint], "static://x", "dc2"), "static://x")
    assert json.loads(path.read_text())["endpoints"] == [endpoint.to_json()]
    loaded = load_snapshot(path, "static://x")
    assert loaded is not None and loaded.endpoints == (endpoint,)
    assert dict(loaded.endpoints[0].meta) == {"k": "v"}
