"""A real HTTP server on 127.0.0.1 that serves catalog images, and misbehaves on request.

Routes: ``/ok.png`` and friends answer properly or with the wrong type, size or bytes; the
``/drip-*`` routes send one byte every :data:`DRIP` seconds (status line and headers, or a body
with or without ``Content-Length``) until the client goes; ``/silent`` never answers;
``/bad-status``, ``/long-header`` and ``/many-headers`` break HTTP; ``/redirect?to=URL`` and
``/loop`` redirect. Every request's ``Host`` header is kept in :attr:`Handler.hosts`.
"""

from __future__ import annotations

import io
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image

DRIP = 0.2
"""Seconds between the bytes of a dripping answer."""
GIVE_UP = 60.0
"""A misbehaving answer stops after this long even if the client never leaves."""


def png_bytes(size: tuple[int, int] = (64, 48), color: object = (200, 30, 30),
              mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")  # type: ignore[arg-type]
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buffer, "JPEG")
    return buffer.getvalue()


class Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}  # noqa: RUF012 - shared with the tests through the class
    hosts: list[str] = []  # noqa: RUF012

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        Handler.hits[path] = Handler.hits.get(path, 0) + 1
        Handler.hosts.append(self.headers.get("Host", ""))
        routes: dict[str, Callable[[], object]] = {
            "/ok.png": lambda: self._send(200, "image/png", png_bytes()),
            "/white.png": lambda: self._send(200, "image/png", png_bytes((60, 40), "white")),
            "/clear.png": lambda: self._send(200, "image/png",
                                             png_bytes((60, 40), (0, 0, 0, 0), "RGBA")),
            "/html": lambda: self._send(200, "text/html", b"<html>not an image</html>"),
            "/liar.png": lambda: self._send(200, "image/png", b"\x89PNG but not really" * 10),
            "/jpeg-as-png.png": lambda: self._send(200, "image/png", jpeg_bytes()),
            "/big.png": self._big,
            "/stream-big.png": self._stream_big,
            "/short.png": self._short,
            "/slow.png": self._slow,
            "/drip-headers": lambda: self._drip(b"HTTP/1.1 200 OK\r\n",
                                                b"Content-Type: image/png\r\n" * 1000),
            "/drip-body-length": lambda: self._drip(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n",
                png_bytes() * 100),
            "/drip-body": lambda: self._drip(
                b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n", png_bytes() * 100),
            "/silent": self._silent,
            "/bad-status": lambda: self._raw(b"HTTP/1.1 two hundred OK\r\n\r\n"),
            "/long-header": lambda: self._raw(
                b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n"),
            "/many-headers": lambda: self._raw(
                b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120))
                + b"\r\n"),
            "/redirect": self._redirect,
            "/loop": lambda: self._redirect_to("/loop"),
        }
        routes.get(path, lambda: self._send(404, "text/plain", b"missing"))()

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._write(body)

    def _write(self, data: bytes) -> bool:
        """Send ``data``; False when the client has gone (a reader that stopped or timed out)."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        return True

    def _raw(self, data: bytes) -> None:
        self._write(data)

    def _big(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(50_000_000))
        self.end_headers()

    def _stream_big(self) -> None:  # no Content-Length: the reader must stop itself
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        for _ in range(40):
            if not self._write(b"\0" * 65536):
                return

    def _short(self) -> None:  # promises more than it sends, then hangs up
        body = png_bytes()
        self._raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
                  % (len(body) + 500) + body)

    def _slow(self) -> None:
        time.sleep(1.5)
        self._send(200, "image/png", png_bytes())

    def _drip(self, head: bytes, rest: bytes) -> None:
        """``head`` at once, then ``rest`` one byte at a time."""
        if not self._write(head):
            return
        start = time.monotonic()
        for byte in rest:
            if time.monotonic() - start > GIVE_UP or not self._write(bytes([byte])):
                return
            time.sleep(DRIP)

    def _silent(self) -> None:
        """Answer nothing; return when the client hangs up."""
        self.connection.settimeout(DRIP)
        start = time.monotonic()
        while time.monotonic() - start < GIVE_UP:
            try:
                if not self.connection.recv(1):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def _redirect(self) -> None:
        self._redirect_to(parse_qs(urlsplit(self.path).query)["to"][0])

    def _redirect_to(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """The base URL of a server on 127.0.0.1 while the block runs (https with ``tls``)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
