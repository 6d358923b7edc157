"""For the review tests: ``adgen review`` as a user starts it (the real console script in a
subprocess, on a free port) with plain HTTP requests to it (the standard library's client, so
headers are exactly what a test sends); a small campaign with review on; what an export wrote."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import adgen
from tests.conftest import base_campaign

ADGEN = Path(sys.executable).with_name("adgen")


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    """The address it printed: ``http://127.0.0.1:PORT/<token>/`` (maybe with a query)."""

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def base(self) -> str:
        """The path of the page: ``/<token>/``."""
        return urlsplit(self.url).path

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """``path`` as given (raw: ``..`` is not resolved); JSON bodies are encoded."""
        connection = http.client.HTTPConnection(self.host, timeout=30)
        data = json.dumps(body).encode() if body is not None and not isinstance(
            body, bytes) else body
        sent = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=data, headers={**sent, **(headers or {})})
        response = connection.getresponse()
        result = response.status, response.read()
        connection.close()
        return result

    def decide(self, reviewer: str, decisions: list[dict[str, str]],
               origin: str | None = "same") -> tuple[int, dict[str, Any]]:
        """POST decisions as the page does (``origin="same"``: this server's origin)."""
        headers = {} if origin is None else {
            "Origin": f"http://{self.host}" if origin == "same" else origin}
        status, body = self.request("POST", self.base + "decisions",
                                    {"reviewer": reviewer, "decisions": decisions}, headers)
        return status, json.loads(body or b"{}")

    def page(self, query: str = "") -> str:
        status, body = self.request("GET", self.base + query)
        assert status == 200, body[:500]
        return body.decode()


@contextmanager
def review_server(target: str | Path, *args: str, env: dict[str, str] | None = None
                  ) -> Iterator[Server]:
    """``adgen review TARGET ARGS`` until the block ends (then stopped, or already killed)."""
    process = subprocess.Popen([str(ADGEN), "review", str(target), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    try:
        line = process.stdout.readline() if process.stdout else ""
        found = re.search(r"http://\S+", line)
        if not found:
            process.kill()
            _, err = process.communicate(timeout=30)
            raise RuntimeError(f"adgen review did not start: {line}{err}")
        # keep reading its output, so a full pipe never blocks it
        threading.Thread(target=process.communicate, daemon=True).start()
        yield Server(process, found.group(0))
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def cards(page: str) -> dict[str, dict[str, str]]:
    """Each card of a served page: its variant id → content hash and decision."""
    found = re.findall(r'<article class="variant[^>]*data-variant="([^"]+)"[^>]*'
                       r'data-decision="([a-z]+)" data-content="([0-9a-f]+)"', page)
    return {variant: {"decision": decision, "content": content}
            for variant, decision, content in found}


def small_campaign(root: Path, **changes: Any) -> adgen.CampaignSpec:
    """2 segments × 2 variants, two placements (one render each), review on, exports for Meta
    and Google after every run."""
    data = base_campaign(root)
    data["audience"] |= {"segment_by": ["region"], "filter": "region != 'east'"}
    data["creatives"][0]["prompt"] = "a bottle in the {{ region }}"
    data |= {"placements": ["feed_square", "display_1.91"], "review": {},
             "export": {"to": ["meta", "google"], "url": "https://shop.example/spring"}}
    data["renderer"]["aspect"] = "crop"
    return adgen.campaign_from_dict(data | changes, base_dir=root)


def published(out: Path, platform: str) -> str:
    """Every file an export wrote for ``platform``, as one text."""
    files = sorted((out / "exports" / platform).rglob("*.*"))
    assert files, f"no {platform} files"
    return "\n".join(path.read_text(encoding="utf-8") for path in files)
