"""ConsulConfig: the consul CLI's environment variables, addresses, TLS, token secrecy."""

from __future__ import annotations

import logging
import os
import re
import ssl
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcresolve.consul import ConsulAddress, ConsulClient, ConsulConfig, ConsulConfigError
from mcresolve.consul.config import parse_addresses

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
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "client", "client-key")}
    for path in files.values():
        path.write_text("not PEM\n")
    env = {
        "CONSUL_HTTP_ADDR": "https://c:8501",
        "CONSUL_CACERT": str(files["ca"]),
        "CONSUL_CLIENT_CERT": str(files["client"]),
        "CONSUL_CLIENT_KEY": str(files["client-key"]),
        "CONSUL_TLS_SERVER_NAME": "server.dc1.consul",
    }
    config = ConsulConfig.from_env(env)
    assert config.ca_file == str(files["ca"])
    assert (config.client_cert, config.client_key) == (
        str(files["client"]),
        str(files["client-key"]),
    )
    assert config.tls_server_name == "server.dc1.consul"
    # The files exist but are not PEM: building the TLS context says which setting and file.
    with pytest.raises(ConsulConfigError, match="cannot load the Consul CA") as caught:
        config.ssl_context()
    assert "CONSUL_CACERT" in str(caught.value) and str(files["ca"]) in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "directory"),
    [
        ("CONSUL_CACERT", False),
        ("CONSUL_CAPATH", True),
        ("CONSUL_CLIENT_CERT", False),
        ("CONSUL_CLIENT_KEY", False),
        ("CONSUL_HTTP_TOKEN_FILE", False),
    ],
)
def test_missing_tls_or_token_files_are_refused_at_config_time_naming_variable_and_file(
    tmp_path: Path, variable: str, directory: bool
) -> None:
    """A missing file is reported when the configuration is made (for the library as for the
    CLI), naming the variable and the file; not later as a bare OSError from the TLS layer."""
    present = tmp_path / "present.pem"
    present.write_text("x\n")
    env = {"CONSUL_HTTP_SSL": "true"}
    if variable in ("CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"):  # one needs the other
        env["CONSUL_CLIENT_CERT"] = env["CONSUL_CLIENT_KEY"] = str(present)
    missing = str(tmp_path / "nonexistent")
    env[variable] = missing
    with pytest.raises(ConsulConfigError) as caught:
        ConsulConfig.from_env(env)
    message = str(caught.value)
    assert variable in message and missing in message
    assert ("not a directory" if directory else "No such file or directory") in message
    assert "\n" not in message


def test_unreadable_file_is_refused_at_config_time(tmp_path: Path) -> None:
    """A TLS file that exists but cannot be read is refused when the configuration is made.
    Root reads every file, so under root the check runs in a forked child that dropped to
    ``nobody`` (the interpreter and mcresolve are already loaded there)."""
    secret = tmp_path / "ca.pem"
    secret.write_text("x\n")
    secret.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(ConsulConfigError, match="Permission denied"):
            ConsulConfig(ca_file=str(secret))
        return
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            try:
                ConsulConfig(ca_file=str(secret))
                message = "accepted"
            except ConsulConfigError as exc:
                message = str(exc)
            os.write(write_end, message.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "Permission denied" in message and "CONSUL_CACERT" in message, message


def test_library_config_checks_tls_files_too(tmp_path: Path) -> None:
    with pytest.raises(ConsulConfigError, match=r"ca_file \(CONSUL_CACERT\) '/nonexistent/ca.pem'"):
        ConsulConfig(ca_file="/nonexistent/ca.pem")
    with pytest.raises(ConsulConfigError, match=r"ca_path \(CONSUL_CAPATH\)"):
        ConsulConfig(ca_path=str(tmp_path / "none"))
    assert ConsulConfig(ca_path=str(tmp_path)).ca_path == str(tmp_path)


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


# --- address validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("consul_1:8500", "http://consul_1:8500"),  # Docker Compose style names resolve
        ("consul.service.consul.:8501", "http://consul.service.consul.:8501"),
        ("CONSUL-1.Example.COM", "http://CONSUL-1.Example.COM:8500"),
        ("[2001:db8::1]:8500", "http://[2001:db8::1]:8500"),
        ("[::1]", "http://[::1]:8500"),
        ("https://10.1.2.3:8501/", "https://10.1.2.3:8501"),
        ("  127.0.0.1:8500\n", "http://127.0.0.1:8500"),  # surrounding white space ignored
    ],
)
def test_valid_addresses(addr: str, expected: str) -> None:
    assert ConsulAddress.parse(addr).base_url == expected


@pytest.mark.parametrize(
    ("addr", "message"),
    [
        ("exa mple:8500", "white space or control characters"),
        ("127.0.0.1:1\r\nX-Injected: 1", "white space or control characters"),
        ("h\tx:1", "white space or control characters"),
        ("h\x00:1", "white space or control characters"),
        ("http://admin:secret@127.0.0.1:1", "credentials in the address are not supported"),
        ("token@127.0.0.1", "credentials in the address are not supported"),
        ("http://h:1?token=x", "without a path, query or fragment"),
        ("http://h:1#x", "without a path, query or fragment"),
        ("-h:1", "not a valid host name"),
        ("h-.example:1", "not a valid host name"),
        ("a..b:1", "not a valid host name"),
        ("a" * 64 + ".example", "not a valid host name"),
        ("b." * 127 + "c", "longer than 253"),
        ("exämple.com", "non-ASCII"),
        ("999.1.1.1", "not a valid IPv4 address"),
        ("[fe80::1%eth0]:1", "zones"),
        ("[h]:1", "brackets are for IPv6"),
        ("[::g]:1", "not a valid IPv6 address"),
        ("[::1:1", "unclosed"),
        ("[::1]x", "expected [ipv6]:port"),
        ("h:", "empty port"),
        ("h:0", "1..65535"),
        ("h:+80", "port must be a number"),
        ("h:\u0663", "port must be a number"),
        (":8500", "the host is empty"),
    ],
)
def test_invalid_addresses_are_refused(addr: str, message: str) -> None:
    with pytest.raises(ConsulConfigError, match=re.escape(message)):
        ConsulAddress.parse(addr)


