"""Review decisions: who approved or rejected which variant, on exactly which content.

An output folder (or URL) keeps them in two files, each replaced atomically:

- ``decisions.jsonl``, the log: one JSON event per line, only ever appended to. An event
  records the variant, the decision (``approved``, ``rejected`` or ``pending``), who made it,
  when, the comment, the variant's content hash, and its take (how often it was rendered again
  after a rejection). People decide in ``adgen review`` or by importing a CSV; a run adds the
  events that follow from what it made (``source: run``, with a ``note``).
- ``decisions.json``, the current state: each variant's last event, rewritten after the log.

A decision holds for the content it was made on (:func:`content_hashes`: the variant's
captions and the sha256 of each of its files). When a run changes a variant's picture or
captions, the decision no longer applies and the variant is pending again; a run records that
(:meth:`Decisions.settle`) and the history stays. Should a variant's content return to what was
decided before, that decision applies again: rejected content never comes back as pending.

A rejected variant is rendered again by the next run with its next take (another seed:
:meth:`Decisions.takes`, which :func:`adgen.planning.make_plan` reads).

Writes go through :func:`record`, which holds the output's lock only while it writes, so a
review session never blocks a run for longer than one write; :func:`append` is for a command
that holds the lock already.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from adgen.errors import ReviewError
from adgen.output.lease import check_lease
from adgen.output.lock import output_lock
from adgen.output.store import OutputStore, is_url, open_store

LOG_FILE = "decisions.jsonl"
STATE_FILE = "decisions.json"
APPROVED, REJECTED, PENDING = "approved", "rejected", "pending"
DECISIONS = (APPROVED, REJECTED, PENDING)
SOURCES = ("app", "import", "run")
MAX_REVIEWER = 80
MAX_COMMENT = 2000
RUN_REVIEWER = "adgen run"

_write_lock = threading.Lock()


@dataclass(frozen=True)
class Decision:
    """One event of the log."""

    variant_id: str
    decision: str
    reviewer: str
    comment: str
    content: str
    """The variant's content hash the decision was made on (:func:`content_hashes`)."""
    at: str
    take: int = 0
    """How often the variant was rendered again after a rejection (0: its first picture)."""
    source: str = "app"
    """Where the decision came from: ``app`` (``adgen review``), ``import`` (a CSV) or
    ``run`` (a run's consequence of what it made, explained by ``note``)."""
    note: str = ""

    @property
    def by_person(self) -> bool:
        return self.source != "run"

    @property
    def when(self) -> str:
        """``2026-03-01 12:00 UTC``"""
        return f"{self.at[:16].replace('T', ' ')} UTC"

    def describe(self) -> str:
        """``rejected by Ana at 2026-03-01 12:00 UTC: too dark``"""
        said = f": {self.comment}" if self.comment else ""
        return f"{self.decision} by {self.reviewer} at {self.when}{said}"


@dataclass(frozen=True)
class Retake:
    """How a variant is planned after rejections: its take (a new seed from 1 on) and the
    rejection comments to add to its negative prompt (``review.comment_as_negative``)."""

    take: int
    negative: str = ""


def now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds")


def new_decision(variant_id: str, verdict: str, reviewer: str, comment: str, content: str, *,
             source: str = "app", take: int = 0) -> Decision:
    """A person's decision, checked: :class:`ReviewError` saying what is wrong."""
    verdict = str(verdict).strip().lower()
    if verdict not in DECISIONS:
        raise ReviewError(f"decision {verdict[:40]!r} is not one of {', '.join(DECISIONS)}")
    reviewer = " ".join(str(reviewer).split())
    if not reviewer:
        raise ReviewError("no reviewer: name yourself (the name field on the page, "
                          "--reviewer NAME, or the CSV's reviewer column)")
    if len(reviewer) > MAX_REVIEWER:
        raise ReviewError(f"reviewer name {reviewer[:40]!r}… is longer than {MAX_REVIEWER} "
                          "characters: shorten it")
    comment = str(comment).replace("\r\n", "\n").strip()
    if len(comment) > MAX_COMMENT:
        raise ReviewError(f"comment of {len(comment)} characters is longer than {MAX_COMMENT}: "
                          "shorten it")
    if any(ord(c) < 32 and c not in "\n\t" for c in comment):
        raise ReviewError("comment has control characters: remove them")
    return Decision(str(variant_id), verdict, reviewer, comment, content, now(), take, source)


