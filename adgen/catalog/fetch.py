"""One HTTP(S) download of a catalog image, with a host policy and a time limit that hold.

- Only ``http`` and ``https``, on the first URL and on every redirect; at most
  :data:`MAX_REDIRECTS` redirects.
- Each hop's host is looked up once and every address it resolves to is checked: loopback,
  link-local, private, shared (carrier-grade NAT), unspecified, multicast and reserved addresses
  are refused, and so are IPv6 forms that carry such an IPv4 address (``::ffff:127.0.0.1``,
  6to4, NAT64). Numeric spellings (``0x7f000001``, ``2130706433``) resolve to what they are.
  A host named in ``allow_hosts`` is fetched whatever it resolves to.
- The connection goes to the address that was checked (no second lookup for a DNS rebinding to
  answer differently); the request names the URL's host in ``Host`` and as the TLS server name,
  and the certificate is verified against it.
- ``timeout`` bounds the whole transfer, from the lookup to the last byte: a watchdog shuts the
  socket down when the time is up, whatever call is waiting on it.
- Every failure (a refused host, HTTP protocol errors such as a bad status line, a header line
  over 64 KiB or more than 100 headers, a bad port or IPv6 literal) is a :class:`FetchError`.

Proxies set in the environment (``https_proxy``) are not used.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 65536
_TLS = ssl.create_default_context()
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """Why a URL was not fetched: a clause to follow the URL (``took more than 3 s``)."""


@dataclass(frozen=True)
class Response:
    """A fetched body, its ``Content-Type`` (without parameters) and the URL it came from."""

    body: bytes
    content_type: str
    url: str


def get(url: str, *, timeout: float, max_bytes: int, types: Collection[str] = (),
        allow_hosts: Collection[str] = ()) -> Response:
    """GET ``url`` following redirects: a 200 answer of one of ``types`` (any when empty) and
    at most ``max_bytes``, within ``timeout`` seconds in all; else :class:`FetchError`."""
    deadline = _Deadline(timeout)
    try:
        for hop in range(MAX_REDIRECTS + 1):
            try:
                answer = _hop(url, deadline, max_bytes, types, frozenset(allow_hosts))
            except (FetchError, http.client.HTTPException, OSError, ValueError,
                    UnicodeError) as exc:
                if deadline.over:
                    raise FetchError(f"took more than {timeout:g} s") from None
                why = exc if isinstance(exc, FetchError) else \
                    FetchError(f"could not be fetched ({_describe(exc)})")
                if hop:
                    raise FetchError(f"redirects to {url[:80]!r}, which {why}") from None
                raise why from None
            if isinstance(answer, Response):
                return answer
            url = answer
        raise FetchError(f"redirects more than {MAX_REDIRECTS} times")
    finally:
        deadline.cancel()


def refusal(address: IPAddress) -> str | None:
    """Why adgen does not fetch from ``address`` (``"loopback"``, ``"private"``, …), or None
    for a public address. IPv6 addresses that carry an IPv4 address are judged by it."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        if embedded is not None:
            return refusal(embedded)
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private",
                 "site_local"):
        if getattr(address, f"is_{kind}", False):
            return kind.replace("_", "-")
    if address in _SHARED:
        return "shared (carrier-grade NAT)"
    return None if address.is_global else "non-public"


