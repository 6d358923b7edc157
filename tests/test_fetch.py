"""Catalog image downloads against a misbehaving HTTP server on 127.0.0.1: the host policy
(after the lookup, on every redirect), the time limit over the whole transfer, HTTP protocol
errors, and a connection made to the address that was checked."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adgen.catalog import fetch
from adgen.catalog.fetch import MAX_REDIRECTS, FetchError, get, refusal
from tests.catalog_server import DRIP, Handler, png_bytes, serve

TYPES = ("image/png", "image/jpeg")
HANG_BOUND = 10.0
"""A call limited to 1 s that has not returned after this long hangs (generous on purpose: the
machine may be busy; this checks for a hang, not for speed)."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve() as url:
        yield url


def fetched(url: str, *, timeout: float = 5.0, allow: tuple[str, ...] = ("127.0.0.1",)
            ) -> fetch.Response:
    return get(url, timeout=timeout, max_bytes=1_000_000, types=TYPES, allow_hosts=allow)


def refused(url: str, **kwargs: Any) -> str:
    with pytest.raises(FetchError) as info:
        fetched(url, **kwargs)
    return str(info.value)


# -- which hosts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "kind", "address"), [
    ("127.0.0.1", "a loopback", ""),
    ("localhost", "a loopback", " (127.0.0.1)"),
    ("0x7f000001", "a loopback", " (127.0.0.1)"),
    ("2130706433", "a loopback", " (127.0.0.1)"),
    ("0177.0.0.1", "a loopback", " (127.0.0.1)"),
    ("127.1", "a loopback", " (127.0.0.1)"),
    ("[::ffff:127.0.0.1]", "a loopback", ""),
    ("[::1]", "a loopback", ""),
    ("169.254.169.254", "a link-local", ""),
    ("[::ffff:169.254.169.254]", "a link-local", ""),
    ("[fe80::1]", "a link-local", ""),
    ("10.1.2.3", "a private", ""),
    ("192.168.0.10", "a private", ""),
    ("[fd00::1]", "a private", ""),
    ("[64:ff9b::a00:1]", "a private", ""),  # NAT64 of 10.0.0.1
    ("[2002:c0a8:101::1]", "a private", ""),  # 6to4 of 192.168.1.1
    ("100.64.0.1", "a shared (carrier-grade NAT)", ""),
    ("0.0.0.0", "an unspecified", ""),
    ("224.0.0.1", "a multicast", ""),
    ("[ff02::1]", "a multicast", ""),
    ("240.0.0.1", "a reserved", ""),
])
def test_non_public_hosts_are_refused_after_the_lookup(server: str, host: str, kind: str,
                                                       address: str) -> None:
    port = server.rsplit(":", 1)[1]
    before = sum(Handler.hits.values())
    message = refused(f"http://{host}:{port}/ok.png", allow=())
    assert message.startswith(f"is on {kind} address{address}; adgen fetches catalog images "
                              "only from public hosts: add ")
    assert message.endswith("to catalog.images.allow_hosts to allow it")
    assert sum(Handler.hits.values()) == before  # refused before connecting


def test_public_addresses_pass() -> None:
    for text in ("8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"):
        assert refusal(ipaddress.ip_address(text)) is None, text


def test_allow_hosts_opens_a_host_by_name_only(server: str) -> None:
    assert fetched(f"{server}/ok.png").body == png_bytes()
    port = server.rsplit(":", 1)[1]
    # allowing 127.0.0.1 does not allow the other names of the same address
    assert "loopback address (127.0.0.1)" in refused(f"http://localhost:{port}/ok.png")


# -- redirects -----------------------------------------------------------------------------------


def test_redirects_are_followed_and_checked_at_every_hop(server: str) -> None:
    answer = fetched(f"{server}/redirect?to=/ok.png")
    assert answer.body == png_bytes() and answer.url == f"{server}/ok.png"
    assert refused(f"{server}/redirect?to=ftp://example.invalid/a.png") == (
        "redirects to 'ftp://example.invalid/a.png', which is not an http(s) link (ftp scheme); "
        "only http and https are fetched")
    assert refused(f"{server}/redirect?to=http://169.254.169.254/latest/meta-data").startswith(
        "redirects to 'http://169.254.169.254/latest/meta-data', which is on a link-local "
        "address;")
    port = server.rsplit(":", 1)[1]
    assert refused(f"{server}/redirect?to=http://localhost:{port}/ok.png").startswith(
        f"redirects to 'http://localhost:{port}/ok.png', which is on a loopback address")


def test_redirects_are_capped(server: str) -> None:
    before = Handler.hits.get("/loop", 0)
    assert refused(f"{server}/loop") == f"redirects more than {MAX_REDIRECTS} times"
    assert Handler.hits["/loop"] - before == MAX_REDIRECTS + 1