def content_hashes(manifest: pd.DataFrame) -> dict[str, str]:
    """Each variant's content hash: a hash of its captions and, per placement, its file's
    sha256 (or the status of a file that was not made). Any change of a picture, a caption or a
    placement gives another hash."""
    parts: dict[str, list[tuple[str, str]]] = {}
    captions: dict[str, str] = {}
    columns = [manifest[c].astype(str).tolist() for c in ("variant_id", "placement", "sha256")]
    for variant_id, placement, sha, status, caption in zip(
            *columns, _statuses(manifest).tolist(), manifest["captions"].astype(str).tolist(),
            strict=True):
        parts.setdefault(variant_id, []).append((placement, sha if status == "ok" else status))
        captions.setdefault(variant_id, caption)
    hashes = {}
    for variant_id, files in parts.items():
        text = json.dumps([captions[variant_id], sorted(files)], ensure_ascii=False)
        hashes[variant_id] = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return hashes


def reviewable(manifest: pd.DataFrame) -> dict[str, str]:
    """The content hash of each variant with at least one file (what people review)."""
    contents = content_hashes(manifest)
    made = manifest.loc[_statuses(manifest) == "ok", "variant_id"].astype(str).unique()
    return {variant_id: contents[variant_id] for variant_id in made}


def _statuses(manifest: pd.DataFrame) -> pd.Series:
    """Each row's status (``ok`` where an older manifest has none)."""
    if "status" not in manifest.columns:
        return pd.Series("ok", index=manifest.index)
    return manifest["status"].fillna("").astype(str).replace("", "ok")


class Decisions:
    """The log, read: every event in order, and each variant's last one."""

    def __init__(self, events: Iterable[Decision] = ()) -> None:
        self.events = list(events)
        self._by_variant: dict[str, list[Decision]] = {}
        for event in self.events:
            self._by_variant.setdefault(event.variant_id, []).append(event)
        self.latest = {variant_id: events[-1] for variant_id, events in self._by_variant.items()}

    def __len__(self) -> int:
        return len(self.events)

    @classmethod
    def load(cls, store: OutputStore) -> Decisions:
        """The decisions of an output (none when it has no log)."""
        try:
            data = store.read_bytes(LOG_FILE)
        except FileNotFoundError:
            return cls()
        return cls(_parse(data, store.url(LOG_FILE)))

    @classmethod
    def of(cls, folder: str | Path) -> Decisions:
        """The decisions of an output folder (or a URL output's local mirror)."""
        return cls.load(open_store(folder))

    def in_force(self, variant_id: str, content: str) -> Decision | None:
        """The decision that holds for the variant with this content: its last event, made on
        this content, approving or rejecting it. None: the variant is pending."""
        last = self.latest.get(variant_id)
        if last is None or last.content != content or last.decision == PENDING:
            return None
        return last

    def status(self, variant_id: str, content: str) -> str:
        """``approved``, ``rejected`` or ``pending``."""
        held = self.in_force(variant_id, content)
        return held.decision if held else PENDING

    def take(self, variant_id: str) -> int:
        """The variant's current take (0 until a run renders it again after a rejection)."""
        last = self.latest.get(variant_id)
        return last.take if last else 0

    def history(self, variant_id: str) -> list[Decision]:
        """The variant's events, oldest first."""
        return list(self._by_variant.get(variant_id, ()))

    def counts(self, contents: Mapping[str, str]) -> dict[str, int]:
        """How many of these variants (id → content hash) are approved, rejected, pending."""
        counts = dict.fromkeys(DECISIONS, 0)
        for variant_id, content in contents.items():
            counts[self.status(variant_id, content)] += 1
        return counts

    def takes(self, *, comments: bool = False) -> dict[str, Retake]:
        """How to plan each variant rendered again after a rejection: its take is its last
        one, plus one while it stands rejected; ``comments``: with every comment its rejections
        gave, for its negative prompt."""
        out = {}
        for variant_id, last in self.latest.items():
            take = last.take + (last.decision == REJECTED)
            if take <= 0:
                continue
            said = [e.comment for e in self.history(variant_id)
                    if e.decision == REJECTED and e.by_person and e.comment]
            negative = ", ".join(dict.fromkeys(" ".join(c.split()) for c in said))
            out[variant_id] = Retake(take, negative if comments else "")
        return out

    def settle(self, contents: Mapping[str, str], takes: Mapping[str, int]) -> list[Decision]:
        """The events a run adds after making ``contents`` (variant id → content hash) with
        ``takes`` (variant id → take): a variant whose content is not the one last decided on
        goes back to the decision people made on this content before, else to pending."""
        events = []
        for variant_id, content in contents.items():
            last = self.latest.get(variant_id)
            if last is None or last.content == content:
                continue
            take = takes.get(variant_id, last.take)
            earlier = [e for e in self.history(variant_id) if e.by_person and e.content == content]
            if earlier:
                before = earlier[-1]
                events.append(replace(
                    before, at=now(), take=take, source="run",
                    note=f"the same content as decided on {before.when}"))
                continue
            why = "its picture or captions changed"
            if take > last.take:
                said = f": {last.comment}" if last.decision == REJECTED and last.comment else ""
                why = f"rendered again (take {take}) after the rejection{said}"
            events.append(Decision(variant_id, PENDING, RUN_REVIEWER, "", content, now(), take,
                                   "run", why))
        return events


