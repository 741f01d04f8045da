"""HTTPS through the pool: the TLS server name (SNI and certificate check) and the Host header
are the logical name by default, both configurable; a certificate that does not verify is
raised at once. Self-signed certificate made with the openssl command for the test."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from mcresolve.http.aiohttp import PoolSession
from mcresolve.http.failover import HttpFailoverPolicy
from mcresolve.http.httpx import AsyncPoolTransport

from .conftest import BillingServer

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

NAME = "billing.service.consul"
OTHER = "billing.internal"
CLOSED_PORT = 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={NAME}", "-keyout", str(key), "-out", str(cert),
         "-addext", f"subjectAltName=DNS:{NAME},DNS:{OTHER}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_server(certificate: tuple[Path, Path]) -> AsyncIterator[BillingServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    server = await BillingServer("tls", ssl_context=context).start()
    try:
        yield server
    finally:
        await server.stop()


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def targets(server: BillingServer) -> dict[str, str]:
    # A closed port beside the server: a refused connection fails over to it.
    endpoints = f"static://127.0.0.1:{CLOSED_PORT},127.0.0.1:{server.port}"
    return {NAME: endpoints, OTHER: endpoints}


@pytest.mark.parametrize(
    ("policy", "sni", "host"),
    [
        (HttpFailoverPolicy(), NAME, NAME),
        (HttpFailoverPolicy(server_hostname=OTHER), OTHER, NAME),
        (HttpFailoverPolicy(host_header="endpoint"), NAME, "endpoint"),
    ],
    ids=["defaults", "server_hostname", "endpoint_host"],
)
async def test_httpx_sni_and_host(
    certificate: tuple[Path, Path],
    tls_server: BillingServer,
    policy: HttpFailoverPolicy,
    sni: str,
    host: str,
) -> None:
    inner = httpx.AsyncHTTPTransport(verify=client_context(certificate))
    transport = AsyncPoolTransport(targets(tls_server), inner=inner, policy=policy)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"https://{NAME}/secure")
    assert response.status_code == 200
    assert tls_server.sni == [sni]
    expected = f"127.0.0.1:{tls_server.port}" if host == "endpoint" else host
    assert tls_server.seen[-1].host == expected


@pytest.mark.parametrize(
    ("policy", "sni", "host"),
    [
        (HttpFailoverPolicy(), NAME, NAME),
        (HttpFailoverPolicy(server_hostname=OTHER), OTHER, NAME),
        (HttpFailoverPolicy(host_header="endpoint"), NAME, "endpoint"),
    ],
    ids=["defaults", "server_hostname", "endpoint_host"],
)
async def test_aiohttp_sni_and_host(
    certificate: tuple[Path, Path],
    tls_server: BillingServer,
    policy: HttpFailoverPolicy,
    sni: str,
    host: str,
) -> None:
    connector = aiohttp.TCPConnector(ssl=client_context(certificate))
    async with (
        PoolSession(targets(tls_server), policy=policy, connector=connector) as session,
        session.get(f"https://{NAME}/secure") as response,
    ):
        assert response.status == 200
    assert tls_server.sni == [sni]
    expected = f"127.0.0.1:{tls_server.port}" if host == "endpoint" else host
    assert tls_server.seen[-1].host == expected


async def test_a_certificate_for_another_name_is_raised_at_once(
    certificate: tuple[Path, Path], tls_server: BillingServer
) -> None:
    wrong = HttpFailoverPolicy(server_hostname="not-billing.example")
    inner = httpx.AsyncHTTPTransport(verify=client_context(certificate))
    transport = AsyncPoolTransport(targets(tls_server), inner=inner, policy=wrong)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://{NAME}/secure")
    assert tls_server.sni == ["not-billing.example"]  # one attempt, not retried until the deadline
    connector = aiohttp.TCPConnector(ssl=client_context(certificate))
    async with PoolSession(targets(tls_server), policy=wrong, connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"https://{NAME}/secure")
    assert tls_server.sni == ["not-billing.example"] * 2
