"""The HTML review sheet: every asset of a run on one self-contained page.

:func:`write_report` reads an output folder (``manifest.parquet``, and when present
``run.json``, ``assignments.csv``, ``analysis.csv``/``analysis.json``/``analysis.png``) and writes
``review.html`` next to it, with small thumbnails under ``thumbs/``. The page has inline CSS and
JS only (no CDN, no server) and links assets by relative paths, so it works opened from the
folder or from an unpacked zip.

Layout: one section per segment, one card per variant (creative × index) with its captions,
prompt, seed and model beside a strip of its placements; videos play inline. After
``adgen analyze``, each card carries its metrics and a winner/loser badge and the page shows the
analysis plot and table. Filters by segment and by placement are plain JS over ``data-``
attributes, so no manifest value ever reaches a script.

The page is the Jinja template ``review.html.j2`` next to this module, with autoescaping on;
this module only works out the plain values it shows. Everything from the manifest is customer
data: the template HTML-escapes it, URLs are percent-encoded relative paths, and a
Content-Security-Policy with a per-page nonce blocks any script the page did not write.
Thumbnail names come from the asset's hash, never from its values.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, FileSystemLoader
from PIL import Image, ImageOps

from adgen.errors import AssetError, ResultsError
from adgen.manifest import read_manifest
from adgen.output.files import atomic_write_bytes, atomic_write_text, unguard
from adgen.output.lock import output_lock
from adgen.output.mirror import open_output
from adgen.output.store import OutputStore, is_url, open_store

REPORT_NAME = "review.html"
THUMBS_DIR = "thumbs"
VIDEO_FORMATS = frozenset({"mp4", "mov", "webm", "m4v"})
VERDICTS = ("winner", "loser", "inconclusive", "control")
OVERALL = "all"
_THUMB_NAME = re.compile(r"^[0-9a-f]{20}-\d+(?:-poster)?\.webp$")
_HEX = re.compile(r"^[0-9a-f]{20,}$")
TEMPLATE = "review.html.j2"
_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=True,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_MIME = {"mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}


def write_report(out_dir: str | Path, *, title: str | None = None,
                 thumb_size: int = 320) -> Path:
    """Write ``out_dir/review.html`` (and missing thumbnails under ``out_dir/thumbs/``) and
    return its path (for an object-store URL: the page in its local mirror, also uploaded).
    ``thumb_size`` is the longest side of a thumbnail in pixels. Holds the output's lock
    (:func:`adgen.output.lock.output_lock`)."""
    with output_lock(out_dir, "report", create=False):
        return _write_report(out_dir, title, thumb_size)


def _write_report(out_dir: str | Path, title: str | None, thumb_size: int) -> Path:
    if thumb_size < 16:
        raise AssetError(f"thumb_size {thumb_size} is too small: use at least 16 pixels")
    with open_output(out_dir) as folder:
        # 1. read what the run (and the analysis, if any) wrote
        manifest = read_manifest(folder)
        analysis = _read_analysis(folder)
        extras = _Extras.load(folder)
        # 2. thumbnails and video posters, made only when missing
        thumbs = _make_thumbs(folder, manifest, thumb_size, open_store(out_dir))
        # 3. the page, written atomically
        page = _Page(folder, manifest, analysis, extras, thumbs, title).render()
        atomic_write_text(folder / REPORT_NAME, page)
    return Path(out_dir) / REPORT_NAME if not is_url(out_dir) else folder / REPORT_NAME


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


# --- thumbnails ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Thumb:
    """A thumbnail (or a video's poster) relative to the output folder, or why there is none."""

    src: str | None = None
    width: int = 0
    height: int = 0
    problem: str | None = None


def _ident(row: dict[str, Any]) -> str:
    """A filename-safe id of the asset: its sha256, else asset key, else a hash of its path."""
    for column in ("sha256", "asset_key"):
        value = str(row.get(column, "")).lower()
        if _HEX.match(value):
            return value[:20]
    return hashlib.sha256(str(row["path"]).encode()).hexdigest()[:20]


def _is_video(row: dict[str, Any]) -> bool:
    fmt = str(row.get("format", "")).lower() or PurePosixPath(str(row["path"])).suffix[1:].lower()
    return fmt in VIDEO_FORMATS


def _asset_path(out_dir: Path, rel: str) -> Path | None:
    """The asset's file, or ``None`` when the manifest path leaves the output folder."""
    posix = PurePosixPath(rel)
    if not rel or posix.is_absolute() or ".." in posix.parts or "\\" in rel or ":" in rel:
        return None
    return out_dir.joinpath(*posix.parts)


def _make_thumbs(out_dir: Path, manifest: pd.DataFrame, size: int,
                 store: OutputStore) -> list[_Thumb]:
    rows = _records(manifest)
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        thumbs = list(pool.map(lambda row: _thumb(out_dir, row, size, store), rows))
    _prune_thumbs(out_dir / THUMBS_DIR, {t.src.rsplit("/", 1)[1] for t in thumbs if t.src})
    return thumbs


def _thumb(out_dir: Path, row: dict[str, Any], size: int, store: OutputStore) -> _Thumb:
    status = str(row.get("status") or "ok")
    if status != "ok":  # failed or blocked: no file, the card says why
        return _Thumb(problem=status)
    if _asset_path(out_dir, str(row["path"])) is None:
        return _Thumb(problem="invalid path in the manifest")
    existing = _existing_thumb(out_dir, row, size)
    if existing is not None:
        return existing
    with store.local_copy(str(row["path"])) as local:  # an object is fetched to a temp file
        return _local_thumb(out_dir, row, size, local)


def _thumb_name(row: dict[str, Any], size: int) -> str:
    return f"{_ident(row)}-{size}{'-poster' if _is_video(row) else ''}.webp"


def _existing_thumb(out_dir: Path, row: dict[str, Any], size: int) -> _Thumb | None:
    name = _thumb_name(row, size)
    target = out_dir / THUMBS_DIR / name
    if target.exists():
        try:
            with Image.open(target) as image:
                return _Thumb(f"{THUMBS_DIR}/{name}", *image.size)
        except (OSError, SyntaxError):
            pass  # a damaged thumbnail is made again
    return None


def _local_thumb(out_dir: Path, row: dict[str, Any], size: int, source: Path) -> _Thumb:
    video = _is_video(row)
    name = _thumb_name(row, size)
    target = out_dir / THUMBS_DIR / name
    if not source.is_file():
        return _Thumb(problem="file missing: run `adgen run` again")
    try:
        picture = _video_frame(source) if video else _open_image(source)
    except Exception as exc:  # a corrupt file must not stop the review of the others
        # a video the browser may still play is shown without a poster
        return _Thumb() if video else _Thumb(problem=f"cannot read: {type(exc).__name__}")
    picture = _fit(picture, size)
    atomic_write_bytes(target, _encode_thumb(picture))
    return _Thumb(f"{THUMBS_DIR}/{name}", *picture.size)


def _open_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.draft("RGB", (1024, 1024))  # JPEG: decode at a reduced scale
        return ImageOps.exif_transpose(image).copy()


def _video_frame(path: Path) -> Image.Image:
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(frames)
        frame = next(frames)
    finally:
        frames.close()
    return Image.frombytes("RGB", meta["size"], frame)


def _fit(picture: Image.Image, size: int) -> Image.Image:
    """The picture scaled down so that its longest side is at most ``size``."""
    has_alpha = picture.mode in ("RGBA", "LA") or "transparency" in picture.info
    picture = picture.convert("RGBA" if has_alpha else "RGB")
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    return picture


def _encode_thumb(picture: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    picture.save(buffer, "WEBP", quality=80, method=4)
    return buffer.getvalue()


def _prune_thumbs(folder: Path, keep: set[str]) -> None:
    """Delete thumbnails of assets the manifest no longer lists (only files adgen names)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and _THUMB_NAME.match(path.name) and path.name not in keep:
            path.unlink()


# --- the page ------------------------------------------------------------------------------


def _url(rel: str) -> str | None:
    """A percent-encoded relative URL for a manifest path (``None`` if unsafe)."""
    if _asset_path(Path("."), rel) is None:
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
                 extras: _Extras, thumbs: list[_Thumb], title: str | None) -> None:
        self.out_dir, self.manifest, self.analysis = out_dir, manifest, analysis
        self.extras, self.thumbs = extras, thumbs
        campaigns = [c for c in manifest["campaign"].unique() if c]
        self.campaign = ", ".join(map(str, campaigns)) or out_dir.name
        self.title = title or f"{self.campaign} · review sheet"
        self.nonce = secrets.token_urlsafe(16)
        self.placements = list(dict.fromkeys(manifest["placement"].astype(str)))

    def render(self) -> str:
        segments = list(dict.fromkeys(self.manifest["segment_id"].astype(str)))
        return _ENV.get_template(TEMPLATE).render(
            title=self.title, nonce=self.nonce, facts=self._facts(segments), notes=self._notes(),
            segment_options=self._segment_options(segments), placements=self.placements,
            sorts=[(key, label) for key, (label, _) in _SORTS.items()],
            worst={key: end for key, (_, end) in _SORTS.items()},
            asset_count=len(self.manifest), analysis=self._analysis(),
            segments=[self._segment(seg) for seg in segments])

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
            "metrics": self._metrics(metrics),
            "assets": [self._asset(int(i), row)
                       for i, row in zip(rows.index, _records(rows), strict=True)],
        }

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
            "video": _is_video(row), "mime": _MIME.get(fmt.lower(), "video/mp4"),
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
