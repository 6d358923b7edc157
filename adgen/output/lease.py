"""A URL output's lock across machines: a lease in the store that every writer respects.

:func:`adgen.output.lock.output_lock` takes it (with :func:`hold_lease`) for every command that
writes a URL output, on top of the local lock that keeps this machine's commands apart. The lease
records its holder (host, PID, command, since when, its time to live, a random token), and a
heartbeat thread renews it every third of its time to live (``ADGEN_LOCK_TTL``, default 60 s).

On S3 the lease is one object, ``<output>/.adgen-lock/lease.json``, written only with
conditional PUTs, so of two machines exactly one wins:

- taken with ``If-None-Match: *`` (only if there is none);
- renewed, taken over and deleted with ``If-Match`` its last ETag, so a lease that changed hands
  is never renewed or deleted by its old holder;
- taken over only when stale: not renewed within its time to live, judged on the store's clock
  (the object's Last-Modified against the Date of the response, so the machines' clocks do not
  matter), or held by a process of this machine that is gone.

Right before a command commits (:func:`check_lease`, called by the mirror's push), the lease is
renewed once more; a command whose lease was taken over meanwhile (it stalled past the time to
live) commits nothing. pyarrow cannot make conditional writes, so S3 needs boto3
(``pip install 'adgen[s3]'``); a server that ignores the conditions is refused.

Other stores (``gs://``, ``az://``, ``hdfs://``… through pyarrow or fsspec) get claims instead:
each writer puts ``.adgen-lock/claim-<token>.json``, then lists the folder, and withdraws and
is refused if another live claim is there. Each lists after its own write, so of two writers at
least one sees the other, on any store that lists what was written (all strongly consistent
ones). There, staleness is judged on the writers' clocks: keep them in sync.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlparse

from adgen.errors import OutputError, StoreError
from adgen.output.store import LEASE_DIR, ObjectStore, store_problem

TTL_ENV = "ADGEN_LOCK_TTL"
DEFAULT_TTL = 60.0
MIN_TTL = 2.0
LEASE_NAME = "lease.json"
CLAIM_PREFIX = "claim-"
_TAKEN = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_GONE = {"NoSuchKey", "404"}
_UNSUPPORTED = {"NotImplemented", "501"}

_held: dict[str, Lease] = {}
_abandoned: set[str] = set()  # tokens of leases this process could not delete
_registry = threading.Lock()


def holder_record(command: str) -> dict[str, Any]:
    """Who holds a lock: host, PID, command, since when."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": command,
            "since": datetime.now(tz=UTC).isoformat(timespec="seconds")}


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "another adgen command"
    return (f"`adgen {holder.get('command', '?')}` on host {holder.get('host', '?')}, "
            f"PID {holder.get('pid', '?')}, since {holder.get('since', '?')}")


def lease_ttl() -> float:
    """The time to live of a new lease (``ADGEN_LOCK_TTL`` seconds, default 60)."""
    raw = os.environ.get(TTL_ENV, "").strip()
    try:
        ttl = float(raw) if raw else DEFAULT_TTL
    except ValueError:
        raise OutputError(f"{TTL_ENV}={raw!r} is not a number of seconds") from None
    if not ttl >= MIN_TTL:
        raise OutputError(f"{TTL_ENV}={raw}: give at least {MIN_TTL:g} seconds")
    return ttl


@contextlib.contextmanager
def hold_lease(location: str, command: str, wait: float) -> Iterator[None]:
    """Hold the lease of the URL output ``location`` for the block; :class:`OutputError` naming
    the holder when another holds it for longer than ``wait`` seconds, or naming the URL and
    what to fix when the store cannot be written (a missing bucket, wrong credentials)."""
    url = location.rstrip("/")
    kind = S3Lease if urlparse(url).scheme.lower() == "s3" else ClaimLease
    lease = kind(url, command, lease_ttl())
    lease.acquire(wait)
    with _registry:
        _held[url] = lease
    try:
        yield
    finally:
        with _registry:
            del _held[url]
        lease.release()


def check_lease(location: str) -> None:
    """Before a commit: :class:`OutputError` if this process held the output's lease and lost
    it (nothing was committed); a no-op when it holds none."""
    with _registry:
        lease = _held.get(location.rstrip("/"))
    if lease is not None:
        lease.check()


class _Lost(Exception):
    def __init__(self, holder: dict[str, Any]) -> None:
        super().__init__()
        self.holder = holder


