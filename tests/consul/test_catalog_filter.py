"""``filter`` and ``node_meta`` on the catalog reads (``/v1/catalog/service``,
``/v1/catalog/nodes``), decided from the agent's version as health reads are: on 1.5+ the filter
is sent (node metadata inside it, with the selector each listing uses: api-docs/catalog.mdx
``NodeMeta`` / ``Meta``); older agents refuse a filter (they would ignore it) and get
``?node-meta=`` plainly.

End to end on both emulator profiles, and against a recording agent for the exact parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.features import UnsupportedByAgent
from mcresolve.testing.consul import ConsulEmulator


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(consul_version: str) -> AsyncIterator[ConsulClient]:
    async with ConsulEmulator(["dc1"], version=consul_version) as consul:
        config = ConsulConfig.for_addresses(consul.dc("dc1").http_url, request_timeout=2.0)
        async with ConsulClient(config) as client:
            for node, rack, version in (("n1", "r1", "1"), ("n2", "r2", "2"), ("n3", "r1", "2")):
                await client.request(
                    "PUT",
                    "/v1/catalog/register",
                    body={
                        "Node": node,
                        "Address": "127.0.0.1",
                        "NodeMeta": {"rack": rack},
                        "Service": {
                            "Service": "api",
                            "ID": f"api-{node}",
                            "Port": 9000,
                            "Meta": {"version": version},
                        },
                    },
                )
            yield client


async def test_catalog_service_filter_selects_on_modern_agents_and_is_refused_by_1_0_8(
    client: ConsulClient, consul_version: str
) -> None:
    version_2 = 'ServiceMeta.version == "2"'
    if consul_version == "1.0.8":  # 1.0.8 would ignore it and list all three: refused instead
        with pytest.raises(UnsupportedByAgent, match=r"1\.0\.8, which does not know \?filter="):
            await client.catalog_service("api", filter=version_2)
        with pytest.raises(UnsupportedByAgent, match=r"/v1/catalog/nodes"):
            await client.catalog_nodes(filter='Meta.rack == "r1"')
        return
    answer = await client.catalog_service("api", filter=version_2)
    assert {r.service_id for r in answer.value} == {"api-n2", "api-n3"}
    both = await client.catalog_service("api", filter=version_2, node_meta={"rack": "r1"})
    assert {r.service_id for r in both.value} == {"api-n3"}
    nodes = await client.catalog_nodes(filter='Meta.rack == "r1"')
    assert {n.node for n in nodes.value} == {"n1", "n3"}


async def test_node_meta_selects_on_both_profiles(client: ConsulClient) -> None:
    """Inside the filter on a modern agent (``NodeMeta``/``Meta`` selectors), plainly on 1.0.8:
    the same instances either way."""
    answer = await client.catalog_service("api", node_meta={"rack": "r1"})
    assert {r.service_id for r in answer.value} == {"api-n1", "api-n3"}
    nodes = await client.catalog_nodes(node_meta={"rack": "r2"})
    assert {n.node for n in nodes.value} == {"n2"}


class Recorder:
    def __init__(self, version: str) -> None:
        self.version = version
        self.queries: dict[str, list[tuple[str, str]]] = {}

    async def agent_self(self, request: web.Request) -> web.Response:
        return web.json_response({"Config": {"Version": self.version, "Datacenter": "dc1"}})

    async def listing(self, request: web.Request) -> web.Response:
        self.queries[request.path] = list(request.query.items())
        return web.json_response([], headers={"X-Consul-Index": "3"})


@pytest.mark.parametrize("version", ["1.21.3", "1.0.8"])
async def test_parameters_sent(version: str) -> None:
    recorder = Recorder(version)
    app = web.Application()
    app.router.add_get("/v1/agent/self", recorder.agent_self)
    app.router.add_get("/v1/catalog/service/{name}", recorder.listing)
    app.router.add_get("/v1/catalog/nodes", recorder.listing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = ConsulConfig.for_addresses(f"127.0.0.1:{port}", request_timeout=2.0)
    try:
        async with ConsulClient(config) as client:
            await client.catalog_service("api", node_meta={"rack": "r1"})
            await client.catalog_nodes(node_meta={"rack": "r1"})
            await client.catalog_service("plain")
    finally:
        await runner.cleanup()
    service = recorder.queries["/v1/catalog/service/api"]
    nodes = recorder.queries["/v1/catalog/nodes"]
    if version == "1.0.8":
        assert service == [("node-meta", "rack:r1")] and nodes == [("node-meta", "rack:r1")]
    else:
        assert service == [("filter", 'NodeMeta["rack"] == "r1"')]
        assert nodes == [("filter", 'Meta["rack"] == "r1"')]
    assert recorder.queries["/v1/catalog/service/plain"] == []  # nothing unless asked