def settle_run(folder: Path, manifest: pd.DataFrame, takes: Mapping[str, int]) -> dict[str, int]:
    """After a run wrote ``manifest`` into ``folder`` (the output or its mirror; the run holds
    the lock): record what its changes mean for review (:meth:`Decisions.settle`), and count
    the variants with files that are approved, rejected and pending."""
    store = open_store(folder)
    decisions = append(store, Decisions.load(store).settle(content_hashes(manifest), takes))
    return decisions.counts(reviewable(manifest))


def _parse(data: bytes, where: str) -> list[Decision]:
    names = {f.name for f in fields(Decision)}
    events = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            event = Decision(**{k: v for k, v in raw.items() if k in names})
            if event.decision not in DECISIONS or event.source not in SOURCES \
                    or not isinstance(event.take, int):
                raise ValueError(f"decision {event.decision!r} from {event.source!r}")
        except (ValueError, TypeError, AttributeError) as exc:
            raise ReviewError(f"{where} line {number}: not a decision ({exc}); the log is "
                              "only appended to by adgen: restore that line or delete it") from None
        events.append(event)
    return events


def append(store: OutputStore, events: list[Decision]) -> Decisions:
    """Add ``events`` to the output's log, then rewrite its state; the caller holds the
    output's lock. Returns every decision, these included."""
    try:
        before = store.read_bytes(LOG_FILE)
    except FileNotFoundError:
        before = b""
    current = Decisions(_parse(before, store.url(LOG_FILE)))
    if not events:
        return current
    store.check_inside(LOG_FILE)
    if before and not before.endswith(b"\n"):
        before += b"\n"
    lines = "".join(json.dumps(asdict(e), ensure_ascii=False, sort_keys=True) + "\n"
                    for e in events)
    if is_url(store.location):
        check_lease(store.location)  # a lease lost meanwhile: write nothing
    store.write_bytes(LOG_FILE, before + lines.encode("utf-8"))
    result = Decisions([*current.events, *events])
    state = {"events": len(result), "updated_at": events[-1].at,
             "variants": {vid: asdict(e) for vid, e in sorted(result.latest.items())}}
    store.write_bytes(STATE_FILE, (json.dumps(state, ensure_ascii=False, indent=1) + "\n")
                      .encode("utf-8"))
    return result


def record(location: str | Path, make: Callable[[Decisions], list[Decision]], *,
           wait: float | None = None) -> tuple[Decisions, list[Decision]]:
    """Add decisions to the output ``location`` (a folder or URL), holding its lock for this
    write only (waiting up to ``wait`` seconds for a command that holds it): ``make`` gets the
    decisions so far and returns the events to append, or raises (nothing is written). Returns
    every decision and the events appended."""
    with _write_lock, output_lock(location, "review", wait=wait, create=False):
        store = open_store(location)
        events = make(Decisions.load(store))
        return append(store, events), events
