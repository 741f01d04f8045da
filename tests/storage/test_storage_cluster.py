"""The real SeaweedFS cluster: replication, node loss, restarts, start-up errors, reaping."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import signal
import stat
import subprocess
import sys
import uuid
import weakref
from pathlib import Path

import minio
import pytest
import urllib3

from mcresolve.testing.storage import (
    READY_BUCKET,
    StorageCluster,
    StorageHarnessError,
    StorageStartError,
    WeedNotFoundError,
    find_weed,
    live_weed_pids,
)
from support import until, until_sync

pytestmark = pytest.mark.storage


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); the harness must have reaped it, so look at /proc.
    state = Path(f"/proc/{pid}/stat")
    return state.exists() and state.read_text().split()[2] != "Z"


def _bucket(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _put(client: minio.Minio, bucket: str, key: str, data: bytes) -> str:
    result = client.put_object(bucket, key, io.BytesIO(data), len(data))
    return str(result.etag)


def _get(client: minio.Minio, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


async def test_topology_nodes_grouped_by_datacenter(mcresolve_storage: StorageCluster) -> None:
    assert mcresolve_storage.datacenters == ("dc1", "dc2")
    assert [n.name for n in mcresolve_storage.nodes] == [
        "dc1-node0",
        "dc1-node1",
        "dc2-node0",
        "dc2-node1",
    ]
    assert mcresolve_storage.nodes_in("dc2") == (
        mcresolve_storage.node("dc2", 0),
        mcresolve_storage.node("dc2", 1),
    )
    assert {n.datacenter for n in mcresolve_storage.nodes_in("dc1")} == {"dc1"}
    ports = [p for n in mcresolve_storage.nodes for p in (n.port, n.s3_port, *n.ports.values())]
    assert len(set(ports)) == len(ports) - len(mcresolve_storage.nodes)  # s3_port == ports["port"]
    for node in mcresolve_storage.nodes:
        assert node.port == node.proxy.port != node.s3_port
        assert node.endpoint == f"127.0.0.1:{node.port}"
        assert node.running and node.pid is not None and _pid_alive(node.pid)
    assert len(mcresolve_storage.volume_servers) == 2
    assert mcresolve_storage.pids() <= live_weed_pids()
    assert len(mcresolve_storage.pids()) == 1 + 2 + 1 + 4
    assert mcresolve_storage.startup_seconds is not None and mcresolve_storage.startup_seconds < 60
    with pytest.raises(KeyError):
        mcresolve_storage.nodes_in("dc9")
    with pytest.raises(IndexError):
        mcresolve_storage.node("dc1", 2)


async def test_object_written_via_one_node_reads_identically_via_every_other(
    mcresolve_storage: StorageCluster,
) -> None:
    bucket = _bucket()
    writer = mcresolve_storage.node("dc1", 0).client()
    payload = os.urandom(300_000)
    await asyncio.to_thread(writer.make_bucket, bucket)
    etag = await asyncio.to_thread(_put, writer, bucket, "blob", payload)
    for node in mcresolve_storage.nodes[1:]:
        client = node.client()
        assert await asyncio.to_thread(_get, client, bucket, "blob") == payload
        info = await asyncio.to_thread(client.stat_object, bucket, "blob")
        assert info.etag == etag and info.size == len(payload)
        names = await asyncio.to_thread(
            lambda c=client: [o.object_name for o in c.list_objects(bucket)]
        )
        assert names == ["blob"]


async def test_every_chunk_lives_on_two_volume_servers(mcresolve_storage: StorageCluster) -> None:
    bucket = _bucket()
    client = mcresolve_storage.node("dc2", 1).client()
    await asyncio.to_thread(client.make_bucket, bucket)
    await asyncio.to_thread(_put, client, bucket, "big", os.urandom(9 * 1024 * 1024))  # 3 chunks
    await asyncio.to_thread(_put, client, bucket, "tiny", b"x")
    volume_servers = {f"127.0.0.1:{v.port}" for v in mcresolve_storage.volume_servers}
    for key in ("big", "tiny"):
        locations = await mcresolve_storage.object_locations(bucket, key)
        assert locations, f"{key} has no data chunks"
        for holders in locations:
            assert len(holders) == 2 and holders <= volume_servers, (key, holders)


async def test_killed_node_refuses_while_others_serve_the_same_objects(
    mcresolve_storage: StorageCluster,
) -> None:
    bucket = _bucket()
    victim = mcresolve_storage.node("dc1", 0)
    await asyncio.to_thread(victim.client().make_bucket, bucket)
    await asyncio.to_thread(_put, victim.client(), bucket, "k", b"before the kill")
    pid, port, s3_port = victim.pid, victim.port, victim.s3_port
    assert pid is not None

    await victim.kill()

    assert not victim.running and not _pid_alive(pid)
    assert pid not in live_weed_pids()
    with pytest.raises(urllib3.exceptions.NewConnectionError) as refused:
        await asyncio.to_thread(victim.client().list_buckets)
    assert isinstance(refused.value.__context__, ConnectionRefusedError)  # refused, not timed out
    for node in mcresolve_storage.nodes[1:]:
        assert await asyncio.to_thread(_get, node.client(), bucket, "k") == b"before the kill"
    await asyncio.to_thread(
        _put, mcresolve_storage.node("dc2", 0).client(), bucket, "k2", b"while down"
    )

    await victim.restart()

    assert victim.running and victim.pid != pid
    assert (victim.port, victim.s3_port) == (port, s3_port)
    client = victim.client()
    assert await asyncio.to_thread(_get, client, bucket, "k2") == b"while down"
    await asyncio.to_thread(_put, client, bucket, "k3", b"after the restart")
    assert await asyncio.to_thread(
        _get, mcresolve_storage.node("dc2", 1).client(), bucket, "k3"
    ) == (b"after the restart")


async def test_killed_volume_server_loses_no_object(mcresolve_storage: StorageCluster) -> None:
    bucket = _bucket()
    client = mcresolve_storage.node("dc1", 1).client()
    await asyncio.to_thread(client.make_bucket, bucket)
    objects = {f"obj-{i}": os.urandom(1000 + i) for i in range(8)}
    for key, data in objects.items():
        await asyncio.to_thread(_put, client, bucket, key, data)
    victim = mcresolve_storage.volume_servers[0]
    address = f"127.0.0.1:{victim.port}"

    await victim.kill()

    async def unlisted() -> bool:  # the master notices when its heartbeat stream breaks
        return address not in await mcresolve_storage.registered_volume_servers()

    await until(unlisted, within=10, what="the master to drop the killed volume server")
    for node in mcresolve_storage.nodes:
        reader = node.client()
        for key, data in objects.items():
            assert await asyncio.to_thread(_get, reader, bucket, key) == data, (node.name, key)

    await victim.restart()

    assert address in await mcresolve_storage.registered_volume_servers()
    await asyncio.to_thread(_put, client, bucket, "after", b"writes work again")
    assert await asyncio.to_thread(_get, client, bucket, "after") == b"writes work again"


async def test_heal_restarts_dead_processes_and_clears_faults(
    mcresolve_storage: StorageCluster,
) -> None:
    node = mcresolve_storage.node("dc2", 0)
    await node.kill()
    mcresolve_storage.node("dc2", 1).proxy.blackhole()
    await mcresolve_storage.heal()
    assert node.running
    assert all(n.proxy.mode.value == "pass" for n in mcresolve_storage.nodes)
    assert await asyncio.to_thread(
        lambda: (
            READY_BUCKET
            in [b.name for b in mcresolve_storage.node("dc2", 1).client().list_buckets()]
        )
    )


def test_missing_weed_binary_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCRESOLVE_WEED", "/nonexistent/weed")
    with pytest.raises(WeedNotFoundError, match="not an executable"):
        find_weed()
    monkeypatch.delenv("MCRESOLVE_WEED")
    assert find_weed().name == "weed"


def test_start_failure_names_binary_port_and_log_and_leaves_nothing(tmp_path: Path) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fatal: cannot open data dir' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    cluster = StorageCluster(datacenters={"dc1": 1}, weed=fake, base_dir=tmp_path)
    before = live_weed_pids()
    with pytest.raises(StorageStartError) as failure:
        cluster.start_blocking()
    message = str(failure.value)
    assert "weed master 'master' exited with status 3" in message
    assert f"binary: {fake}" in message
    assert "ports: port=" in message and "port.grpc=" in message
    assert "master.log" in message and "fatal: cannot open data dir" in message
    assert live_weed_pids() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("mcresolve-storage-")]


async def test_every_process_reaped_on_exit_and_on_exception(tmp_path: Path) -> None:
    with StorageCluster(datacenters={"dc1": 1}, base_dir=tmp_path) as cluster:
        pids = cluster.pids()
        assert len(pids) == 5 and all(_pid_alive(p) for p in pids)
    assert not any(_pid_alive(p) for p in pids)

    with pytest.raises(RuntimeError, match="test failure inside the cluster"):
        async with StorageCluster(datacenters={"dc1": 1}, base_dir=tmp_path) as cluster:
            pids = cluster.pids()
            directory = cluster.directory
            await cluster.node("dc1", 0).kill()  # a dead node must not confuse teardown
            raise RuntimeError("test failure inside the cluster")
    assert len(pids) == 5 and not any(_pid_alive(p) for p in pids)
    assert not directory.exists()
    assert not (pids & live_weed_pids())


async def test_datacenter_loss_leaves_the_other_datacenter_serving(
    mcresolve_storage: StorageCluster,
) -> None:
    bucket = _bucket()
    await asyncio.to_thread(mcresolve_storage.node("dc1", 1).client().make_bucket, bucket)
    await asyncio.to_thread(
        _put, mcresolve_storage.node("dc1", 1).client(), bucket, "k", b"site data"
    )

    await mcresolve_storage.kill_datacenter("dc1")

    for node in mcresolve_storage.nodes_in("dc1"):
        assert not node.running
        with pytest.raises(urllib3.exceptions.NewConnectionError):
            await asyncio.to_thread(node.client().list_buckets)
    for node in mcresolve_storage.nodes_in("dc2"):
        assert await asyncio.to_thread(_get, node.client(), bucket, "k") == b"site data"

    await mcresolve_storage.restart_datacenter("dc1")

    for node in mcresolve_storage.nodes_in("dc1"):
        assert await asyncio.to_thread(_get, node.client(), bucket, "k") == b"site data"


def test_three_volume_servers_keep_writes_going_and_nodes_can_skip_proxies(
    tmp_path: Path,
) -> None:
    with StorageCluster(
        datacenters={"dc1": 1}, volume_servers=3, proxies=False, base_dir=tmp_path
    ) as cluster:
        node = cluster.node("dc1", 0)
        assert node.port == node.s3_port and len(cluster.pids()) == 1 + 3 + 1 + 1
        with pytest.raises(StorageHarnessError, match="proxies=False"):
            _ = node.proxy
        client = node.client(read_timeout=10)
        bucket = _bucket()
        client.make_bucket(bucket)
        _put(client, bucket, "first", b"on two of three")
        (holders,) = cluster.run(cluster.object_locations(bucket, "first"))
        victim = next(v for v in cluster.volume_servers if f"127.0.0.1:{v.port}" in holders)

        cluster.run(victim.kill())

        _put(client, bucket, "second", b"placed on the surviving pair")
        assert _get(client, bucket, "first") == b"on two of three"
        (new_holders,) = cluster.run(cluster.object_locations(bucket, "second"))
        assert len(new_holders) == 2 and f"127.0.0.1:{victim.port}" not in new_holders


def test_abandoned_cluster_is_reaped_when_garbage_collected(tmp_path: Path) -> None:
    cluster = StorageCluster(datacenters={"dc1": 1}, base_dir=tmp_path)
    cluster.start_blocking()
    pids, directory = cluster.pids(), cluster.directory
    collected = weakref.ref(cluster)
    del cluster

    def gone() -> bool:
        # start_blocking returns when the harness thread has set the start's result; that
        # thread may still be unwinding the start's frames (which hold the cluster) for a moment
        # on a loaded machine, so collect until it has let go (no reference may survive).
        gc.collect()
        return collected() is None

    until_sync(gone, within=10, what="the abandoned cluster to be collected")
    assert len(pids) == 5 and not any(_pid_alive(p) for p in pids)
    assert not directory.exists()


def test_weed_processes_die_with_a_hard_killed_python(tmp_path: Path) -> None:
    script = (
        "import json, os, signal, sys\n"
        "from mcresolve.testing.storage import StorageCluster\n"
        f"cluster = StorageCluster(datacenters={{'dc1': 1}}, base_dir={str(tmp_path)!r})\n"
        "cluster.start_blocking()\n"
        "print(json.dumps(sorted(cluster.pids())), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    pids = json.loads(child.stdout)
    assert len(pids) == 5
    # the kernel delivers the parent-death signal at once
    until_sync(lambda: not any(_pid_alive(p) for p in pids), within=10, what="weed to die")