def test_a_direct_address_is_validated_too() -> None:
    with pytest.raises(ConsulConfigError, match="not a valid host name"):
        ConsulAddress("exa mple".replace(" ", "_") + "/x")
    with pytest.raises(ConsulConfigError, match="contains spaces"):
        ConsulAddress("bad host")
    with pytest.raises(ConsulConfigError, match=re.escape("1..65535")):
        ConsulAddress("h", 70000)


def test_which_address_is_wrong_is_said_by_position() -> None:
    with pytest.raises(ConsulConfigError) as info:
        ConsulConfig.from_env({"CONSUL_HTTP_ADDR": "127.0.0.1:8500,http://u:pw@h:1"})
    text = str(info.value)
    assert text.startswith("CONSUL_HTTP_ADDR (address 2 of 2): ") and "pw" not in text


def test_limits_are_configurable_and_checked() -> None:
    config = ConsulConfig(max_answer_bytes=1024, body_idle_timeout=0.5)
    assert "max_answer_bytes=1024" in repr(config) and "body_idle_timeout=0.5" in repr(config)
    assert ConsulConfig().max_answer_bytes == 64 * 1024 * 1024
    with pytest.raises(ConsulConfigError, match="max_answer_bytes"):
        ConsulConfig(max_answer_bytes=0)
    with pytest.raises(ConsulConfigError, match="timeouts must be > 0"):
        ConsulConfig(body_idle_timeout=0)


# --- secrets never leak (hypothesis) ---------------------------------------------------------

SECRETS = st.text(alphabet=string.ascii_letters + string.digits + "-_.~!$&'()*+,;=", min_size=6)
HOSTS = st.sampled_from(["127.0.0.1", "consul.example", "[::1]", "h", "", "exa mple", "[::1"])
PORTS = st.sampled_from(["", ":8500", ":1", ":70000", ":x", ":"])
SCHEMES = st.sampled_from(["", "http://", "https://", "ftp://", "unix://", "HTTP://"])
JUNK = st.sampled_from(["", "\r\n", " ", "\x00", "\t", "/", "é"])


@st.composite
def addresses_with_a_secret(draw: st.DrawFn) -> tuple[str, str]:
    secret = "SeCrEt" + draw(SECRETS)
    scheme, host, port, junk = draw(SCHEMES), draw(HOSTS), draw(PORTS), draw(JUNK)
    user = draw(st.sampled_from(["admin", "", "a b", "x%40y"]))
    form = draw(
        st.sampled_from(
            [
                f"{scheme}{user}:{secret}@{host}{port}",
                f"{scheme}{secret}@{host}{port}",
                f"{scheme}{secret}:@{host}{port}{junk}",
                f"{scheme}{host}{port}/{secret}",
                f"{scheme}{host}{port}/v1?token={secret}",
                f"{scheme}{host}{port}#{secret}",
                f"{scheme}{host}{port}{junk}X-Consul-Token: {secret}",
                f"{junk}{scheme}{user}:{secret}@{host}{port}{junk}",
                f"127.0.0.1:8500,{scheme}{user}:{secret}@{host}{port}",
            ]
        )
    )
    return form, secret


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(addresses_with_a_secret(), SECRETS)
def test_no_secret_in_an_address_ever_shows(
    caplog: pytest.LogCaptureFixture, case: tuple[str, str], token_tail: str
) -> None:
    address, secret = case
    token = "ToKeN" + token_tail
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    attempts = [
        lambda: ConsulConfig.from_env({"CONSUL_HTTP_ADDR": address, "CONSUL_HTTP_TOKEN": token}),
        lambda: ConsulConfig.for_addresses(*address.split(","), token=token),
        lambda: parse_addresses(address, "http", "--consul-addr"),
        lambda: ConsulAddress(address),
    ]
    for attempt in attempts:
        try:
            result = attempt()
        except ConsulConfigError as error:
            texts += [str(error), repr(error), *map(str, error.args)]
        else:  # an accepted address holds no secret: its repr is all there is to check
            texts.append(repr(result))
            if isinstance(result, ConsulConfig):
                texts += [str(result), repr(ConsulClient(result))]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert secret not in text and token not in text
        assert "\n" not in text and "\r" not in text  # one line, nothing smuggled


@settings(max_examples=100, deadline=None)
@given(SECRETS, st.sampled_from(["", "\n", "\r", " ", "\x00", "\x7f", "é", "\t"]))
def test_a_token_is_never_echoed_even_when_refused(tail: str, bad: str) -> None:
    token = "ToKeN" + tail + bad
    try:
        config = ConsulConfig(token=token)
    except ConsulConfigError as error:
        assert bad != "" and token not in str(error) and "ToKeN" + tail not in str(error)
    else:
        assert bad == ""
        for text in (repr(config), str(config), repr(ConsulClient(config))):
            assert token not in text


def test_tls_server_name_must_be_a_host_name() -> None:
    assert ConsulConfig(tls_server_name="server.dc1.consul").tls_server_name == "server.dc1.consul"
    for bad in ("server dc1", "s\r\nX: y", "::1", "a/b"):
        with pytest.raises(ConsulConfigError, match="TLS server name must be a host name"):
            ConsulConfig.from_env({"CONSUL_TLS_SERVER_NAME": bad})
