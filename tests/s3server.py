"""A real S3-compatible server (moto's standalone server) on 127.0.0.1, for storage tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "adgen-test", "AWS_SECRET_ACCESS_KEY": "adgen-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """Start ``moto_server`` on a free port; yields the environment a client needs."""
    pytest.importorskip("moto.server")
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def make_bucket(env: dict[str, str], name: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          region_name=env["AWS_DEFAULT_REGION"])
    client.create_bucket(Bucket=name)


def object_names(env: dict[str, str], bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under ``prefix`` and its bytes, read with boto3 (not adgen's code)."""
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          region_name=env["AWS_DEFAULT_REGION"])
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
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