class Lease:
    """One holding of a lease: :meth:`acquire`, renewed by a heartbeat, :meth:`release`."""

    errors: tuple[type[BaseException], ...] = (OSError, StoreError)
    """What the store's client raises when the store fails."""

    def __init__(self, url: str, command: str, ttl: float) -> None:
        self.url, self.ttl = url, ttl
        self.record = {**holder_record(command), "ttl": ttl, "machine": _machine(),
                       "token": uuid.uuid4().hex}
        self.lost: str | None = None
        self._stop = threading.Event()
        self._mutex = threading.Lock()  # one renewal at a time (each changes the ETag)
        self._beat: threading.Thread | None = None

    def body(self) -> bytes:
        renewed = datetime.now(tz=UTC).isoformat(timespec="milliseconds")
        return json.dumps({**self.record, "renewed": renewed}).encode("utf-8")

    def acquire(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                holder = self.try_take()
            except self.errors as exc:
                raise OutputError(f"{self.url}: cannot write here: {store_problem(exc)}"
                                  ) from None
            if holder is None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                waited = f"waited {wait:g} s; " if wait else ""
                raise OutputError(
                    f"{self.url}: the output is in use by {describe_holder(holder)}; {waited}"
                    "wait for it to finish, or retry with --wait SECONDS (or ADGEN_LOCK_WAIT)")
            time.sleep(min(1.0, left) * random.uniform(0.5, 1.0))
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name=f"adgen lease {self.url}")
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with contextlib.suppress(*self.errors):  # an outage: the next beat tries again
                self._renew_now()
            if self.lost:
                return

    def _renew_now(self) -> None:
        with self._mutex:
            if self.lost or self._beat is None:
                return
            try:
                self.renew()
            except _Lost as lost:
                self.lost = f"it was taken over by {describe_holder(lost.holder)}"

    def check(self) -> None:
        """Renew now; :class:`OutputError` if the lease is lost, :class:`StoreError` if the
        store cannot be reached."""
        try:
            self._renew_now()
        except self.errors as exc:
            raise StoreError(self.url, store_problem(exc)) from None
        if self.lost:
            raise OutputError(f"{self.url}: this command lost the output's lock ({self.lost} "
                              f"while it went unrenewed for over {self.ttl:g} s); nothing was "
                              "committed: run it again")

    def release(self) -> None:
        self._stop.set()
        with self._mutex:
            self._beat = None
            if self.lost:
                return
            try:
                self.drop()
            except self.errors:  # the store is gone: this process's next command takes it over
                _abandoned.add(self.record["token"])

    def stale(self, holder: dict[str, Any], age: float) -> bool:
        """Whether another holder's lease may be taken over: not renewed for its time to live
        (``age`` seconds since), or held by a process of this machine that is gone."""
        try:
            ttl = float(holder.get("ttl") or DEFAULT_TTL)
            pid = int(holder.get("pid") or 0)
        except (TypeError, ValueError):
            return age > DEFAULT_TTL
        if age > ttl or holder.get("token") in _abandoned:
            return True
        return holder.get("machine") == self.record["machine"] and not _alive(pid)

    def try_take(self) -> dict[str, Any] | None:
        """Take the lease: None when taken, else the live holder's record."""
        raise NotImplementedError

    def renew(self) -> None:
        """Renew the lease; :class:`_Lost` if another holder has it now."""
        raise NotImplementedError

    def drop(self) -> None:
        """Delete the lease, unless another holder has it now."""
        raise NotImplementedError