# -- the time limit ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/drip-headers", "/drip-body-length", "/drip-body", "/silent",
    "/redirect?to=/drip-body",
])
def test_the_time_limit_bounds_the_whole_transfer(server: str, path: str) -> None:
    start = time.monotonic()
    message = refused(f"{server}{path}", timeout=1.0)
    took = time.monotonic() - start
    assert message == "took more than 1 s"
    assert took < HANG_BOUND, f"{path} took {took:.1f} s with a 1 s limit"
    assert took >= 1.0 - DRIP  # it did wait for the server


def test_the_time_limit_bounds_a_stuck_tls_handshake() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # connects, never answers
        start = time.monotonic()
        message = refused(f"https://127.0.0.1:{listener.getsockname()[1]}/a.png", timeout=1.0)
    assert message == "took more than 1 s"
    assert time.monotonic() - start < HANG_BOUND


def test_the_time_limit_bounds_a_stuck_host_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def stuck(*args: Any, **kwargs: Any) -> Any:
        release.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(fetch.socket, "getaddrinfo", stuck)
    start = time.monotonic()
    try:
        assert refused("http://images.example/a.png", timeout=1.0) == "took more than 1 s"
    finally:
        release.set()
    assert time.monotonic() - start < HANG_BOUND


# -- protocol errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "message"), [
    ("/bad-status", "could not be fetched (bad HTTP answer: BadStatusLine: "
                    "HTTP/1.1 two hundred OK)"),
    ("/long-header", "could not be fetched (bad HTTP answer: LineTooLong: got more than 65536 "
                     "bytes when reading header line)"),
    ("/many-headers", "could not be fetched (bad HTTP answer: HTTPException: got more than 100 "
                      "headers)"),
    ("/missing.png", "answered HTTP 404 Not Found"),
])
def test_protocol_errors_are_reasons(server: str, path: str, message: str) -> None:
    assert refused(f"{server}{path}") == message


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:99999/a.png", "is not a valid URL (Port out of range 0-65535)"),
    ("http://127.0.0.1:8o/a.png", "is not a valid URL (Port could not be cast to integer "
                                  "value as '8o')"),
    ("http://[::1/a.png", "is not a valid URL (Invalid IPv6 URL)"),
    ("http://[zz::1]/a.png", "is not a valid URL ("),
    ("https:///nohost.png", "is not a valid URL (no host)"),
    ("http://a..b/x.png", "could not be fetched ("),
])
def test_malformed_urls_are_reasons(url: str, message: str) -> None:
    assert refused(url).startswith(message)


# -- the connection goes where the check said ----------------------------------------------------


def test_one_lookup_per_hop_and_the_host_name_is_sent(server: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    port = int(server.rsplit(":", 1)[1])
    lookups: list[str] = []

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolve)
    answer = fetched(f"http://images.test:{port}/redirect?to=/ok.png", allow=("images.test",))
    assert answer.body == png_bytes()
    assert lookups == ["images.test", "images.test"]  # one per hop
    assert Handler.hosts[-2:] == [f"images.test:{port}"] * 2


def test_a_rebinding_lookup_cannot_redirect_the_connection(
        server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host answers a public address when checked and 127.0.0.1 after; the connection goes
    to the checked address and nothing reaches the server on 127.0.0.1."""
    port = int(server.rsplit(":", 1)[1])
    answers = iter(["203.0.113.200", "8.8.8.8"] + ["127.0.0.1"] * 10)
    connected: list[tuple[str, int]] = []

    def resolve(*args: Any, **kwargs: Any) -> Any:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    def dial(family: Any, address: tuple[str, int], deadline: Any) -> socket.socket:
        connected.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolve)
    monkeypatch.setattr(fetch, "_dial", dial)
    before = sum(Handler.hits.values())
    assert refused(f"http://rebind.test:{port}/ok.png", allow=()).startswith(
        "is on a private address (203.0.113.200)")  # TEST-NET-3 is not public
    assert refused(f"http://rebind.test:{port}/ok.png", allow=()) == (
        "could not be fetched (Connection refused)")
    assert connected == [("8.8.8.8", port)]
    assert sum(Handler.hits.values()) == before


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_sends_the_host_name_and_checks_the_certificate_against_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _certificate(tmp_path, "images.test")
    names: list[str | None] = []
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    server_side.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    client_side = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(fetch, "_TLS", client_side)
    with serve(tls=server_side) as url:
        port = int(url.rsplit(":", 1)[1])
        real = socket.getaddrinfo
        monkeypatch.setattr(fetch.socket, "getaddrinfo", lambda host, *a, **k: real(
            "127.0.0.1" if host == "images.test" else host, *a, **k))
        answer = fetched(f"https://images.test:{port}/ok.png", allow=("images.test",))
        assert answer.body == png_bytes()
        assert names == ["images.test"] and Handler.hosts[-1] == f"images.test:{port}"
        # the certificate names images.test, not the address the connection went to
        assert "CERTIFICATE_VERIFY_FAILED" in refused(f"{url}/ok.png")
