"""The HTML review sheet: every asset of a run on one self-contained page.

:func:`write_report` reads an output folder (``manifest.parquet``, and when present
``run.json``, ``assignments.csv``, ``analysis.csv``/``analysis.json``/``analysis.png``, the review
decisions) and writes ``review.html`` next to it, with small thumbnails under ``thumbs/``. The
page has inline CSS and JS only (no CDN, no server) and links assets by relative paths, so it
works opened from the folder or from an unpacked zip.

Layout: one section per segment, one card per variant (creative × index) with its captions,
prompt, seed and model beside a strip of its placements; videos play inline. After
``adgen analyze``, each card carries its metrics and a winner/loser badge and the page shows the
analysis plot and table; once anyone has reviewed the output, each card says its decision
(read-only). Filters by segment, placement, quality and decision are plain JS over ``data-``
attributes, so no manifest value ever reaches a script.

``adgen review`` (:mod:`adgen.review.app`) serves the same page (:func:`render_sheet`) with
the controls to decide. The page is the Jinja template ``templates/page.html.j2`` (each card:
``card.html.j2``), with autoescaping on; this module only works out the plain values it shows.
Everything from the manifest is customer data: the template HTML-escapes it, URLs are
percent-encoded relative paths, and a Content-Security-Policy with a per-page nonce blocks any
script the page did not write. Thumbnail names come from the asset's hash, never from its values.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, FileSystemLoader

from adgen.errors import AssetError, ResultsError
from adgen.manifest import read_manifest
from adgen.output.files import atomic_write_text, unguard
from adgen.output.lock import output_lock
from adgen.output.mirror import open_output
from adgen.output.store import OutputStore, is_url, open_store
from adgen.review.decisions import PENDING, Decision, Decisions, content_hashes, reviewable
from adgen.review.thumbs import THUMBS_DIR, Thumb, asset_path, is_video, make_thumbs

REPORT_NAME = "review.html"
VERDICTS = ("winner", "loser", "inconclusive", "control")
OVERALL = "all"
TEMPLATE = "page.html.j2"
_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=True, trim_blocks=True, lstrip_blocks=True,
                   keep_trailing_newline=True)
_MIME = {"mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}
DECISION_LABELS = {"approved": "Approved", "rejected": "Rejected", "pending": "Pending review"}


def write_report(out_dir: str | Path, *, title: str | None = None,
                 thumb_size: int = 320) -> Path:
    """Write ``out_dir/review.html`` (and missing thumbnails under ``out_dir/thumbs/``) and
    return its path (for an object-store URL: the page in its local mirror, also uploaded).
    ``thumb_size`` is the longest side of a thumbnail in pixels. Holds the output's lock
    (:func:`adgen.output.lock.output_lock`)."""
    with output_lock(out_dir, "report", create=False), open_output(out_dir) as folder:
        page = render_sheet(folder, open_store(out_dir), [folder / THUMBS_DIR], title=title,
                            thumb_size=thumb_size, prune=True)
        atomic_write_text(folder / REPORT_NAME, page)
    return Path(out_dir) / REPORT_NAME if not is_url(out_dir) else folder / REPORT_NAME


@dataclass(frozen=True)
class Reviewing:
    """What ``adgen review`` adds to the page: the controls to decide, and who decides."""

    reviewer: str = ""


def render_sheet(folder: Path, store: OutputStore, thumb_folders: Sequence[Path], *,
                 title: str | None = None, thumb_size: int = 320, prune: bool = False,
                 decisions: Decisions | None = None, reviewing: Reviewing | None = None) -> str:
    """The page of the output whose small files are in ``folder`` and whose assets ``store``
    reads. Thumbnails are found in ``thumb_folders`` or made in the first (``prune``: and those
    no asset needs deleted there). ``decisions``: those to show (default: the folder's);
    ``reviewing``: the page of ``adgen review``, else the static sheet."""
    if thumb_size < 16:
        raise AssetError(f"thumb_size {thumb_size} is too small: use at least 16 pixels")
    # 1. read what the run (and the analysis, the reviewers, if any) wrote
    manifest = read_manifest(folder)
    analysis = _read_analysis(folder)
    extras = _Extras.load(folder)
    # 2. thumbnails and video posters, made only when missing
    thumbs = make_thumbs(folder, _records(manifest), thumb_size, store, thumb_folders,
                         prune=prune)
    # 3. the page
    decisions = Decisions.of(folder) if decisions is None else decisions
    return _Page(folder, manifest, analysis, extras, thumbs, title, decisions).render(reviewing)


# --- reading -------------------------------------------------------------------------------


def _read_analysis(out_dir: Path) -> pd.DataFrame | None:
    path = out_dir / "analysis.csv"
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype={"variant_id": "string", "segment_id": "string",
                                         "scope": "string", "arm": "string"})
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: cannot read it ({exc}); run `adgen analyze` again") from None
    if "scope" not in frame.columns:
        frame["scope"] = frame["segment_id"] if "segment_id" in frame.columns else OVERALL
    missing = [c for c in ("variant_id", "verdict") if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {', '.join(missing)}; run `adgen "
                           "analyze` again to rewrite it")
    for column in ("variant_id", "scope", "verdict", "arm"):
        if column in frame.columns:
            frame[column] = unguard(frame[column].fillna("").astype(str))
    return frame


@dataclass
class _Extras:
    """Optional context: the run summary, audience sizes and analysis warnings."""

    finished_at: str = ""
    per_segment: dict[str, int] | None = None
    per_variant: dict[str, int] | None = None
    warnings: tuple[str, ...] = ()
    has_plot: bool = False

    @classmethod
    def load(cls, out_dir: Path) -> _Extras:
        extras = cls(has_plot=(out_dir / "analysis.png").is_file())
        run = _json_file(out_dir / "run.json")
        if isinstance(run, dict):
            extras.finished_at = str(run.get("finished_at", ""))
        analysis = _json_file(out_dir / "analysis.json")
        if isinstance(analysis, dict) and isinstance(analysis.get("warnings"), list):
            extras.warnings = tuple(str(w) for w in analysis["warnings"])
        assignments = out_dir / "assignments.csv"
        if assignments.exists():
            try:
                frame = pd.read_csv(assignments, usecols=["segment_id", "variant_id"], dtype=str,
                                    keep_default_na=False)
            except (OSError, ValueError):
                return extras
            extras.per_segment = _counts(frame["segment_id"])
            extras.per_variant = _counts(frame.loc[frame["variant_id"] != "", "variant_id"])
        return extras


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().items()}


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- the page ------------------------------------------------------------------------------


def _url(rel: str) -> str | None:
    """A percent-encoded relative URL for a manifest path (``None`` if unsafe)."""
    if asset_path(Path("."), rel) is None:
        return None
    return quote(rel, safe="/")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _parse_json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) and text else text
    except ValueError:
        return text


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _pct(value: Any, *, signed: bool = False, digits: int = 1) -> str:
    number = _number(value)
    if number is None:
        return "—"
    return f"{number * 100:+.{digits}f}%" if signed else f"{number * 100:.{digits}f}%"


def _count(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{int(number):,}"


def _size(value: Any) -> str:
    number = _number(value)
    if number is None:
        return ""
    if number < 1024:
        return f"{int(number)} B"
    return f"{number / 1024:.0f} KB" if number < 1024**2 else f"{number / 1024**2:.1f} MB"


def _segment_label(segment: Any) -> list[tuple[str, str]]:
    values = _parse_json(segment)
    if isinstance(values, dict):
        return [(str(k), str(v)) for k, v in values.items()]
    return [("segment", str(values))] if values else []


def _verdict_class(verdict: Any) -> str:
    text = str(verdict)
    return text if text in VERDICTS else "other"


class _Page:
    """The page's data as plain values; :data:`TEMPLATE` renders it, escaping every one."""

    def __init__(self, out_dir: Path, manifest: pd.DataFrame, analysis: pd.DataFrame | None,
                 extras: _Extras, thumbs: list[Thumb], title: str | None,
                 decisions: Decisions) -> None:
        self.out_dir, self.manifest, self.analysis = out_dir, manifest, analysis
        self.extras, self.thumbs, self.decisions = extras, thumbs, decisions
        self.contents, self.reviewable = content_hashes(manifest), reviewable(manifest)
        campaigns = [c for c in manifest["campaign"].unique() if c]
        self.campaign = ", ".join(map(str, campaigns)) or out_dir.name
        self.title = title or f"{self.campaign} · review sheet"
        self.nonce = secrets.token_urlsafe(16)
        self.placements = list(dict.fromkeys(manifest["placement"].astype(str)))

    def render(self, reviewing: Reviewing | None) -> str:
        segments = list(dict.fromkeys(self.manifest["segment_id"].astype(str)))
        return _ENV.get_template(TEMPLATE).render(
            title=self.title, nonce=self.nonce, facts=self._facts(segments), notes=self._notes(),
            segment_options=self._segment_options(segments), placements=self.placements,
            sorts=[(key, label) for key, (label, _) in _SORTS.items()],
            worst={key: end for key, (_, end) in _SORTS.items()},
            asset_count=len(self.manifest), analysis=self._analysis(),
            segments=[self._segment(seg) for seg in segments], reviewing=reviewing,
            review=reviewing is not None or len(self.decisions) > 0,
            review_counts=self.decisions.counts(self.reviewable),
            decision_labels=DECISION_LABELS)

    # header and filters

    def _facts(self, segments: list[str]) -> str:
        m = self.manifest
        facts = [f"{len(segments)} segment{'s' * (len(segments) != 1)}",
                 f"{m['variant_id'].nunique()} variants", f"{len(m)} assets",
                 f"{len(self.placements)} placements"]
        if self.extras.per_segment is not None:
            facts.append(f"{sum(self.extras.per_segment.values()):,} customers")
        stamp = self.extras.finished_at or datetime.now(tz=UTC).isoformat(timespec="seconds")
        return " · ".join([*facts, f"run {stamp}"])

    def _notes(self) -> list[str]:
        problems = sum(1 for t, path in zip(self.thumbs, self.manifest["path"], strict=True)
                       if t.problem and str(path))
        notes = [f"{problems} asset{'s' * (problems != 1)} could not be shown (see the cards "
                 "marked in red)"] if problems else []
        return notes + list(self.extras.warnings)

    def _segment_options(self, segments: list[str]) -> list[tuple[str, str]]:
        labels: dict[str, str] = {}
        for seg, value in zip(self.manifest["segment_id"], self.manifest["segment"], strict=True):
            pairs = _segment_label(value)
            labels.setdefault(str(seg), ", ".join(f"{k}: {v}" for k, v in pairs) or str(seg))
        return [(s, labels[s]) for s in segments]

    # analysis

    def _analysis(self) -> dict[str, Any] | None:
        if self.analysis is None:
            return None
        return {"plot": self.extras.has_plot,
                "rows": [self._analysis_row(r) for r in _records(self.analysis)]}

    def _analysis_row(self, row: dict[str, Any]) -> dict[str, Any]:
        scope = str(row.get("scope", OVERALL))
        p = _number(row.get("p_adjusted", row.get("p_value")))
        cells = [
            "overall" if scope == OVERALL else scope, row["variant_id"],
            _count(row.get("users")), _count(row.get("conversions")),
            _pct(row.get("rate"), digits=2), _pct(row.get("uplift"), signed=True),
            self._interval(row), "—" if p is None else f"{p:.3g}",
            _pct(row.get("chance_to_win")),
        ]
        return {"scope": scope, "cells": cells, "verdict": _verdict(row["verdict"])}

    @staticmethod
    def _interval(row: dict[str, Any]) -> str:
        low, high = row.get("ci_low"), row.get("ci_high")
        if _number(low) is None or _number(high) is None:
            return "—"
        return f"[{_pct(low, signed=True)}, {_pct(high, signed=True)}]"

    def _metrics_for(self, variant_id: str, segment_id: str) -> dict[str, Any] | None:
        if self.analysis is None:
            return None
        frame = self.analysis
        hit = frame[(frame["variant_id"] == variant_id) & (frame["scope"] == segment_id)]
        if hit.empty:
            hit = frame[(frame["variant_id"] == variant_id) & (frame["scope"] == OVERALL)]
        return _records(hit)[0] if not hit.empty else None

    # segments and variants

    def _segment(self, segment_id: str) -> dict[str, Any]:
        rows = self.manifest[self.manifest["segment_id"].astype(str) == segment_id]
        people = (self.extras.per_segment or {}).get(segment_id)
        meta = [f"{rows['variant_id'].nunique()} variants"]
        if people is not None:
            meta.insert(0, f"{people:,} customers")
        creatives = [{"id": str(creative),
                      "variants": [self._variant(v) for _, v in group.groupby("variant_id",
                                                                              sort=False)]}
                     for creative, group in rows.groupby("creative_id", sort=False)]
        return {"id": segment_id, "chips": _segment_label(rows["segment"].iloc[0]),
                "meta": " · ".join(meta), "creatives": creatives}

    def _variant(self, rows: pd.DataFrame) -> dict[str, Any]:
        first = _records(rows.iloc[:1])[0]
        variant_id, segment_id = str(first["variant_id"]), str(first["segment_id"])
        metrics = self._metrics_for(variant_id, segment_id)
        index = f"v{first['variant_index']}" if str(first["variant_index"]) != "" else variant_id
        model = " · ".join(str(x) for x in (first["renderer"], first["model"]) if x)
        assigned = (self.extras.per_variant or {}).get(variant_id)
        negative = first["negative_prompt"]
        return {
            "variant_id": variant_id, "index": index, "seed": first["seed"],
            "model": model or "—", "customers": None if assigned is None else f"{assigned:,}",
            "verdict": _verdict(metrics["verdict"]) if metrics else None,
            "quality": _Quality.of(first).view(), "captions": self._captions(first["captions"]),
            "prompt": first["prompt"], "negative": negative if negative else None,
            "metrics": self._metrics(metrics), "review": self._review(variant_id),
            "assets": [self._asset(int(i), row)
                       for i, row in zip(rows.index, _records(rows), strict=True)],
        }

    def _review(self, variant_id: str) -> dict[str, Any]:
        """The variant's decision: the one in force on its content, else pending (with what the
        last run noted, such as a render after a rejection)."""
        content = self.contents[variant_id]
        held = self.decisions.in_force(variant_id, content)
        last = self.decisions.latest.get(variant_id)
        note = last.note if held is None and last is not None and last.content == content else ""
        return {"content": content, **decision_view(held), "note": note,
                "reviewable": variant_id in self.reviewable}

    @staticmethod
    def _captions(captions: Any) -> list[tuple[str, Any]]:
        values = _parse_json(captions)
        pairs = values.items() if isinstance(values, dict) else [("caption", values)]
        return [(str(role), text) for role, text in pairs if text not in ("", None)]

    def _metrics(self, metrics: dict[str, Any] | None) -> dict[str, Any] | None:
        if not metrics:
            return None
        scope = str(metrics.get("scope", OVERALL))
        items = [("Users", _count(metrics.get("users"))),
                 ("Conversions", _count(metrics.get("conversions"))),
                 ("Rate", _pct(metrics.get("rate"), digits=2))]
        if _number(metrics.get("uplift")) is not None:
            p = _number(metrics.get("p_adjusted", metrics.get("p_value")))
            items += [("Uplift", _pct(metrics.get("uplift"), signed=True)),
                      ("Interval", self._interval(metrics)),
                      ("p-value", "—" if p is None else f"{p:.3g}"),
                      ("Chance to win", _pct(metrics.get("chance_to_win")))]
        return {"where": "overall" if scope == OVERALL else "in this segment", "items": items}

    def _asset(self, position: int, row: dict[str, Any]) -> dict[str, Any]:
        thumb = self.thumbs[position]
        url = _url(str(row["path"]))
        size = "×".join(str(row[k]) for k in ("width", "height") if str(row[k]))
        fmt = str(row["format"])
        problem = (thumb.problem or "invalid path") if thumb.problem or url is None else None
        return {
            "placement": row["placement"], "url": url, "thumb": thumb, "problem": problem,
            "video": is_video(row), "mime": _MIME.get(fmt.lower(), "video/mp4"),
            "details": f"{size} · {fmt.upper()} · {_size(row['bytes'])}",
            "hover": f"{row['placement']} {size}: {row['prompt']}",
            "checks": self._check_notes(row["checks"]),
        }

    @staticmethod
    def _check_notes(checks: Any) -> list[str]:
        values = _parse_json(checks)
        if not isinstance(values, dict):
            return []
        notes = []
        omitted = values.get("omitted")
        if omitted:
            names = omitted if isinstance(omitted, list) else [omitted]
            notes.append("omitted: " + ", ".join(map(str, names)))
        violations = values.get("violations")
        if isinstance(violations, list):
            notes += [str(v) for v in violations]
        return notes


def decision_view(held: Decision | None) -> dict[str, str]:
    """What a card says of a decision (None: pending): state, label, who and when, comment."""
    if held is None:
        return {"state": PENDING, "label": DECISION_LABELS[PENDING], "by": "", "comment": ""}
    return {"state": held.decision, "label": DECISION_LABELS[held.decision],
            "by": f"by {held.reviewer} · {held.when}", "comment": held.comment}


def _verdict(verdict: Any) -> dict[str, str]:
    """A verdict badge: its CSS class and its text."""
    return {"cls": _verdict_class(verdict), "text": str(verdict)}


_SORTS: dict[str, tuple[str, str]] = {
    "alignment": ("Prompt alignment, lowest first", "asc"),
    "unsafe": ("Safety score, highest first", "desc"),
    "text_area": ("Text in the scene, most first", "desc"),
    "sharpness": ("Sharpness, lowest first", "asc"),
    "contrast": ("Contrast, lowest first", "asc"),
    "retries": ("Seeds rejected, most first", "desc"),
}
"""Sort keys of the toolbar: the quality score, its label, and which end is worst."""

_SCORE_LABELS = {"alignment": "Alignment", "unsafe": "Safety", "text_area": "Text",
                 "sharpness": "Sharpness", "brightness": "Brightness", "contrast": "Contrast"}


@dataclass(frozen=True)
class _Quality:
    """A variant's quality record from the manifest: scores, seeds rejected, passed or not."""

    scores: dict[str, float]
    rejected: list[dict[str, Any]]
    state: str  # passed, retried, rejected or unchecked

    @classmethod
    def of(cls, row: dict[str, Any]) -> _Quality:
        record = _parse_json(row.get("quality"))
        record = record if isinstance(record, dict) else {}
        scores = {str(k): n for k, v in (record.get("scores") or {}).items()
                  if (n := _number(v)) is not None}
        rejected = [r for r in record.get("rejected") or [] if isinstance(r, dict)]
        if str(row.get("status", "ok")).startswith("failed"):
            state = "rejected"
        elif rejected:
            state = "retried"
        else:
            state = "passed" if scores else "unchecked"
        return cls(scores, rejected, state)

    def view(self) -> dict[str, Any]:
        """What the card shows: state, badge text, ``data-q-*`` sort keys, scores, rejections."""
        values = {**self.scores, "retries": float(len(self.rejected))}
        count = len(self.rejected)
        badge = {"rejected": "rejected",
                 "retried": f"retried · {count} seed{'s' * (count != 1)} rejected"}
        return {
            "state": self.state, "badge": badge.get(self.state),
            "attributes": {f"q-{key.replace('_', '-')}": f"{values[key]:.6g}"
                           for key in _SORTS if key in values},
            "scores": [(label, self._format(key, self.scores[key]))
                       for key, label in _SCORE_LABELS.items() if key in self.scores],
            "rejected": [(str(r.get("seed")), ", ".join(map(str, r.get("reasons") or [])))
                         for r in self.rejected],
        }

    @staticmethod
    def _format(key: str, value: float) -> str:
        if key == "text_area":
            return f"{value:.2%}"
        if key == "sharpness":
            return f"{value:.4f}"
        return f"{value:.3f}"
