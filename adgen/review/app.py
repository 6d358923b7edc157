"""``adgen review OUT``: the review sheet, served, with the controls to approve and reject.

A Starlette app served by uvicorn, on 127.0.0.1 unless ``--host`` names another address. Every
address starts with a token made for this session (``http://127.0.0.1:PORT/<token>/``): a
request without it gets 403 and nothing else. A write (``POST <token>/decisions``) must also
come from the page itself: its ``Origin`` must be this server (and, on loopback, the ``Host``
one of this server's names), so no other page, even in the same browser, can post decisions.

The page is :func:`adgen.review.sheet.render_sheet` with :class:`~adgen.review.sheet.Reviewing`:
the static sheet's cards, each with approve, reject and a comment; the bulk buttons decide every
card the filters show. Nothing is kept in the browser: each load reads the output and its
decisions, and the reviewer's name travels in the address (``?reviewer=``). Each write holds the
output's lock only while it writes (:func:`adgen.review.decisions.record`) and is answered once
it is on disk (or in the store), so a killed server loses no decision it acknowledged. A
decision on content that changed since the page loaded is refused (409): reload and look again.
Serving writes nothing else into the output: missing thumbnails are made in a private folder.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import mimetypes
import os
import secrets
import signal
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route

from adgen.errors import AdgenError, OutputError, ReviewError
from adgen.manifest import read_manifest
from adgen.output.lock import WAIT_ENV
from adgen.output.store import is_url, open_store
from adgen.review.decisions import Decision, Decisions, new_decision, record, reviewable
from adgen.review.sheet import Reviewing, decision_view, render_sheet
from adgen.review.source import check_output, current_manifest, snapshot
from adgen.review.thumbs import THUMB_NAME, THUMBS_DIR, asset_path

WRITE_WAIT_S = 5.0
"""How long a write waits for a command that holds the output (a run) before it is refused,
unless ``--wait`` (``ADGEN_LOCK_WAIT``) says otherwise."""
MAX_BODY = 4_000_000
MAX_ITEMS = 20_000
LOOPBACK = ("127.0.0.1", "localhost", "::1")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Stale(ReviewError):
    """The variant's content changed since the page was loaded."""


@dataclass
class ReviewSession:
    """One ``adgen review``: the output, the token, a private working folder."""

    location: str
    token: str
    work: Path
    reviewer: str = ""
    hosts: frozenset[str] | None = None
    """The ``Host`` headers accepted (None: any, when listening beyond loopback)."""
    wait: float = WRITE_WAIT_S
    """Seconds a write waits for a command that holds the output."""
    paths: frozenset[str] = field(default_factory=frozenset)
    """The asset files of the manifest the page showed last: the only ones served."""
    _pages: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def page(self, reviewer: str) -> str:
        with self._pages:  # one snapshot of a URL output at a time
            folder = snapshot(self.location, self.work / "snapshot")
            local = [] if is_url(self.location) else [folder / THUMBS_DIR]
            store = open_store(self.location)
            html = render_sheet(folder, store, [self.work / THUMBS_DIR, *local],
                                decisions=Decisions.load(store), reviewing=Reviewing(reviewer))
            self.paths = frozenset(str(p) for p in read_manifest(folder)["path"] if p)
        return html

    def decide(self, reviewer: str, items: list[dict[str, str]]) -> dict[str, Any]:
        """Record ``items`` as ``reviewer``'s decisions; what the page shows of them after."""
        contents: dict[str, str] = {}

        def events(decisions: Decisions) -> list[Decision]:
            contents.update(reviewable(current_manifest(self.location)))
            made = []
            for item in items:
                variant_id = item["variant_id"]
                if variant_id not in contents:
                    raise ReviewError(f"variant {variant_id[:80]!r} is not in the output (or has "
                                      "no files to review): reload the page")
                if item["content"] != contents[variant_id]:
                    raise _Stale(f"{variant_id} changed since this page was loaded (a run made "
                                 "it again): reload the page and look at it again")
                made.append(new_decision(variant_id, item["decision"], reviewer,
                                         item["comment"], contents[variant_id],
                                         take=decisions.take(variant_id)))
            return made

        decisions, made = record(self.location, events, wait=self.wait)
        decided = {e.variant_id for e in made}
        return {
            "saved": len(made), "reviewer": made[0].reviewer if made else reviewer,
            "states": {v: {**decision_view(decisions.in_force(v, contents[v])), "note": ""}
                       for v in decided},
            "counts": decisions.counts(contents),
        }

    def file(self, rel: str) -> Response:
        """An asset the page shows, or the analysis plot."""
        if (rel not in self.paths and rel != "analysis.png") or asset_path(Path(), rel) is None:
            return PlainTextResponse("not found", 404)
        store = open_store(self.location)
        media = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        if is_url(self.location):
            try:
                return Response(store.read_bytes(rel), media_type=media, headers=_CACHED)
            except FileNotFoundError:
                return PlainTextResponse("not found", 404)
        try:
            store.check_inside(rel)  # never serve through a link out of the folder
        except OutputError:
            return PlainTextResponse("not found", 404)
        path = Path(self.location) / rel
        if not path.is_file():
            return PlainTextResponse("not found", 404)
        return FileResponse(path, media_type=media, headers=_CACHED)

    def thumb(self, name: str) -> Response:
        if THUMB_NAME.match(name):
            folders = [self.work / THUMBS_DIR]
            if not is_url(self.location):
                folders.append(Path(self.location) / THUMBS_DIR)
            for folder in folders:
                if (folder / name).is_file() and not (folder / name).is_symlink():
                    return FileResponse(folder / name, media_type="image/webp", headers=_CACHED)
        return PlainTextResponse("not found", 404)


