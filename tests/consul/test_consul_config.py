"""ConsulConfig: the consul CLI's environment variables, addresses, TLS, token secrecy."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mcresolve.consul import ConsulAddress, ConsulConfig, ConsulConfigError

TOKEN = "s3cr3t-7f1e0c2a-token"


def test_defaults_match_the_consul_cli() -> None:
    config = ConsulConfig.from_env({})
    assert [a.base_url for a in config.addresses] == ["http://127.0.0.1:8500"]
    assert config.token is None and config.verify and not config.uses_tls


@pytest.mark.parametrize(
    ("addr", "ssl_flag", "expected"),
    [
        ("10.0.0.1:8501", None, "http://10.0.0.1:8501"),
        ("10.0.0.1", None, "http://10.0.0.1:8500"),
        ("https://consul.example:8501", None, "https://consul.example:8501"),
        ("10.0.0.1:8501", "true", "https://10.0.0.1:8501"),
        ("10.0.0.1:8501", "1", "https://10.0.0.1:8501"),
        ("10.0.0.1:8501", "false", "http://10.0.0.1:8501"),
        # An explicit scheme wins over CONSUL_HTTP_SSL, as in the Go API client.
        ("http://10.0.0.1:8500", "true", "http://10.0.0.1:8500"),
        ("[::1]:8500", None, "http://[::1]:8500"),
        ("HTTPS://h:1/", None, "https://h:1"),
    ],
)
def test_http_addr_and_ssl(addr: str, ssl_flag: str | None, expected: str) -> None:
    env = {"CONSUL_HTTP_ADDR": addr}
    if ssl_flag is not None:
        env["CONSUL_HTTP_SSL"] = ssl_flag
    assert [a.base_url for a in ConsulConfig.from_env(env).addresses] == [expected]


def test_several_addresses_are_kept_in_order() -> None:
    config = ConsulConfig.from_env({"CONSUL_HTTP_ADDR": "127.0.0.1:8520, https://c2:8501 ,c3"})
    assert [a.base_url for a in config.addresses] == [
        "http://127.0.0.1:8520",
        "https://c2:8501",
        "http://c3:8500",
    ]
    assert config.uses_tls


@pytest.mark.parametrize(
    ("addr", "message"),
    [
        ("unix:///var/run/consul.sock", "unix:// sockets are not supported"),
        ("ftp://h:1", "scheme must be http or https"),
        ("h:port", "port must be a number"),
        ("h:70000", "1..65535"),
        ("::1", "brackets"),
        ("h:1/v1", "without a path"),
        (" , ", "holds no address"),
    ],
)
def test_bad_addresses_fail_clearly(addr: str, message: str) -> None:
    with pytest.raises(ConsulConfigError, match=message):
        ConsulConfig.from_env({"CONSUL_HTTP_ADDR": addr})


def test_booleans_follow_go_parsebool() -> None:
    with pytest.raises(ConsulConfigError, match="CONSUL_HTTP_SSL must be a boolean"):
        ConsulConfig.from_env({"CONSUL_HTTP_SSL": "yes"})
    assert ConsulConfig.from_env({"CONSUL_HTTP_SSL_VERIFY": "F"}).verify is False
    assert ConsulConfig.from_env({"CONSUL_HTTP_SSL_VERIFY": "TRUE"}).verify is True


def test_tls_variables(tmp_path: Path) -> None:
    env = {
        "CONSUL_HTTP_ADDR": "https://c:8501",
        "CONSUL_CACERT": "/etc/consul/ca.pem",
        "CONSUL_CLIENT_CERT": "/etc/consul/client.pem",
        "CONSUL_CLIENT_KEY": "/etc/consul/client-key.pem",
        "CONSUL_TLS_SERVER_NAME": "server.dc1.consul",
    }
    config = ConsulConfig.from_env(env)
    assert config.ca_file == "/etc/consul/ca.pem"
    assert (config.client_cert, config.client_key) == (
        "/etc/consul/client.pem",
        "/etc/consul/client-key.pem",
    )
    assert config.tls_server_name == "server.dc1.consul"
    # The files do not exist: building the TLS context says so, without crashing oddly.
    with pytest.raises(ConsulConfigError, match="cannot load Consul TLS files"):
        config.ssl_context()


def test_verify_off_disables_certificate_checks() -> None:
    context = ConsulConfig.from_env({"CONSUL_HTTP_SSL_VERIFY": "false"}).ssl_context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    default = ConsulConfig().ssl_context()
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname


def test_client_cert_needs_its_key() -> None:
    with pytest.raises(ConsulConfigError, match="needs its key"):
        ConsulConfig.from_env({"CONSUL_CLIENT_CERT": "/c.pem"})


def test_token_and_token_file(tmp_path: Path) -> None:
    assert ConsulConfig.from_env({"CONSUL_HTTP_TOKEN": TOKEN}).token == TOKEN
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}-file\n")
    env = {"CONSUL_HTTP_TOKEN": TOKEN, "CONSUL_HTTP_TOKEN_FILE": str(token_file)}
    assert ConsulConfig.from_env(env).token == f"{TOKEN}-file"  # the file wins, like Go's API
    token_file.write_text("\n")
    assert ConsulConfig.from_env(env).token == TOKEN  # an empty file does not erase the token


def test_unreadable_token_file_names_the_file_not_the_token(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConsulConfigError) as info:
        ConsulConfig.from_env({"CONSUL_HTTP_TOKEN": TOKEN, "CONSUL_HTTP_TOKEN_FILE": str(missing)})
    assert str(missing) in str(info.value) and TOKEN not in str(info.value)


def test_token_never_appears_in_repr_or_str() -> None:
    config = ConsulConfig.from_env({"CONSUL_HTTP_TOKEN": TOKEN, "CONSUL_HTTP_ADDR": "c:1"})
    for text in (repr(config), str(config), f"{config}", repr([config]), repr(config.addresses)):
        assert TOKEN not in text
    assert "token='<redacted>'" in repr(config)
    assert "token=None" in repr(ConsulConfig())


def test_token_with_line_breaks_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ConsulConfigError) as info:
        ConsulConfig(token=TOKEN + "\n")
    assert TOKEN not in str(info.value)


def test_for_addresses_and_with_options() -> None:
    config = ConsulConfig.for_addresses("127.0.0.1:1", "h2", scheme="https", token=TOKEN)
    assert [a.base_url for a in config.addresses] == ["https://127.0.0.1:1", "https://h2:8500"]
    changed = config.with_options(datacenter="dc2")
    assert changed.datacenter == "dc2" and changed.token == TOKEN
    assert ConsulAddress.parse("h:1").base_url == "http://h:1"
    with pytest.raises(ConsulConfigError):
        ConsulConfig(addresses=())
