"""A real S3-compatible server (moto's standalone server) on 127.0.0.1, for storage tests, and
an endpoint in front of it that injects faults (failed requests, a crash)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "adgen-test", "AWS_SECRET_ACCESS_KEY": "adgen-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def s3_server(**server_env: str) -> Iterator[dict[str, str]]:
    """Start ``moto_server`` on a free port (with ``server_env`` in its environment); yields
    the environment a client needs."""
    pytest.importorskip("moto.server")
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **server_env})
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.3)
        yield {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    finally:
        process.terminate()
        process.wait(timeout=30)


def client(env: dict[str, str], service: str = "s3") -> Any:
    """A boto3 client for the server (not adgen's code)."""
    import boto3

    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        region_name=env["AWS_DEFAULT_REGION"])


def make_bucket(env: dict[str, str], name: str) -> None:
    client(env).create_bucket(Bucket=name)


def object_names(env: dict[str, str], bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under ``prefix`` and its bytes, read with boto3 (not adgen's code)."""
    client_ = client(env)
    found = {}
    for page in client_.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = client_.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"][len(prefix):].lstrip("/")] = body
    return found


def set_env(env: dict[str, str]) -> dict[str, str | None]:
    """Put ``env`` in os.environ; returns what to restore."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    return saved


def restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


Fault = Callable[[str, str], "int | str | None"]
"""Decides a request's fate from its method and path: None forwards it, a status code fails
it with an S3 error, ``"die"`` kills the endpoint (this and every later request)."""

_ERROR = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
          "<Message>injected fault</Message></Error>")


class FaultyEndpoint:
    """An HTTP proxy in front of the S3 server that fails chosen requests (fault injection):
    set ``fault``; ``seen`` lists every request (method, path) in order; headers named in
    ``ignore`` (lower case) are dropped, as by a server that ignores them. A dead endpoint
    refuses connections, as a crashed server does, until :meth:`revive`."""

    def __init__(self, target: str) -> None:
        parsed = urllib.parse.urlsplit(target)
        self.target = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.fault: Fault = lambda method, path: None
        self.seen: list[tuple[str, str]] = []
        self.ignore: set[str] = set()
        self.dead = False
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._switch = threading.Lock()
        self.revive()

    def revive(self) -> None:
        self.dead = False
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def die(self) -> None:
        self.dead = True
        with self._switch:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def close(self) -> None:
        if not self.dead:
            self.die()


def _handler(endpoint: FaultyEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                    if size == 0:
                        return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _any(self) -> None:
            body = self._body()
            fate = None if endpoint.dead else endpoint.fault(self.command, self.path)
            endpoint.seen.append((self.command, self.path))
            if endpoint.dead or fate == "die":
                endpoint.dead = True
                threading.Thread(target=endpoint.die, daemon=True).start()
                self.close_connection = True  # no answer: the connection just drops
                return
            if isinstance(fate, int):
                self._answer(fate, {"Content-Type": "application/xml"},
                             _ERROR.format(code="InternalError" if fate >= 500
                                           else "AccessDenied").encode())
                return
            connection = http.client.HTTPConnection(*endpoint.target, timeout=60)
            connection.putrequest(self.command, self.path, skip_host=True,
                                  skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in {"transfer-encoding", "content-length", "connection",
                                        *endpoint.ignore}:
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read()
            headers = {k: v for k, v in response.getheaders()
                       if k.lower() not in {"transfer-encoding", "content-length", "connection"}}
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            connection.close()
            self._answer(response.status, headers, data, length)

        def _answer(self, status: int, headers: dict[str, str], data: bytes,
                    length: str | None = None) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    return Handler