_CACHED = {"Cache-Control": "private, max-age=300"}


def create_app(session: ReviewSession) -> ASGIApp:
    """The ASGI app of a review session (behind :class:`_Guard`)."""

    async def page(request: Request) -> Response:
        reviewer = request.query_params.get("reviewer", session.reviewer)
        try:
            html = await run_in_threadpool(session.page, reviewer)
        except AdgenError as exc:
            return PlainTextResponse(f"cannot show the review: {exc}", 503)
        return HTMLResponse(html)

    async def decide(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return _error(413, "too many decisions at once: filter to fewer cards")
        try:
            reviewer, items = _read_request(json.loads(await request.body()))
            result = await run_in_threadpool(session.decide, reviewer, items)
        except ValueError:
            return _error(400, "the request is not JSON")
        except _Stale as exc:
            return _error(409, str(exc))
        except ReviewError as exc:
            return _error(400, str(exc))
        except OutputError as exc:  # a run holds the output, or the store failed
            return _error(503, f"{exc}; your decision was not saved, try again")
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    async def file(request: Request) -> Response:
        return await run_in_threadpool(session.file, request.path_params["rel"])

    async def thumb(request: Request) -> Response:
        return await run_in_threadpool(session.thumb, request.path_params["name"])

    routes = [Mount(f"/{session.token}", routes=[
        Route("/", page, methods=["GET"]),
        Route("/decisions", decide, methods=["POST"]),
        Route(f"/{THUMBS_DIR}/{{name}}", thumb, methods=["GET"]),
        Route("/{rel:path}", file, methods=["GET"]),
    ])]
    return _Guard(Starlette(routes=routes), session)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers={"Cache-Control": "no-store"})


