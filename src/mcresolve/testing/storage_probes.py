"""How a :class:`~mcresolve.testing.storage.StorageCluster` runs and asks its ``weed`` servers: the
command line of each role, the S3 identities, and the readiness probes and queries (the master's
volume-server list, an object's replica locations, the S3 gateways' ready bucket)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import minio
import urllib3

from mcresolve.testing.weed_process import (
    _READY_BODY,
    _READY_KEY,
    LOOPBACK,
    READY_BUCKET,
    StorageHarnessError,
    StorageStartError,
    _http_get,
    _WeedProcess,
)

__all__ = ["WeedServers"]


class WeedServers:
    """The command lines, readiness probes and S3 helpers of a cluster's weed servers (a part of
    :class:`~mcresolve.testing.storage.StorageCluster`, which provides the attributes declared
    here)."""

    access_key: str
    secret_key: str
    startup_timeout: float
    _master: _WeedProcess | None
    _filer: _WeedProcess | None
    _ready_bucket_created: bool

    @property
    def directory(self) -> Path:
        raise NotImplementedError

    @staticmethod
    def _require(proc: _WeedProcess | None) -> _WeedProcess:
        if proc is None:
            raise StorageHarnessError("the storage cluster is not started")
        return proc

    # -- internals: configuration -----------------------------------------------------------

    def _s3_identities(self) -> dict[str, Any]:
        return {
            "identities": [
                {
                    "name": "mcresolve-admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }

    def _child_env(self, workdir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
        env["HOME"] = str(workdir)  # no ~/.seaweedfs/*.toml from the user's home
        return env

    @staticmethod
    def _grpc_address(proc: _WeedProcess) -> str:
        # SeaweedFS's "host:port.grpcPort" notation names both ports of a server.
        return f"{LOOPBACK}:{proc.ports['port']}.{proc.ports['port.grpc']}"

    def _args_for(self, proc: _WeedProcess) -> list[str]:
        common = [
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-port={proc.ports['port']}",
            f"-port.grpc={proc.ports['port.grpc']}",
        ]
        master = self._grpc_address(self._require(self._master))
        if proc.role == "master":
            return [
                "master",
                *common,
                f"-mdir={proc.workdir}",
                "-peers=none",
                "-defaultReplication=001",
                "-volumeSizeLimitMB=32",
                "-volumePreallocate=false",
                "-telemetry=false",
            ]
        if proc.role == "volume":
            return [
                "volume",
                *common,
                f"-dir={proc.workdir}",
                f"-master={master}",
                "-max=32",
                "-preStopSeconds=0",
            ]
        if proc.role == "filer":
            return [
                "filer",
                *common,
                f"-master={master}",
                f"-defaultStoreDir={proc.workdir}",
                f"-localSocket={proc.workdir / 'filer.sock'}",
            ]
        return [
            "s3",
            *common,
            f"-filer={self._grpc_address(self._require(self._filer))}",
            f"-config={self.directory / 's3.json'}",
            f"-localSocket={proc.workdir / 's3.sock'}",
            "-port.iceberg=0",
            "-port.lance=0",
            "-iam=false",
        ]

    # -- internals: readiness ---------------------------------------------------------------

    async def _readiness_problem(self, proc: _WeedProcess) -> str | None:
        """``None`` when ``proc`` is ready, otherwise what is missing."""
        if proc.role == "master":
            status, body = await _http_get(proc.port, "/cluster/status")
            if status != 200 or not json.loads(body or b"{}").get("IsLeader"):
                return f"/cluster/status answered {status} {body[:200]!r}"
            return None
        if proc.role == "volume":
            # Its own /status proves this process is up; the master's list, that it registered
            # (the list alone could still show a just-killed predecessor on the same port).
            status, _ = await _http_get(proc.port, "/status")
            if status != 200:
                return f"GET /status answered {status}"
            address = f"{LOOPBACK}:{proc.port}"
            if address not in await self._registered_volume_servers():
                return f"master does not list volume server {address} yet"
            return None
        if proc.role == "filer":
            status, body = await _http_get(proc.port, "/")
            return None if status == 200 else f"GET / answered {status}"
        status, body = await _http_get(proc.port, "/healthz")
        if status != 200:
            return f"GET /healthz answered {status}"
        if not self._ready_bucket_created:
            # First gateway of a fresh cluster: the bucket does not exist yet; an
            # authenticated ListBuckets proves the gateway reaches the filer.
            if not await asyncio.to_thread(self._buckets_listed, proc.port):
                return "ListBuckets failed"
            return None
        if not await asyncio.to_thread(self._bucket_served, proc.port):
            return f"bucket {READY_BUCKET} not served yet"
        return None

    def _probe_client(self, port: int) -> minio.Minio:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False, maxsize=1
        )
        return minio.Minio(
            f"{LOOPBACK}:{port}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            http_client=http,
        )

    def _buckets_listed(self, port: int) -> bool:
        try:
            self._probe_client(port).list_buckets()
        except (minio.error.MinioException, urllib3.exceptions.HTTPError, OSError):
            return False
        return True

    def _bucket_served(self, port: int) -> bool:
        client = self._probe_client(port)
        try:
            response = client.get_object(READY_BUCKET, _READY_KEY)
            try:
                return bool(response.read() == _READY_BODY)
            finally:
                response.close()
                response.release_conn()
        except (minio.error.MinioException, urllib3.exceptions.HTTPError, OSError):
            return False

    async def _create_ready_bucket(self, port: int) -> None:
        def create() -> None:
            client = self._probe_client(port)
            if not client.bucket_exists(READY_BUCKET):
                client.make_bucket(READY_BUCKET)
            client.put_object(READY_BUCKET, _READY_KEY, io.BytesIO(_READY_BODY), len(_READY_BODY))
            if not self._bucket_served(port):
                raise OSError(f"{READY_BUCKET}/{_READY_KEY} not readable after writing it")

        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                await asyncio.to_thread(create)
                self._ready_bucket_created = True
                return
            except (minio.error.MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise StorageStartError(
                        f"could not create bucket {READY_BUCKET} through the first S3 gateway "
                        f"(port {port}): {exc}"
                    ) from exc
                await asyncio.sleep(0.1)

    async def _registered_volume_servers(self) -> frozenset[str]:
        status, body = await _http_get(self._require(self._master).port, "/dir/status")
        if status != 200:
            raise OSError(f"master /dir/status answered {status}")
        topology = json.loads(body).get("Topology", {})
        return frozenset(
            node["Url"]
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        )

    async def _object_locations(self, bucket: str, key: str) -> list[frozenset[str]]:
        filer = self._require(self._filer)
        status, body = await _http_get(filer.port, f"/buckets/{bucket}/{key}?metadata=true")
        if status != 200:
            raise StorageHarnessError(f"filer has no entry for {bucket}/{key} ({status})")
        chunks = json.loads(body).get("chunks") or []
        result = []
        for chunk in chunks:
            volume_id = str(chunk["file_id"]).split(",", 1)[0]
            status, body = await _http_get(
                self._require(self._master).port, f"/dir/lookup?volumeId={volume_id}"
            )
            locations = (json.loads(body).get("locations") or []) if status == 200 else []
            result.append(frozenset(str(loc["url"]) for loc in locations))
        return result
