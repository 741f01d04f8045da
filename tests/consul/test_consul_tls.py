"""TLS to the agent: CA file, server name, client certificate (mTLS) and verification off, against
a real TLS listener on 127.0.0.1 with certificates made by openssl for this test."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from consul_replay import ReplayServer, make_tls_files

from mcresolve.consul import ConsulClient, ConsulConfig, ConsulUnavailable


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_agent(tls_files: dict[str, str]) -> AsyncIterator[ReplayServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls_files["ca"])
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is checked when sent
    server = ReplayServer()
    await server.start(ssl_context=context)
    try:
        yield server
    finally:
        await server.stop()


def leader(server: ReplayServer) -> None:
    server.replay("00_topology.json", "GET", "/v1/status/leader")


async def test_ca_file_server_name_and_client_certificate(
    tls_agent: ReplayServer, tls_files: dict[str, str]
) -> None:
    leader(tls_agent)
    env = {
        "CONSUL_HTTP_ADDR": tls_agent.address,
        "CONSUL_HTTP_SSL": "true",
        "CONSUL_CACERT": tls_files["ca"],
        "CONSUL_CLIENT_CERT": tls_files["client"],
        "CONSUL_CLIENT_KEY": tls_files["client_key"],
        "CONSUL_TLS_SERVER_NAME": "consul.test",
    }
    async with ConsulClient(ConsulConfig.from_env(env)) as consul:
        assert await consul.status_leader() == "127.0.0.1:8320"
    assert len(tls_agent.seen) == 1
    peer = tls_agent.seen[0].peer_cert
    assert peer is not None and (("commonName", "client"),) in peer["subject"]


async def test_wrong_name_or_unknown_ca_is_a_connection_failure(
    tls_agent: ReplayServer, tls_files: dict[str, str]
) -> None:
    wrong_name = ConsulConfig.for_addresses(
        tls_agent.address, scheme="https", ca_file=tls_files["ca"]
    )  # the certificate names consul.test, not 127.0.0.1
    async with ConsulClient(wrong_name) as consul:
        with pytest.raises(ConsulUnavailable) as info:
            await consul.status_leader()
    assert "certificate" in str(info.value).lower()
    system_cas = ConsulConfig.for_addresses(
        tls_agent.address, scheme="https", tls_server_name="consul.test"
    )
    async with ConsulClient(system_cas) as consul:
        with pytest.raises(ConsulUnavailable):
            await consul.status_leader()
    assert not tls_agent.seen


async def test_verification_can_be_turned_off(tls_agent: ReplayServer) -> None:
    leader(tls_agent)
    config = ConsulConfig.from_env(
        {"CONSUL_HTTP_ADDR": f"https://{tls_agent.address}", "CONSUL_HTTP_SSL_VERIFY": "false"}
    )
    async with ConsulClient(config) as consul:
        assert await consul.status_leader() == "127.0.0.1:8320"
    assert tls_agent.seen[0].peer_cert is None  # no client certificate configured


def test_tls_files_exist(tls_files: dict[str, str]) -> None:
    assert all(Path(p).exists() for p in tls_files.values())