@dataclass(frozen=True)
class _Target:
    """One hop's URL taken apart."""

    tls: bool
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise FetchError(f"is not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in {"http", "https"}:
            raise FetchError(f"is not an http(s) link ({scheme or 'no'} scheme); only http and "
                             "https are fetched")
        if not parts.hostname:
            raise FetchError("is not a valid URL (no host)")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(scheme == "https", parts.hostname, port or (443 if scheme == "https" else 80),
                   path)


def _hop(url: str, deadline: _Deadline, max_bytes: int, types: Collection[str],
         allow_hosts: frozenset[str]) -> Response | str:
    """One request: the response, or the URL a redirect points to."""
    target = _Target.parse(url)
    addresses = _addresses(target, deadline)
    if target.host not in allow_hosts:
        for _, (address, *_) in addresses:
            why = refusal(ipaddress.ip_address(address.split("%")[0]))
            if why is not None:
                shown = "" if address == target.host else f" ({address})"
                article = "an" if why[0] in "aeiou" else "a"
                raise FetchError(
                    f"is on {article} {why} address{shown}; adgen fetches catalog images only from "
                    f"public hosts: add {target.host!r} to catalog.images.allow_hosts to allow it")
    connection = _connect(target, addresses, deadline)
    try:
        connection.request("GET", target.path, headers={
            "User-Agent": "adgen", "Accept": ", ".join(types) or "*/*"})
        response = connection.getresponse()
        if response.status in REDIRECTS:
            location = response.getheader("Location", "").strip()
            if not location:
                raise FetchError(f"answered HTTP {response.status} without a Location")
            return urljoin(url, location)
        if response.status != 200:
            raise FetchError(f"answered HTTP {response.status} {_printable(response.reason)}")
        content_type = response.headers.get_content_type()
        if types and content_type not in types:
            raise FetchError(f"is {_printable(content_type)}, not one of {', '.join(types)}")
        declared = response.getheader("Content-Length", "").strip()
        length = int(declared) if declared.isdigit() else None
        if length is not None and length > max_bytes:
            raise FetchError(f"is {length} bytes, more than the limit of {max_bytes}")
        chunks, size = [], 0
        while chunk := response.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"is more than {max_bytes} bytes")
            chunks.append(chunk)
        if deadline.over:
            raise TimeoutError("the time ran out")  # the watchdog cut the body short
        if length is not None and size < length:
            raise FetchError(f"could not be fetched (the server sent {size} of {length} bytes)")
        return Response(b"".join(chunks), content_type, url)
    finally:
        connection.close()


Address = tuple[socket.AddressFamily, tuple[Any, ...]]
"""An address family and socket address, as ``getaddrinfo`` gives them."""


def _addresses(target: _Target, deadline: _Deadline) -> list[Address]:
    """The host's addresses, looked up once (in a thread, so the time limit holds)."""
    answer: list[object] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM))
        except Exception as exc:  # handed to the caller, which sorts it out
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="adgen-lookup", daemon=True).start()
    if not done.wait(deadline.left()):
        raise TimeoutError("the host lookup ran out of time")
    if isinstance(answer[0], BaseException):
        raise answer[0]
    assert isinstance(answer[0], list)
    return list(dict.fromkeys((info[0], info[4]) for info in answer[0]))


def _connect(target: _Target, addresses: list[Address], deadline: _Deadline
             ) -> http.client.HTTPConnection:
    """A connection to the first of ``addresses`` that answers, under the URL's host name."""
    error: OSError = OSError("no address")
    for family, address in addresses:
        try:
            sock = _dial(family, address, deadline)
            break
        except OSError as exc:
            error = exc
    else:
        raise error
    deadline.guard(sock)
    connection: http.client.HTTPConnection
    if target.tls:
        sock = _TLS.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
        deadline.guard(sock)
        sock.do_handshake()
        connection = http.client.HTTPSConnection(target.host, target.port, context=_TLS)
    else:
        connection = http.client.HTTPConnection(target.host, target.port)
    connection.sock = sock  # already connected: http.client sends on it
    return connection


def _dial(family: socket.AddressFamily, address: tuple[Any, ...], deadline: _Deadline
          ) -> socket.socket:
    """A TCP connection to exactly ``address`` (no name lookup)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(deadline.left())
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


class _Deadline:
    """The end of a transfer. A watchdog thread shuts the guarded socket down when the time is
    up, so a blocked connect, handshake or read returns whatever the server does."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._stop)
        self._timer.daemon = True
        self._timer.start()

    @property
    def over(self) -> bool:
        return time.monotonic() >= self.end

    def left(self) -> float:
        """Seconds left; :class:`TimeoutError` when none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the time ran out")
        return left

    def guard(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
        if self.over:
            self._stop()

    def cancel(self) -> None:
        self._timer.cancel()

    def _stop(self) -> None:
        # the plain socket's shutdown, also for TLS: it wakes any blocked call (a socket
        # already closed raises OSError)
        with self._lock, contextlib.suppress(OSError):
            if self._sock is not None:
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


def _describe(exc: BaseException) -> str:
    """A short reason for a network or protocol error."""
    if isinstance(exc, socket.gaierror):
        return f"host not found: {exc.strerror}"
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP answer: {type(exc).__name__}: {_printable(str(exc).strip())}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return str(getattr(exc, "strerror", None) or exc)[:200] or type(exc).__name__


def _printable(text: str, most: int = 120) -> str:
    """Server-sent ``text`` fit for a one-line message: control characters escaped, cut."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:most])
