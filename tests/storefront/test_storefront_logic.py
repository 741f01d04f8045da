"""Pure parts of the storefront: configuration, catalog, keys, health assessment, registration."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from storefront.catalog import (
    SIDECAR_KEY,
    ProductInfo,
    StoredObject,
    build_products,
    display_name,
    human_size,
    parse_sidecar,
    render_sidecar,
)
from storefront.config import ConfigError, ImageMode, Settings
from storefront.health import HealthPolicy, HealthStatus, StorageHealth
from storefront.keys import is_servable_key, quote_key
from storefront.registration import ServiceRegistration, consul_base_url
from storefront.sample import SAMPLE_PRODUCTS, render_image, sample_objects
from storefront.target import is_plain_host, storage_target

from mcresolve.sources.target import (
    DnsTarget,
    HealthTarget,
    PreparedQueryTarget,
    Stage,
    StaticTarget,
    TargetError,
    parse_target,
)

REQUIRED = {"MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk"}


def test_config_defaults_follow_the_original() -> None:
    settings = Settings.from_env({**REQUIRED, "MINIO_HOST": "minio.service.consul"})
    assert settings.storage_target == "consul://minio?port=9000"
    assert settings.external_endpoint == "minio.service.consul:9000"
    assert settings.port == 8080
    assert settings.bucket == "minio-store"
    assert settings.image_mode is ImageMode.PROXY
    assert settings.consul_http_addr is None
    assert settings.external_base_url == "http://minio.service.consul:9000"


def test_config_reads_every_variable() -> None:
    settings = Settings.from_env(
        {
            **REQUIRED,
            "MINIO_HOST": "storage-object-minio.query.consul",
            "MINIO_PORT": "9100",
            "MINIO_EXTERNAL_HOST": "::1",
            "MINIO_EXTERNAL_PORT": "443",
            "MINIO_EXTERNAL_SECURE": "yes",
            "PORT": "0",
            "STOREFRONT_IMAGES": "Presigned",
            "STOREFRONT_BIND": "0.0.0.0",
            "CONSUL_HTTP_ADDR": "127.0.0.1:8500",
            "CONSUL_HTTP_TOKEN": "secret",
            "STOREFRONT_HEALTH_GRACE": "2.5",
        }
    )
    assert settings.storage_target == "consul+query://storage-object-minio?port=9100"
    assert settings.external_base_url == "https://[::1]:443"
    assert settings.port == 0
    assert settings.image_mode is ImageMode.PRESIGNED
    assert settings.registration_address == "127.0.0.1"
    assert settings.consul_token == "secret"
    assert settings.health_grace_s == 2.5


def test_config_names_every_problem() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"MINIO_PORT": "99999", "PORT": "x", "STOREFRONT_IMAGES": "fax"})
    message = str(raised.value)
    for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_PORT", "PORT", "STOREFRONT_IMAGES"):
        assert name in message
    assert len(raised.value.problems) == 5


@pytest.mark.parametrize(
    ("host", "port", "target"),
    [
        # Full target strings: used as given, MINIO_PORT not applied.
        ("consul+query://storage-object-minio?dc=dc2", 9000, "consul+query://storage-object-minio?dc=dc2"),
        ("consul://127.0.0.1:8500/storage-object-minio", 1, "consul://127.0.0.1:8500/storage-object-minio"),
        ("dns://minio.example.test?type=a&port=9000", 1, "dns://minio.example.test?type=a&port=9000"),
        ("static://10.0.0.1:9000,10.0.0.2:9001", 1, "static://10.0.0.1:9000,10.0.0.2:9001"),
        # Plain Consul names: their stage, MINIO_PORT as the default port.
        ("storage-object-minio.query.consul", 9000, "consul+query://storage-object-minio?port=9000"),
        ("storage-object-minio.query.dc2.consul", 9000, "consul+query://storage-object-minio?dc=dc2&port=9000"),
        ("storage-object-minio.service.consul", 9100, "consul://storage-object-minio?port=9100"),
        ("minio.storage-object-minio.service.consul", 9, "consul://storage-object-minio?tag=minio&port=9"),
        # Plain hosts and addresses: as parse_target reads host:port.
        ("127.0.0.1", 9000, "static://127.0.0.1:9000"),
        ("::1", 9000, "static://[::1]:9000"),
        ("[::1]", 9000, "static://[::1]:9000"),
        ("minio.example.test", 9000, "dns://minio.example.test?type=a&port=9000"),
        ("localhost", 9000, "static://localhost:9000"),
        # A port or a list already given wins over MINIO_PORT.
        ("10.0.0.1:9001", 9000, "static://10.0.0.1:9001"),
        ("10.0.0.1:9001,10.0.0.2:9002", 9000, "static://10.0.0.1:9001,10.0.0.2:9002"),
        ("localhost:9001", 9000, "static://localhost:9001"),
    ],
)  # fmt: skip
def test_minio_host_as_an_mcresolve_target(host: str, port: int, target: str) -> None:
    assert storage_target(host, port) == target
    assert str(parse_target(target)) == target  # a target mcresolve reads back as such


def test_plain_consul_names_select_their_stage() -> None:
    query = parse_target(storage_target("storage-object-minio.query.consul", 9000))
    assert isinstance(query, PreparedQueryTarget) and query.stage is Stage.PREPARED_QUERY
    assert (query.query, query.options.port) == ("storage-object-minio", 9000)
    health = parse_target(storage_target("storage-object-minio.service.consul", 9000))
    assert isinstance(health, HealthTarget) and health.stage is Stage.HEALTH
    dns = parse_target(storage_target("minio.example.test", 9000))
    assert isinstance(dns, DnsTarget) and dns.record == "a" and dns.options.port == 9000
    static = parse_target(storage_target("10.1.2.3", 9000))
    assert isinstance(static, StaticTarget) and [str(e) for e in static.endpoints] == [
        "10.1.2.3:9000"
    ]


@pytest.mark.parametrize(
    "host", ["", "consul+query://", "gopher://x", "storage.bogus.consul", "a b", "static://x"]
)
def test_bad_minio_host_is_named(host: str) -> None:
    with pytest.raises(TargetError):
        storage_target(host, 9000)
    if host:
        with pytest.raises(ConfigError) as raised:
            Settings.from_env({**REQUIRED, "MINIO_HOST": host})
        assert any(problem.startswith("MINIO_HOST=") for problem in raised.value.problems)


def test_external_host_defaults_to_a_plain_minio_host_only() -> None:
    assert is_plain_host("minio.example.test") and is_plain_host("::1")
    assert not is_plain_host("consul+query://storage-object-minio")
    assert not is_plain_host("10.0.0.1:9000,10.0.0.2:9000")
    target = {**REQUIRED, "MINIO_HOST": "consul+query://storage-object-minio"}
    assert Settings.from_env(target).external_host == ""
    assert Settings.from_env(target).external_base_url == ""
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**target, "STOREFRONT_IMAGES": "presigned"})
    assert "MINIO_EXTERNAL_HOST" in str(raised.value)
    settings = Settings.from_env(
        {**target, "STOREFRONT_IMAGES": "presigned", "MINIO_EXTERNAL_HOST": "cdn.example.test"}
    )
    assert settings.external_base_url == "http://cdn.example.test:9000"


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("red-circle-mug.png", "Red circle mug"),
        ("posters/blue_square__2.jpeg", "Blue square 2"),
        ("no-extension", "No extension"),
        (".hidden", ".hidden"),
        ("dir/", "Dir"),
        ("archive.tar.gz", "Archive.tar"),
        ("___.png", "___.png"),
    ],
)
def test_display_name(key: str, name: str) -> None:
    assert display_name(key) == name


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 1536, 5 * 1024**2, 3 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "5.0 MiB",
        "3072.0 GiB",
    ]


def test_sidecar_round_trip_and_products() -> None:
    raw = render_sidecar(
        "USD", {"a.png": ProductInfo(name="Thing A", price=Decimal("3.5"), description="d")}
    )
    sidecar = parse_sidecar(raw)
    objects = [
        StoredObject("b.png", 10),
        StoredObject("a.png", 2048),
        StoredObject(SIDECAR_KEY, 100),
        StoredObject("folder/", 0),
    ]
    products = build_products(objects, sidecar)
    assert [p.key for p in products] == ["a.png", "b.png"]
    assert products[0].name == "Thing A" and products[0].price_label == "3.50 USD"
    assert products[0].size_label == "2.0 KiB"
    assert products[1].name == "B" and products[1].price_label is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"products": []}',
        b'{"currency": 7, "products": {"a.png": "x", "b.png": {"price": "free"}}}',
        b'{"products": {"a.png": {"price": -1, "name": "  "}}}',
        b'{"products": {"a.png": {"price": true}}}',
        b'{"products": {"a.png": {"price": "NaN"}}}',
        b"\xff\xfe",
    ],
)
def test_malformed_sidecars_never_break_the_shop(raw: bytes) -> None:
    products = build_products([StoredObject("a.png", 1)], parse_sidecar(raw))
    assert products[0].name == "A" and products[0].price is None
    assert products[0].currency == "EUR"


@pytest.mark.parametrize(
    ("key", "servable"),
    [
        ("a.png", True),
        ("dir/sub/a.png", True),
        ("..%2Fescape.png", True),
        ("a..b/..c", True),
        ("<script>.png", True),
        ("", False),
        ("..", False),
        ("../escape.png", False),
        ("a/../../b.png", False),
        ("a/./b.png", False),
        ("/absolute.png", False),
        ("nul\x00.png", False),
        ("line\nbreak.png", False),
        ("x" * 1025, False),
        ("\udcff.png", False),
    ],
)
def test_servable_keys(key: str, servable: bool) -> None:
    assert is_servable_key(key) is servable


@given(st.text(min_size=1, max_size=200))
def test_quoted_key_is_one_inert_path_segment(key: str) -> None:
    quoted = quote_key(key)
    assert "/" not in quoted and "<" not in quoted and '"' not in quoted and "?" not in quoted
    if quoted in (".", ".."):  # a dot segment would be normalised away by the browser
        assert not is_servable_key(key)


def test_health_passes_while_storage_answers() -> None:
    health = StorageHealth(HealthPolicy(grace_s=10))
    assert health.needs_probe(0.0)
    assert health.assess(0.0).status is HealthStatus.DEGRADED  # never probed
    health.record_success(0.0, 0.05, bucket_exists=True)
    report = health.assess(0.1)
    assert (report.status, report.http_status) == (HealthStatus.PASS, 200)
    assert report.body["storage"]["latency_ms"] == 50.0
    assert not health.needs_probe(0.5) and health.needs_probe(1.05)


def test_health_degrades_within_grace_then_fails_then_recovers() -> None:
    health = StorageHealth(HealthPolicy(grace_s=10))
    health.record_success(0.0, 0.01)
    health.record_failure(20.0, 21.0, "connection refused")
    degraded = health.assess(21.0)
    assert (degraded.status, degraded.http_status) == (HealthStatus.DEGRADED, 200)
    assert degraded.body["storage"]["last_error"] == "connection refused"
    health.record_failure(25.0, 26.0, "connection refused")
    assert health.assess(29.9).status is HealthStatus.DEGRADED  # grace counts from 20.0
    failed = health.assess(30.0)
    assert (failed.status, failed.http_status) == (HealthStatus.FAIL, 503)
    health.record_success(31.0, 31.2)
    assert health.assess(31.3).status is HealthStatus.PASS


def test_a_slow_old_failure_does_not_override_a_newer_success() -> None:
    health = StorageHealth(HealthPolicy(grace_s=1))
    health.record_success(5.0, 5.1)
    health.record_failure(1.0, 30.0, "timed out")  # started before the success
    assert health.assess(30.0).status is HealthStatus.PASS


def test_draining_instance_reports_critical() -> None:
    health = StorageHealth()
    health.record_success(0.0, 0.0)
    health.draining = True
    report = health.assess(0.1)
    assert (report.status, report.http_status) == (HealthStatus.FAIL, 503)
    assert report.body["reason"] == "shutting down"


def test_registration_payload() -> None:
    registration = ServiceRegistration("sf-1", "storefront", "127.0.0.1", 8081)
    payload = registration.payload()
    assert payload["ID"] == "sf-1" and payload["Port"] == 8081
    assert payload["Check"]["HTTP"] == "http://127.0.0.1:8081/health"
    assert payload["Check"]["Interval"] == "2s" and payload["Check"]["Timeout"] == "1s"
    assert payload["Check"]["DeregisterCriticalServiceAfter"] == "1m"
    assert ServiceRegistration("x", "y", "::1", 1).health_url == "http://[::1]:1/health"
    assert consul_base_url("127.0.0.1:8500") == "http://127.0.0.1:8500"
    assert consul_base_url("https://consul:8501/") == "https://consul:8501"


def test_sample_catalog_is_deterministic_and_described() -> None:
    first, second = sample_objects(), sample_objects()
    assert [o.data for o in first] == [o.data for o in second]
    sidecar = parse_sidecar(first[-1].data)
    assert {p.key for p in SAMPLE_PRODUCTS} == set(sidecar.products)
    image = render_image(SAMPLE_PRODUCTS[0])
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