class S3Lease(Lease):
    """The lease as one S3 object written with conditional PUTs (boto3)."""

    def __init__(self, url: str, command: str, ttl: float) -> None:
        super().__init__(url, command, ttl)
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise OutputError(f"{url}: an s3:// output is locked with S3 conditional writes, "
                              "which need boto3: pip install 'adgen[s3]'") from None
        self.errors = (BotoCoreError, ClientError, OSError)
        self.refused: type[Exception] = ClientError  # an answer with an error code
        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        endpoint = query.get("endpoint_override")
        if endpoint and "://" not in endpoint:
            endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
        self.bucket = parsed.hostname or ""
        self.key = "/".join(p for p in (parsed.path.strip("/"), LEASE_DIR, LEASE_NAME) if p)
        self.etag = ""
        self.client = boto3.session.Session().client(
            "s3", region_name=query.get("region"), endpoint_url=endpoint,
            config=Config(connect_timeout=5, read_timeout=15,
                          retries={"max_attempts": 3, "mode": "standard"}))

    def _put(self, **condition: str) -> str:
        return str(self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self.body(),
                                          ContentType="application/json", **condition)["ETag"])

    def _current(self) -> tuple[dict[str, Any], str, float] | None:
        """The lease now: its holder, ETag and age in seconds on the store's clock."""
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.refused as exc:
            if _code(exc) in _GONE:
                return None
            raise
        date = parsedate_to_datetime(got["ResponseMetadata"]["HTTPHeaders"]["date"])
        if date.tzinfo is None:  # "-0000": UTC too
            date = date.replace(tzinfo=UTC)
        return (_parse(got["Body"].read()), str(got["ETag"]),
                (date - got["LastModified"]).total_seconds())

    def try_take(self) -> dict[str, Any] | None:
        holder: dict[str, Any] = {}
        for _ in range(3):  # the lease may change hands between the calls: look again
            try:
                self.etag = self._put(IfNoneMatch="*")
            except self.refused as exc:
                if _code(exc) in _UNSUPPORTED:
                    raise self.unsupported("If-None-Match") from None
                if _code(exc) not in _TAKEN:
                    raise
            else:
                self._require_conditions()
                return None
            current = self._current()
            if current is None:
                continue
            holder, etag, age = current
            if not self.stale(holder, age):
                return holder
            try:
                self.etag = self._put(IfMatch=etag)
            except self.refused as exc:
                if _code(exc) not in _TAKEN | _GONE:
                    raise
            else:
                return None
        return holder

    def _require_conditions(self) -> None:
        """Refuse a server that ignores conditional writes (it would let two writers in): a
        second ``If-None-Match: *`` and an ``If-Match`` of a wrong ETag must both fail."""
        for header, condition in (("If-None-Match", {"IfNoneMatch": "*"}),
                                  ("If-Match", {"IfMatch": '"adgen-wrong-etag"'})):
            try:
                self.etag = self._put(**condition)
            except self.refused as exc:
                if _code(exc) in _TAKEN:
                    continue
                raise
            self.client.delete_object(Bucket=self.bucket, Key=self.key)
            raise self.unsupported(header)

    def unsupported(self, header: str) -> OutputError:
        return OutputError(f"{self.url}: this S3 server ignores conditional writes ({header}), "
                           "so adgen cannot keep a second writer out; use a server that "
                           "supports them")

    def renew(self) -> None:
        try:
            self.etag = self._put(IfMatch=self.etag)
        except self.refused as exc:
            if _code(exc) in _TAKEN | _GONE:
                current = self._current()
                raise _Lost(current[0] if current else {}) from None
            raise

    def drop(self) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except self.refused as exc:
            if _code(exc) in _TAKEN | _GONE:
                return
            current = self._current()  # a server without conditional deletes: look first
            if current is not None and current[0].get("token") == self.record["token"]:
                self.client.delete_object(Bucket=self.bucket, Key=self.key)


class ClaimLease(Lease):
    """The lease as claim objects, on stores without conditional writes."""

    def __init__(self, url: str, command: str, ttl: float) -> None:
        super().__init__(url, command, ttl)
        self.store = ObjectStore(url)
        self.name = f"{LEASE_DIR}/{CLAIM_PREFIX}{self.record['token']}.json"

    def _claims(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for name in self.store.files(LEASE_DIR):
            if name != self.name and PurePosixPath(name).name.startswith(CLAIM_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    yield name, _parse(self.store.read_bytes(name))

    def try_take(self) -> dict[str, Any] | None:
        self.store.write_bytes(self.name, self.body())
        live = []
        for name, holder in self._claims():
            if self.stale(holder, _age(holder)):
                self.store.delete(name)
            else:
                live.append(holder)
        if live:
            self.store.delete(self.name)
            return live[0]
        return None

    def renew(self) -> None:
        if not self.store.exists(self.name):
            raise _Lost(next((holder for _, holder in self._claims()), {}))
        self.store.write_bytes(self.name, self.body())

    def drop(self) -> None:
        self.store.delete(self.name)


def _code(exc: BaseException) -> str:
    """A botocore error's code (``PreconditionFailed``, ``NoSuchKey``…), else ""."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _parse(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _age(holder: dict[str, Any]) -> float:
    """Seconds since the holder last renewed its claim (on this machine's clock)."""
    try:
        renewed = datetime.fromisoformat(str(holder["renewed"]))
    except (KeyError, ValueError):
        return float("inf")
    return (datetime.now(tz=UTC) - renewed).total_seconds()


def _machine() -> str:
    """This machine and PID namespace: where a holder's PID can be checked."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "/".join(parts)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True  # unknown: never taken for gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