def _read_request(body: Any) -> tuple[str, list[dict[str, str]]]:
    """The reviewer and the decisions of a request body; :class:`ReviewError` if malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("decisions"), list):
        raise ReviewError("the request needs a list of decisions")
    items = body["decisions"]
    if not 0 < len(items) <= MAX_ITEMS:
        raise ReviewError(f"send between 1 and {MAX_ITEMS} decisions at once")
    parsed = []
    for item in items:
        if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("variant_id", "decision", "content")):
            raise ReviewError("each decision needs a variant_id, a decision and a content hash")
        comment = item.get("comment", "")
        parsed.append({"variant_id": item["variant_id"], "decision": item["decision"],
                       "content": item["content"], "comment": comment
                       if isinstance(comment, str) else ""})
    reviewer = body.get("reviewer")
    return (reviewer if isinstance(reviewer, str) else ""), parsed


class _Guard:
    """In front of the app: the session's token on every request, a known ``Host`` on
    loopback, and on every write an ``Origin`` that is this server; else 403. Adds the headers
    that keep the page out of frames and its address out of ``Referer``."""

    def __init__(self, app: ASGIApp, session: ReviewSession) -> None:
        self.app, self.session = app, session
        self.prefix = f"/{session.token}/".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal == "slash":
            query = scope.get("query_string", b"").decode("latin-1")
            target = f"/{self.session.token}/" + (f"?{query}" if query else "")
            await RedirectResponse(target, 308)(scope, receive, send)
            return
        if refusal:
            await PlainTextResponse(refusal, 403)(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _SECURITY if k not in present]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refusal(self, scope: Scope) -> str:
        path = scope.get("raw_path") or scope["path"].encode()
        if path.split(b"?")[0] == self.prefix[:-1]:
            return "slash"
        if not hmac.compare_digest(path[:len(self.prefix)], self.prefix):
            return ("forbidden: open the address `adgen review` printed (it carries this "
                    "session's token)")
        headers = {name.lower(): value.decode("latin-1") for name, value in scope["headers"]}
        host = headers.get(b"host", "")
        if self.session.hosts is not None and host not in self.session.hosts:
            return f"forbidden: this server answers only as {', '.join(sorted(self.session.hosts))}"
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get(b"origin", "")
            if origin not in (f"http://{host}", f"https://{host}"):
                return "forbidden: decisions are taken only from the review page itself"
            if headers.get(b"sec-fetch-site", "same-origin") != "same-origin":
                return "forbidden: decisions are taken only from the review page itself"
        return ""


_SECURITY = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
             (b"x-frame-options", b"DENY"),
             (b"content-security-policy", b"frame-ancestors 'none'"),
             (b"cache-control", b"no-store")]


# --- serving -------------------------------------------------------------------------------


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port); :class:`ReviewError` saying
    what to change when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise ReviewError(f"--host {host!r}: not an address of this machine ({exc}); use "
                          "127.0.0.1 (the default), 0.0.0.0 or one of its addresses") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ReviewError(f"cannot listen on {host} port {port} ({exc.strerror}): choose "
                          "another --port (0 picks a free one)") from None
    return sock


def address(host: str, port: int, token: str, reviewer: str = "") -> str:
    """The page's address as a person opens it."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    shown = f"[{shown}]" if ":" in shown else shown
    query = f"?reviewer={quote(reviewer, safe='')}" if reviewer else ""
    return f"http://{shown}:{port}/{token}/{query}"


def _write_wait() -> float:
    raw = os.environ.get(WAIT_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else WRITE_WAIT_S
    except ValueError:
        raise ReviewError(f"{WAIT_ENV}={raw!r} is not a number of seconds") from None


def serve(location: str | Path, *, host: str = "127.0.0.1", port: int = 0,
          reviewer: str = "", announce: Callable[[str], None] = print) -> int:
    """Serve the review of the output ``location`` until interrupted (Ctrl+C). ``announce``
    gets the page's address once the server listens. Returns how many decisions the output
    gained meanwhile."""
    import uvicorn

    check_output(location)
    current_manifest(location)  # no manifest: say so now, not on the page
    before = len(Decisions.of(location))
    wait, token = _write_wait(), secrets.token_urlsafe(24)
    sock = listen(host, port)
    port = int(sock.getsockname()[1])
    hosts = frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")
                      ) if host in LOOPBACK else None
    with tempfile.TemporaryDirectory(prefix="adgen-review-") as work:
        session = ReviewSession(str(location), token, Path(work), reviewer, hosts, wait)
        config = uvicorn.Config(create_app(session), log_level="warning", access_log=False,
                                lifespan="off", server_header=False)
        announce(address(host, port, token, reviewer))
        _uvicorn_server()(config).run(sockets=[sock])
    return len(Decisions.of(location)) - before


def _uvicorn_server() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, ending normally after Ctrl+C or SIGTERM (uvicorn raises the signal
        again once it has shut down, which would end the process before the review does)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            before = {sig: signal.signal(sig, self.handle_exit)
                      for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in before.items():
                    signal.signal(sig, handler)

    return Server
