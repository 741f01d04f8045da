"""The demo run: bring everything up, run the battery against live traffic, report.

:class:`Demo` owns every resource it starts (the Consul emulator, SeaweedFS, storefront
processes, pools, traffic) and releases them in :meth:`Demo.close`, whatever happened.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import aiohttp

from mcresolve.consul import ConsulConfig
from mcresolve.minio import AsyncResilientMinio, HttpPolicy
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.testing.topology import STORAGE_SERVICE, MultiCloudTopology

from .faults import FaultInjector
from .measure import (
    LOCAL_ONLY,
    SHOPPERS,
    SIDECAR,
    TRAFFIC_CLASSES,
    WRITES,
    PhaseStats,
    Sample,
    summarize,
)
from .processes import ChildProcess, ProcessError, child_env, free_port, storefront_code
from .report import PhaseResult
from .scenarios import Fault, Phase, Scenario, judge_all
from .traffic import TrafficGenerator, TrafficSettings, visit

STOREFRONT_SERVICE = "storefront"
"""Consul service of the stage-3 storefronts (what shoppers resolve)."""
LOCAL_ONLY_SERVICE = "storefront-local-only"
"""Consul service of the stage-2 storefront (kept apart so shoppers never land on it)."""
LOOPBACK = "127.0.0.1"
SIDECAR_SERVICE = "storefront-sidecar"
"""Consul service of the storefront whose plain MinIO client goes through ``mcresolve sidecar``
(kept apart too: the sidecar probe visits it directly)."""
WRITE_BUCKET = "demo-writes"


STOREFRONT_OPERATION_FACTOR = 3
"""The storefront bounds a page's storage operation by this many storage timeouts (its
``storage.OPERATION_DEADLINE_FACTOR``; a test keeps the two equal)."""
STOREFRONT_ANSWER_MARGIN = 2.0
"""Seconds a storefront gets, beyond its own limit, to render and send its error page on a
loaded machine."""


def storefront_page_limit(storage_timeout: float) -> float:
    """The longest a storefront takes before answering a page (its error page when storage
    cannot answer), for a ``STOREFRONT_STORAGE_TIMEOUT`` of ``storage_timeout`` seconds."""
    return storage_timeout * STOREFRONT_OPERATION_FACTOR


@dataclass(frozen=True)
class DemoOptions:
    """Timing of a run. ``observe``: seconds each fault is observed; ``after_steady``: seconds of
    traffic measured once the topology is back to steady state; ``settle_timeout``: limit on
    reaching steady state after a repair."""

    observe: float = 8.0
    after_steady: float = 2.0
    settle_timeout: float = 45.0
    progress_every: float = 2.0
    scenarios: tuple[str, ...] | None = None
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    #: each storefront's ``STOREFRONT_STORAGE_TIMEOUT`` (one storage attempt)
    storefront_storage_timeout: float = 2.0

    def __post_init__(self) -> None:
        limit = storefront_page_limit(self.storefront_storage_timeout)
        if self.traffic.visit_timeout < limit + STOREFRONT_ANSWER_MARGIN:
            raise ValueError(
                f"visit_timeout {self.traffic.visit_timeout:g} s must be at least "
                f"{STOREFRONT_ANSWER_MARGIN:g} s above the storefront's page limit {limit:g} s, "
                "or the demo would count its own timeout instead of the page users see"
            )

    @classmethod
    def quick(cls) -> DemoOptions:
        """Short windows (tests, CI)."""
        return cls(observe=5.0, after_steady=1.0, progress_every=1.0)


@dataclass
class _Storefront:
    """One storefront instance the demo runs."""

    datacenter: str
    service: str
    target: str
    port: int
    process: ChildProcess
    url: str = ""


class Demo:
    """Everything the demo runs. ``out`` receives progress lines."""

    def __init__(
        self,
        options: DemoOptions | None = None,
        *,
        topology: MultiCloudTopology | None = None,
        out: TextIO = sys.stdout,
    ) -> None:
        self.options = options if options is not None else DemoOptions()
        self.stack = topology if topology is not None else MultiCloudTopology()
        self.out = out
        self.storefronts: list[_Storefront] = []
        self.children: list[ChildProcess] = []
        self.pools: dict[str, EndpointPool] = {}
        self.writer: AsyncResilientMinio | None = None
        self.traffic: TrafficGenerator | None = None
        self._began = time.monotonic()
        self.storefront_code = storefront_code()

    # --------------------------------------------------------------------------- output

    def say(self, text: str) -> None:
        """One progress line, prefixed with the elapsed time."""
        print(f"[{time.monotonic() - self._began:6.1f}s] {text}", file=self.out, flush=True)

    # --------------------------------------------------------------------------- set-up

    @property
    def local_dc(self) -> str:
        """Where the faults hit (the first datacenter, "aws")."""
        return self.stack.datacenters[0]

    @property
    def remote_dc(self) -> str:
        """The other datacenter ("gcp")."""
        return self.stack.datacenters[-1]

    def _storefront_env(
        self, sf: _Storefront, label: str, sidecar_port: int | None = None
    ) -> dict[str, str]:
        first = self.stack.storage.nodes_in(sf.datacenter)[0]
        plain = {} if sidecar_port is None else {"STOREFRONT_STORAGE_CLIENT": "plain"}
        return child_env(
            {
                **plain,
                "MINIO_HOST": sf.target,
                "MINIO_PORT": str(first.port if sidecar_port is None else sidecar_port),
                "MINIO_ACCESS_KEY": self.stack.storage.access_key,
                "MINIO_SECRET_KEY": self.stack.storage.secret_key,
                "MINIO_EXTERNAL_HOST": first.address,
                "MINIO_EXTERNAL_PORT": str(first.port),
                "PORT": str(sf.port),
                "STOREFRONT_BIND": "127.0.0.1",
                "STOREFRONT_SERVICE_NAME": sf.service,
                "STOREFRONT_SERVICE_ID": f"{sf.service}-{sf.datacenter}-{sf.port}",
                "STOREFRONT_INSTANCE_LABEL": label,
                "STOREFRONT_CHECK_INTERVAL": "1s",
                "STOREFRONT_STORAGE_TIMEOUT": f"{self.options.storefront_storage_timeout:g}",
                "STOREFRONT_HEALTH_GRACE": "3",
                "STOREFRONT_LOG_LEVEL": "INFO"
                if os.environ.get("MCRESOLVE_DEMO_DEBUG")
                else "WARNING",
                "CONSUL_HTTP_ADDR": self.stack.consul.dc(sf.datacenter).http_url,
            },
            self.storefront_code,
        )

    def _add_storefront(
        self, dc: str, service: str, target: str, sidecar_port: int | None = None
    ) -> _Storefront:
        port = free_port()
        cloud = self.stack.clouds[dc]
        stage = "stage 3" if ".query." in target else "stage 2, local only"
        if sidecar_port is not None:
            stage = "stage 3 through mcresolve sidecar, plain MinIO client"
        child = ChildProcess(
            f"storefront {dc} {service}",
            ["-m", self.storefront_code.module],
            {},
        )
        sf = _Storefront(dc, service, target, port, child)
        child.env = self._storefront_env(sf, f"{dc} ({cloud}), {stage}", sidecar_port)
        self.storefronts.append(sf)
        self.children.append(child)
        return sf

    async def _start_storefront(self, sf: _Storefront) -> None:
        sf.url = await sf.process.start(ready_prefix="storefront: serving on", within=30.0)

    async def _seed(self) -> None:
        node = self.stack.storage.nodes_in(self.local_dc)[0]
        seed = ChildProcess(
            "storefront seed",
            ["-m", f"{self.storefront_code.module}.seed", "--wait", "30"],
            child_env(
                {
                    "MINIO_HOST": node.address,
                    "MINIO_PORT": str(node.port),
                    "MINIO_ACCESS_KEY": self.stack.storage.access_key,
                    "MINIO_SECRET_KEY": self.stack.storage.secret_key,
                },
                self.storefront_code,
            ),
        )
        self.children.append(seed)
        await seed.start()
        code = await seed.wait(60.0)
        if code != 0:
            raise ProcessError(f"seeding failed (exit {code}):\n{seed.describe_output()}")
        self.say("seeded bucket minio-store: " + (seed.output[-1] if seed.output else ""))

    def _consul(self, dc: str) -> ConsulConfig:
        return ConsulConfig.for_addresses(
            self.stack.consul.dc(dc).http_url, connect_timeout=1.0, request_timeout=3.0
        )

    async def setup(self) -> None:
        """Bring up the topology, seed, start the storefronts and the traffic."""
        self.say(
            f"starting Consul (dc1 = aws, dc2 = gcp; agents answer like Consul "
            f"{self.stack.consul_version}) and SeaweedFS (storage nodes in both)"
        )
        await self.stack.start()
        self.say(f"Consul and storage ready in {self.stack.startup_seconds:.1f} s")
        await self._describe_topology()
        await self._seed()
        for dc in self.stack.datacenters:
            async with self.stack.consul_client(dc) as client:
                await client.query_create(
                    {
                        "Name": STOREFRONT_SERVICE,
                        "Service": {
                            "Service": STOREFRONT_SERVICE,
                            "OnlyPassing": True,
                            "Failover": {"NearestN": 1},
                        },
                    }
                )
            self._add_storefront(dc, STOREFRONT_SERVICE, f"{self.stack.query}.query.consul")
        self._add_storefront(self.local_dc, LOCAL_ONLY_SERVICE, f"{STORAGE_SERVICE}.service.consul")
        sidecar_port = await self._start_sidecar()
        self._add_storefront(self.local_dc, SIDECAR_SERVICE, LOOPBACK, sidecar_port)
        await asyncio.gather(*(self._start_storefront(sf) for sf in self.storefronts))
        for sf in self.storefronts:
            self.say(
                f"storefront {sf.datacenter} {sf.service} -> {sf.url} (MINIO_HOST={sf.target})"
            )
        await self._await(self._storefronts_passing, "every storefront passing in Consul")
        min_images = await self._count_images()
        self.say(f"the shop shows {min_images} product images")
        await self._start_traffic(min_images)

    async def _start_sidecar(self) -> int:
        """``mcresolve sidecar`` (tcp mode) on the storage query through the local agent, as a
        child process: the plain MinIO client of one storefront connects to its port."""
        port = free_port()
        child = ChildProcess(
            "mcresolve sidecar",
            [
                "-m", "mcresolve.sidecar", "--listen", f"{LOOPBACK}:{port}", "-q",
                "--drain-delay", "0", "--drain-grace", "1", f"consul+query://{self.stack.query}",
            ],
            child_env({"CONSUL_HTTP_ADDR": self.stack.consul.dc(self.local_dc).http_url}),
        )  # fmt: skip
        self.children.append(child)
        ready = await child.start(ready_prefix="mcresolve sidecar: forwarding", within=30.0)
        self.say(f"mcresolve sidecar {self.local_dc}: {ready}")
        return port

    async def _describe_topology(self) -> None:
        for dc, info in self.stack.describe().items():
            nodes = ", ".join(
                f"{n['service_id']}@{n['endpoint']} ({n['check']})" for n in info["storage_nodes"]
            )
            async with self.stack.consul_client(dc) as client:
                result = await client.query_execute(self.stack.query)
            self.say(
                f"{dc} ({info['cloud']}): Consul {info['http']}, DNS {info['dns']}; storage "
                f"{nodes}; prepared query {self.stack.query} (Failover NearestN 1) answers "
                f"from {result.datacenter} with {len(result.entries)} nodes"
            )

    async def _count_images(self) -> int:
        timeout = aiohttp.ClientTimeout(total=10.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return await visit(session, self.storefronts[0].url, 1)

    async def _start_traffic(self, min_images: int) -> None:
        for dc in self.stack.datacenters:
            pool = EndpointPool(
                f"consul+query://{STOREFRONT_SERVICE}",
                consul=self._consul(dc),
                local_datacenter=dc,
                policy=PoolPolicy(failback_hold_down=5.0),
                name=f"shoppers-{dc}",
            )
            self.pools[dc] = pool
            await pool.start()
            await pool.wait_ready(10.0)
        self.writer = AsyncResilientMinio(
            f"consul+query://{self.stack.query}",
            access_key=self.stack.storage.access_key,
            secret_key=self.stack.storage.secret_key,
            secure=False,
            region="us-east-1",
            consul=self._consul(self.local_dc),
            local_datacenter=self.local_dc,
            http=HttpPolicy(connect_timeout=1.0, read_timeout=2.0),
            call_policy=CallPolicy(
                deadline=self.options.traffic.write_deadline, attempt_timeout=2.0
            ),
            workers=2,
        )
        await self.writer.start()
        if not await self.writer.bucket_exists(WRITE_BUCKET):
            await self.writer.make_bucket(WRITE_BUCKET)
        local_only = next(sf for sf in self.storefronts if sf.service == LOCAL_ONLY_SERVICE)
        behind = next(sf for sf in self.storefronts if sf.service == SIDECAR_SERVICE)
        self.traffic = TrafficGenerator(
            shopper_pools=self.pools,
            local_only=(local_only.datacenter, local_only.url),
            sidecar=(behind.datacenter, behind.url),
            writer=self.writer,
            write_bucket=WRITE_BUCKET,
            min_images=min_images,
            settings=self.options.traffic,
        )
        await self.traffic.start()
        self.say(
            "traffic: shoppers in every datacenter resolve consul+query://storefront; a "
            "probe visits the local-only storefront; a writer uploads through the storage query"
        )

    # ----------------------------------------------------------------------- steady state

    async def _storefronts_passing(self) -> bool:
        for dc in self.stack.datacenters:
            wanted = {sf.service for sf in self.storefronts if sf.datacenter == dc}
            for service in wanted:
                count = sum(
                    1 for sf in self.storefronts if sf.datacenter == dc and sf.service == service
                )
                entries = self.stack.consul.dc(dc).health_service(service)
                passing = sum(
                    1 for e in entries if all(c["Status"] == "passing" for c in e["Checks"])
                )
                if passing != count:
                    return False
        return True

    async def _storage_passing(self) -> bool:
        return all(
            len(self.stack.passing_service_ids(dc)) == len(self.stack.nodes_in(dc))
            for dc in self.stack.datacenters
        )

    async def _await(self, condition: Callable[[], Awaitable[bool]], what: str) -> float:
        """Poll ``condition`` until the settle timeout; the seconds it took."""
        return await poll_until(condition, what, self.options.settle_timeout)

    async def _await_steady(self, since: float) -> None:
        async def steady() -> bool:
            return (
                await self._storage_passing()
                and await self._storefronts_passing()
                and traffic_recovered(self._samples(), since)
            )

        await self._await(
            steady, "steady state (health checks passing, every traffic class served)"
        )

    # --------------------------------------------------------------------------- faults

    def _faults(self) -> FaultInjector:
        local = self._local_query_storefronts
        return FaultInjector(
            self.stack,
            self.local_dc,
            self.remote_dc,
            kill_storefronts=lambda: [sf.process.kill() for sf in local()],
            start_storefronts=lambda: [self._start_storefront(sf) for sf in local()],
        )

    def _local_query_storefronts(self) -> list[_Storefront]:
        """The stage-3 storefronts of the local datacenter (what the storefront fault kills)."""
        return [
            sf
            for sf in self.storefronts
            if sf.datacenter == self.local_dc and sf.service == STOREFRONT_SERVICE
        ]

    # ------------------------------------------------------------------------ measuring

    def _samples(self) -> list[Sample]:
        assert self.traffic is not None
        return list(self.traffic.samples)

    def _stats(self, start: float, end: float) -> dict[str, PhaseStats]:
        samples = self._samples()
        return {t: summarize(samples, t, start=start, end=end) for t in TRAFFIC_CLASSES}

    async def _observe(self, label: str, seconds: float, start: float) -> None:
        """Let traffic run for ``seconds`` (the only fixed wait: an observation window),
        printing progress."""
        end = start + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(left, self.options.progress_every))
            now = min(time.monotonic(), end)
            self.say(f"  {label} {now - start:4.1f}/{seconds:.0f}s " + self._progress(start, now))

    def _progress(self, start: float, end: float) -> str:
        stats = self._stats(start, end)
        parts = []
        for name in (SHOPPERS, LOCAL_ONLY, SIDECAR, WRITES):
            s = stats[name]
            bar = "#" * min(10, s.served // 8) + "x" * min(10, s.failed)
            parts.append(f"{name} {s.served:3d} ok {s.failed:3d} failed {bar}")
        return " | ".join(parts)

    async def _fault_result(self, scenario: Scenario, start: float, end: float) -> PhaseResult:
        stats = self._stats(start, end)
        return PhaseResult(
            scenario, Phase.FAULT, stats, judge_all(scenario.during, stats), end - start
        )

    async def run_scenario(self, scenario: Scenario) -> list[PhaseResult]:
        """Inject, observe, repair, wait for steady state, measure."""
        self.say(f"scenario: {scenario.title} — the article: {scenario.article}")
        await self._faults().inject(scenario.fault)
        fault_start = time.monotonic()
        await self._observe("fault", self.options.observe, fault_start)
        fault_end = time.monotonic()
        if scenario.fault is Fault.NONE:
            result = await self._fault_result(scenario, fault_start, fault_end)
            self.say(f"  {result.phase.value}: {_verdict(result)}")
            return [result]
        await self._faults().repair(scenario.fault)
        repaired = time.monotonic()
        await self._await_steady(repaired)
        steady = time.monotonic()
        self.say(f"  steady again {steady - repaired:.1f} s after the repair")
        await self._observe("recovered", self.options.after_steady, steady)
        end = time.monotonic()
        results = [await self._fault_result(scenario, fault_start, fault_end)]
        results.append(
            PhaseResult(
                scenario,
                Phase.RECOVERY,
                self._stats(repaired, end),
                judge_all(scenario.after, self._stats(steady, end)),
                end - repaired,
                settle_seconds=steady - repaired,
            )
        )
        for result in results:
            self.say(f"  {result.phase.value}: {_verdict(result)}")
        return results

    async def run_battery(self, scenarios: Sequence[Scenario]) -> list[PhaseResult]:
        """Every scenario in order."""
        results: list[PhaseResult] = []
        for scenario in scenarios:
            if self.options.scenarios and scenario.key not in self.options.scenarios:
                continue
            results.extend(await self.run_scenario(scenario))
        return results

    # --------------------------------------------------------------------------- closing

    async def stop_traffic(self) -> int:
        """Stop the shoppers, the probe and the writer (everything else stays up); the number of
        uploads the writer made."""
        if self.traffic is None:
            return 0
        await self.traffic.stop()
        return self.traffic.writes

    async def close(self) -> None:
        """Stop everything this demo started (idempotent, best effort, never raises)."""
        if self.traffic is not None:
            await self.traffic.stop()
        if self.writer is not None:
            await _quietly(self.writer.close())
        for pool in self.pools.values():
            await _quietly(pool.aclose())
        await asyncio.gather(*(_quietly(child.stop(grace=3.0)) for child in self.children))
        if os.environ.get("MCRESOLVE_DEMO_DEBUG"):
            for child in self.children:
                print(f"--- {child.name}:\n{child.describe_output()}", file=self.out)
        await _quietly(self.stack.stop())


def traffic_recovered(samples: Sequence[Sample], since: float, streak: int = 3) -> bool:
    """Whether every traffic class's last ``streak`` samples started at or after ``since``
    were all served (pure)."""
    for traffic in TRAFFIC_CLASSES:
        recent = [s for s in samples if s.traffic == traffic and s.started >= since]
        tail = recent[-streak:]
        if len(tail) < streak or not all(s.ok for s in tail):
            return False
    return True


async def poll_until(condition: Callable[[], Awaitable[bool]], what: str, within: float) -> float:
    """Poll ``condition`` until it holds or ``within`` seconds passed (then
    :class:`TimeoutError` naming ``what``); the seconds it took."""
    began = time.monotonic()
    deadline = began + within
    pause = 0.05
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {within:.0f} s: {what}")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.25)
    return time.monotonic() - began


def _verdict(result: PhaseResult) -> str:
    if result.ok:
        return "as expected"
    return "NOT as expected: " + "; ".join(
        f"{v.expectation.traffic} {v.reason}" for v in result.verdicts if not v.ok
    )


async def _quietly(step: Awaitable[object]) -> None:
    try:
        await step
    except Exception as error:  # closing must go on whatever one step raised
        print(f"demo: while stopping: {error!r}", file=sys.stderr)
