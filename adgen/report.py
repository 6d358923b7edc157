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

Everything from the manifest is customer data: it is HTML-escaped, URLs are percent-encoded
relative paths, and a Content-Security-Policy with a per-page nonce blocks any script the page
did not write. Thumbnail names come from the asset's hash, never from its values.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import math
import os
import re
import secrets
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import pandas as pd
from PIL import Image, ImageOps

from adgen.errors import AssetError, ResultsError
from adgen.lock import output_lock
from adgen.storage import OutputStore, is_url, lock_folder, open_output
from adgen.store import atomic_write_bytes, atomic_write_text, read_safe_csv, unguard

REPORT_NAME = "review.html"
THUMBS_DIR = "thumbs"
VIDEO_FORMATS = frozenset({"mp4", "mov", "webm", "m4v"})
VERDICTS = ("winner", "loser", "inconclusive", "control")
OVERALL = "all"
REQUIRED_COLUMNS = ("variant_id", "segment_id", "creative_id", "placement", "path")
_THUMB_NAME = re.compile(r"^[0-9a-f]{20}-\d+(?:-poster)?\.webp$")
_HEX = re.compile(r"^[0-9a-f]{20,}$")
_MIME = {"mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}


def write_report(out_dir: str | Path, *, title: str | None = None,
                 thumb_size: int = 320) -> Path:
    """Write ``out_dir/review.html`` (and missing thumbnails under ``out_dir/thumbs/``) and
    return its path (for an object-store URL: the page in its local mirror, also uploaded).
    ``thumb_size`` is the longest side of a thumbnail in pixels. Holds the output's lock
    (:func:`adgen.lock.output_lock`)."""
    with output_lock(lock_folder(out_dir), "report", create=False):
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
        thumbs = _make_thumbs(folder, manifest, thumb_size, OutputStore(out_dir))
        # 3. the page, written atomically
        page = _Page(folder, manifest, analysis, extras, thumbs, title).render()
        atomic_write_text(folder / REPORT_NAME, page)
    return Path(out_dir) / REPORT_NAME if not is_url(out_dir) else folder / REPORT_NAME


# --- reading -------------------------------------------------------------------------------


def read_manifest(out_dir: Path) -> pd.DataFrame:
    """The run's manifest (Parquet, else CSV) with every optional column filled."""
    parquet, csv = out_dir / "manifest.parquet", out_dir / "manifest.csv"
    try:
        if parquet.exists():
            frame = pd.read_parquet(parquet)
            where = parquet
        elif csv.exists():
            frame = read_safe_csv(csv)
            where = csv
        else:
            raise AssetError(
                f"{out_dir}: no manifest.parquet or manifest.csv, so there is nothing to review; "
                f"run `adgen run CAMPAIGN --out {out_dir}` first"
            )
    except (OSError, ValueError) as exc:
        raise AssetError(f"{out_dir}: cannot read the manifest ({exc}); run `adgen run` "
                         "again to rewrite it") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise AssetError(f"{where}: missing column(s) {', '.join(missing)}; this is not an "
                         "adgen manifest, or an old one: run `adgen run` again")
    defaults = {"campaign": "", "segment": "{}", "variant_index": "", "seed": "", "prompt": "",
                "negative_prompt": "", "captions": "{}", "renderer": "", "model": "",
                "width": "", "height": "", "format": "", "bytes": "", "sha256": "",
                "asset_key": "", "checks": "{}", "quality": "{}", "created_at": "",
                "status": "ok"}
    for column, value in defaults.items():
        if column not in frame.columns:
            frame[column] = value
    frame = frame.astype({c: "object" for c in frame.columns})
    return frame.where(frame.notna(), "").reset_index(drop=True)


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
    source = _asset_path(out_dir, str(row["path"]))
    if source is None:
        return _Thumb(problem="invalid path in the manifest")
    existing = _existing_thumb(out_dir, row, size)
    if existing is not None:
        return existing
    if not store.local:  # an object-store output: the asset is fetched to make its thumbnail
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / source.name
            with contextlib.suppress(FileNotFoundError):
                local.write_bytes(store.read_bytes(str(row["path"])))
            return _local_thumb(out_dir, row, size, local)
    return _local_thumb(out_dir, row, size, source)


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


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _url(rel: str) -> str | None:
    """An escaped, percent-encoded relative URL for a manifest path (``None`` if unsafe)."""
    if _asset_path(Path("."), rel) is None:
        return None
    return _e(quote(rel, safe="/"))


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
    """Renders the page; every value from the data goes through :func:`_e` or :func:`_url`."""

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
        body = "".join(self._segment(seg) for seg in segments) or (
            '<p class="empty">The manifest lists no assets.</p>')
        csp = ("default-src 'none'; img-src 'self' file: data:; media-src 'self' file:; "
               f"style-src 'nonce-{self.nonce}'; script-src 'nonce-{self.nonce}'; "
               "base-uri 'none'; form-action 'none'")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
            '<meta name="referrer" content="no-referrer">\n'
            f"<title>{_e(self.title)}</title>\n<style nonce=\"{self.nonce}\">{_CSS}</style>\n"
            "</head>\n<body>\n"
            f"{self._header(segments)}{self._toolbar(segments)}<main>"
            f"{self._analysis_section()}{body}</main>\n"
            "<footer>Made with adgen. The pictures on this page were generated with AI: "
            "review them before publishing.</footer>\n"
            f"<script nonce=\"{self.nonce}\">{_script()}</script>\n</body>\n</html>\n"
        )

    # header and filters

    def _header(self, segments: list[str]) -> str:
        m = self.manifest
        facts = [f"{len(segments)} segment{'s' * (len(segments) != 1)}",
                 f"{m['variant_id'].nunique()} variants", f"{len(m)} assets",
                 f"{len(self.placements)} placements"]
        if self.extras.per_segment is not None:
            facts.append(f"{sum(self.extras.per_segment.values()):,} customers")
        stamp = self.extras.finished_at or datetime.now(tz=UTC).isoformat(timespec="seconds")
        problems = sum(1 for t, path in zip(self.thumbs, self.manifest["path"], strict=True)
                       if t.problem and str(path))
        notes = [f"{problems} asset{'s' * (problems != 1)} could not be shown (see the cards "
                 "marked in red)"] if problems else []
        notes += list(self.extras.warnings)
        banner = "".join(f'<p class="warning">{_e(n)}</p>' for n in notes)
        return (
            f'<header class="top"><div><p class="eyebrow">adgen review sheet</p>'
            f"<h1>{_e(self.title)}</h1>"
            f'<p class="facts">{" · ".join(_e(f) for f in facts)} · run {_e(stamp)}</p></div>'
            f"{banner}</header>\n"
        )

    def _toolbar(self, segments: list[str]) -> str:
        labels: dict[str, str] = {}
        for seg, value in zip(self.manifest["segment_id"], self.manifest["segment"], strict=True):
            pairs = _segment_label(value)
            labels.setdefault(str(seg), ", ".join(f"{k}: {v}" for k, v in pairs) or str(seg))
        seg_options = "".join(f'<option value="{_e(s)}">{_e(labels[s])}</option>'
                              for s in segments)
        place_options = "".join(f'<option value="{_e(p)}">{_e(p)}</option>'
                                for p in self.placements)
        return (
            '<nav class="toolbar" aria-label="Filters">'
            '<label>Segment <select id="segment-filter"><option value="">All segments</option>'
            f"{seg_options}</select></label>"
            '<label>Placement <select id="placement-filter"><option value="">All placements'
            f"</option>{place_options}</select></label>"
            '<label>Quality <select id="quality-filter"><option value="">All variants</option>'
            '<option value="passed">Passed first time</option>'
            '<option value="retried">Retried</option>'
            '<option value="rejected">Rejected</option></select></label>'
            '<label>Sort <select id="quality-sort"><option value="">Plan order</option>'
            + "".join(f'<option value="{key}">{_e(label)}</option>'
                      for key, (label, _) in _SORTS.items())
            + "</select></label>"
            f'<span id="visible-count" class="count">{len(self.manifest)} assets</span></nav>\n'
        )

    # analysis

    def _analysis_section(self) -> str:
        if self.analysis is None:
            return ""
        plot = ('<img class="plot" src="analysis.png" alt="Uplift per variant with its '
                'confidence interval">' if self.extras.has_plot else "")
        rows = "".join(self._analysis_row(r) for r in _records(self.analysis))
        head = "".join(f"<th>{h}</th>" for h in (
            "Scope", "Variant", "Users", "Conversions", "Rate", "Uplift", "Interval",
            "p-value", "Chance to win", "Verdict"))
        return (
            '<section class="analysis" id="analysis"><h2>Experiment results</h2>'
            f'<div class="analysis-body">{plot}<div class="table-wrap"><table class="results">'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div></div></section>"
        )

    def _analysis_row(self, row: dict[str, Any]) -> str:
        scope = str(row.get("scope", OVERALL))
        p = _number(row.get("p_adjusted", row.get("p_value")))
        cells = [
            "overall" if scope == OVERALL else scope, row["variant_id"],
            _count(row.get("users")), _count(row.get("conversions")),
            _pct(row.get("rate"), digits=2), _pct(row.get("uplift"), signed=True),
            self._interval(row), "—" if p is None else f"{p:.3g}",
            _pct(row.get("chance_to_win")),
        ]
        tds = "".join(f"<td>{_e(c)}</td>" for c in cells)
        return (f'<tr data-segment="{_e(scope)}">{tds}<td>{self._badge(row["verdict"])}</td>'
                "</tr>")

    @staticmethod
    def _interval(row: dict[str, Any]) -> str:
        low, high = row.get("ci_low"), row.get("ci_high")
        if _number(low) is None or _number(high) is None:
            return "—"
        return f"[{_pct(low, signed=True)}, {_pct(high, signed=True)}]"

    @staticmethod
    def _badge(verdict: Any) -> str:
        return f'<span class="badge {_verdict_class(verdict)}">{_e(verdict)}</span>'

    def _metrics_for(self, variant_id: str, segment_id: str) -> dict[str, Any] | None:
        if self.analysis is None:
            return None
        frame = self.analysis
        hit = frame[(frame["variant_id"] == variant_id) & (frame["scope"] == segment_id)]
        if hit.empty:
            hit = frame[(frame["variant_id"] == variant_id) & (frame["scope"] == OVERALL)]
        return _records(hit)[0] if not hit.empty else None

    # segments and variants

    def _segment(self, segment_id: str) -> str:
        rows = self.manifest[self.manifest["segment_id"].astype(str) == segment_id]
        chips = "".join(f'<li><span class="key">{_e(k)}</span> {_e(v)}</li>'
                        for k, v in _segment_label(rows["segment"].iloc[0]))
        people = (self.extras.per_segment or {}).get(segment_id)
        meta = [f"{rows['variant_id'].nunique()} variants"]
        if people is not None:
            meta.insert(0, f"{people:,} customers")
        creatives = "".join(
            self._creative(str(creative), group)
            for creative, group in rows.groupby("creative_id", sort=False))
        return (
            f'<section class="segment" data-segment="{_e(segment_id)}">'
            f'<header class="segment-head"><h2>Segment <code>{_e(segment_id)}</code></h2>'
            f'<ul class="chips">{chips}</ul><p class="meta">{_e(" · ".join(meta))}</p></header>'
            f"{creatives}</section>\n"
        )

    def _creative(self, creative_id: str, rows: pd.DataFrame) -> str:
        cards = "".join(self._variant(group) for _, group in rows.groupby("variant_id",
                                                                           sort=False))
        return (f'<div class="creative"><h3>Creative <code>{_e(creative_id)}</code></h3>'
                f"{cards}</div>")

    def _variant(self, rows: pd.DataFrame) -> str:
        first = _records(rows.iloc[:1])[0]
        variant_id, segment_id = str(first["variant_id"]), str(first["segment_id"])
        metrics = self._metrics_for(variant_id, segment_id)
        verdict = _verdict_class(metrics["verdict"]) if metrics else "none"
        badge = self._badge(metrics["verdict"]) if metrics else ""
        index = f"v{first['variant_index']}" if str(first["variant_index"]) != "" else variant_id
        model = " · ".join(str(x) for x in (first["renderer"], first["model"]) if x)
        facts = [("Variant", f"<code>{_e(variant_id)}</code>"), ("Seed", _e(first["seed"])),
                 ("Model", _e(model or "—"))]
        assigned = (self.extras.per_variant or {}).get(variant_id)
        if assigned is not None:
            facts.append(("Customers", f"{assigned:,}"))
        dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
        figures = "".join(self._asset(int(i), row)
                          for i, row in zip(rows.index, _records(rows), strict=True))
        quality = _Quality.of(first)
        return (
            f'<article class="variant verdict-{verdict}" '
            f'data-variant="{_e(variant_id)}" data-quality="{quality.state}"'
            f"{quality.data_attributes()}>"
            f'<div class="info"><div class="title"><h4>{_e(index)}</h4>{badge}'
            f"{quality.badge()}</div>"
            f"{self._captions(first['captions'])}"
            f'<dl class="facts">{dl}</dl>'
            f"{self._prompt(first['prompt'], first['negative_prompt'])}"
            f"{quality.panel()}{self._metrics(metrics)}</div>"
            f'<div class="placements">{figures}</div></article>'
        )

    @staticmethod
    def _captions(captions: Any) -> str:
        values = _parse_json(captions)
        pairs = values.items() if isinstance(values, dict) else [("caption", values)]
        lines = "".join(f'<p><span class="role">{_e(role)}</span>{_e(text)}</p>'
                        for role, text in pairs if text not in ("", None))
        return f'<div class="captions">{lines}</div>' if lines else ""

    @staticmethod
    def _prompt(prompt: Any, negative: Any) -> str:
        neg = f'<p class="negative"><b>Negative:</b> {_e(negative)}</p>' if negative else ""
        return f'<div class="prompt"><p>{_e(prompt)}</p>{neg}</div>'

    def _metrics(self, metrics: dict[str, Any] | None) -> str:
        if not metrics:
            return ""
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
        cells = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in items)
        where = "overall" if scope == OVERALL else "in this segment"
        return f'<dl class="metrics" title="Results {where}">{cells}</dl>'

    def _asset(self, position: int, row: dict[str, Any]) -> str:
        thumb = self.thumbs[position]
        url = _url(str(row["path"]))
        size = "×".join(str(row[k]) for k in ("width", "height") if str(row[k]))
        fmt = str(row["format"]).upper()
        caption = (f"<b>{_e(row['placement'])}</b><span>{_e(size)} · {_e(fmt)} · "
                   f"{_e(_size(row['bytes']))}</span>")
        warning = self._check_warning(row["checks"])
        hover = _e(f"{row['placement']} {size}: {row['prompt']}")
        if thumb.problem or url is None:
            media = f'<div class="missing">{_e(thumb.problem or "invalid path")}</div>'
        elif _is_video(row):
            mime = _MIME.get(str(row["format"]).lower(), "video/mp4")
            poster = (f' poster="{_e(thumb.src)}" width="{thumb.width}" '
                      f'height="{thumb.height}"') if thumb.src else ""
            media = (f'<video muted loop playsinline controls preload="metadata"{poster} '
                     f'title="{hover}"><source src="{url}" type="{mime}"></video>')
        else:
            media = (f'<a href="{url}" target="_blank" rel="noopener"><img src="{_e(thumb.src)}" '
                     f'width="{thumb.width}" height="{thumb.height}" loading="lazy" '
                     f'decoding="async" alt="{_e(row["placement"])} ad" title="{hover}"></a>')
        return (f'<figure class="asset" data-placement="{_e(row["placement"])}">'
                f'<div class="frame">{media}</div><figcaption>{caption}{warning}</figcaption>'
                "</figure>")

    @staticmethod
    def _check_warning(checks: Any) -> str:
        values = _parse_json(checks)
        if not isinstance(values, dict):
            return ""
        notes = []
        omitted = values.get("omitted")
        if omitted:
            names = omitted if isinstance(omitted, list) else [omitted]
            notes.append("omitted: " + ", ".join(map(str, names)))
        violations = values.get("violations")
        if isinstance(violations, list):
            notes += [str(v) for v in violations]
        return "".join(f'<span class="check">{_e(note)}</span>' for note in notes)


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

    def data_attributes(self) -> str:
        values = {**self.scores, "retries": float(len(self.rejected))}
        return "".join(f' data-q-{key.replace("_", "-")}="{values[key]:.6g}"'
                       for key in _SORTS if key in values)

    def badge(self) -> str:
        if self.state == "rejected":
            return '<span class="badge rejected">rejected</span>'
        if self.state == "retried":
            count = len(self.rejected)
            return (f'<span class="badge retried">retried · {count} seed'
                    f'{"s" * (count != 1)} rejected</span>')
        return ""

    def panel(self) -> str:
        if self.state == "unchecked":
            return ""
        cells = "".join(
            f"<div><dt>{_e(label)}</dt><dd>{_e(self._format(key, self.scores[key]))}</dd></div>"
            for key, label in _SCORE_LABELS.items() if key in self.scores)
        seeds = "".join(
            f"<li><code>{_e(r.get('seed'))}</code> "
            f"{_e(', '.join(map(str, r.get('reasons') or [])))}</li>" for r in self.rejected)
        rejected = (f'<div class="rejections"><b>Seeds rejected</b><ul>{seeds}</ul></div>'
                    if seeds else "")
        return f'<div class="quality"><dl class="scores">{cells}</dl>{rejected}</div>'

    @staticmethod
    def _format(key: str, value: float) -> str:
        if key == "text_area":
            return f"{value:.2%}"
        if key == "sharpness":
            return f"{value:.4f}"
        return f"{value:.3f}"


_CSS = """
:root{--bg:#f5f6f8;--card:#fff;--ink:#1f2328;--muted:#656d76;--line:#e3e6ea;--accent:#2f5bd3;
--win:#137333;--win-bg:#e6f4ea;--lose:#b3261e;--lose-bg:#fce8e6;--ctl:#1d4ed8;--ctl-bg:#e8efff;
--gray-bg:#eef0f3;color-scheme:light}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:var(--ink);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--gray-bg);
padding:1px 5px;border-radius:4px}
header.top{padding:28px clamp(16px,4vw,48px) 16px;background:var(--card);
border-bottom:1px solid var(--line)}
.eyebrow{margin:0;color:var(--accent);font-weight:600;font-size:12px;letter-spacing:.08em;
text-transform:uppercase}
h1{margin:4px 0 6px;font-size:clamp(22px,3vw,30px);line-height:1.2}
.facts{margin:0;color:var(--muted)}
.warning{margin:12px 0 0;padding:8px 12px;border-radius:8px;background:var(--lose-bg);
color:var(--lose);font-weight:500}
.toolbar{position:sticky;top:0;z-index:10;display:flex;flex-wrap:wrap;gap:12px 20px;
align-items:center;padding:10px clamp(16px,4vw,48px);background:rgba(255,255,255,.92);
backdrop-filter:blur(6px);border-bottom:1px solid var(--line)}
.toolbar label{display:flex;gap:8px;align-items:center;font-weight:600;font-size:13px}
.toolbar select{font:inherit;font-weight:400;padding:5px 8px;border:1px solid var(--line);
border-radius:8px;background:#fff;max-width:60vw}
.count{margin-left:auto;color:var(--muted);font-size:13px}
main{padding:8px clamp(16px,4vw,48px) 32px}
section.segment,section.analysis{margin:24px 0 8px}
.segment-head{display:flex;flex-wrap:wrap;align-items:center;gap:8px 16px;margin-bottom:8px}
.segment-head h2,.analysis h2{margin:0;font-size:20px}
.chips{display:flex;flex-wrap:wrap;gap:6px;margin:0;padding:0;list-style:none}
.chips li{background:var(--card);border:1px solid var(--line);border-radius:999px;
padding:2px 10px;font-size:13px}
.chips .key{color:var(--muted)}
.meta{margin:0 0 0 auto;color:var(--muted);font-size:13px}
.creative h3{margin:14px 0 10px;font-size:14px;color:var(--muted);font-weight:600}
article.variant{display:grid;grid-template-columns:minmax(240px,320px) 1fr;gap:20px;
background:var(--card);border:1px solid var(--line);border-radius:14px;padding:18px;
margin-bottom:16px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
article.verdict-winner{border-color:#9bd3ae;box-shadow:0 0 0 2px var(--win-bg)}
article.verdict-loser{border-color:#f0b3ad}
.title{display:flex;align-items:center;gap:10px}
.title h4{margin:0;font-size:18px}
.captions p{margin:6px 0;font-size:15px;font-weight:500}
.role{display:inline-block;min-width:64px;margin-right:8px;color:var(--muted);font-size:11px;
font-weight:600;text-transform:uppercase;letter-spacing:.05em}
dl.facts{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;margin:10px 0;font-size:13px}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.prompt{font-size:13px;color:#3d444d;background:var(--gray-bg);border-radius:8px;
padding:8px 10px}
.prompt p{margin:0}
.prompt .negative{margin-top:6px;color:var(--muted)}
dl.metrics{display:grid;grid-template-columns:repeat(auto-fill,minmax(92px,1fr));gap:8px;
margin:12px 0 0}
dl.metrics div{background:var(--gray-bg);border-radius:8px;padding:6px 8px}
dl.metrics dt{color:var(--muted);font-size:11px}
dl.metrics dd{margin:0;font-weight:600;font-size:14px}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:700;
text-transform:uppercase;letter-spacing:.04em;background:var(--gray-bg);color:var(--muted)}
.badge.winner{background:var(--win-bg);color:var(--win)}
.badge.loser{background:var(--lose-bg);color:var(--lose)}
.badge.control{background:var(--ctl-bg);color:var(--ctl)}
.placements{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-end}
figure.asset{margin:0;display:flex;flex-direction:column;gap:6px;max-width:280px}
.frame{display:flex;align-items:flex-end;justify-content:flex-start;min-height:60px}
.frame img,.frame video{display:block;max-width:100%;max-height:220px;width:auto;height:auto;
border-radius:6px;box-shadow:0 0 0 1px var(--line);
background:repeating-conic-gradient(#eceef1 0 25%,#fff 0 50%) 0 0/16px 16px}
.frame a{display:block;line-height:0}
.missing{padding:24px 16px;color:var(--lose);background:var(--lose-bg);font-size:13px;
min-width:160px;text-align:center;align-self:stretch}
figcaption{display:flex;flex-wrap:wrap;gap:2px 8px;font-size:12px;color:var(--muted)}
figcaption b{color:var(--ink)}
.check{color:var(--lose)}
.badge.rejected{background:var(--lose-bg);color:var(--lose)}
.badge.retried{background:#fff4e0;color:#8a5300}
article[data-quality="rejected"]{border-color:#f0b3ad;background:#fffafa}
.quality{margin-top:10px;font-size:12px}
dl.scores{display:grid;grid-template-columns:repeat(auto-fill,minmax(78px,1fr));gap:6px;margin:0}
dl.scores div{background:var(--gray-bg);border-radius:8px;padding:4px 8px}
dl.scores dt{color:var(--muted);font-size:11px}
dl.scores dd{margin:0;font-weight:600}
.rejections{margin-top:8px;color:#8a5300}
.rejections ul{margin:4px 0 0;padding-left:18px}
.analysis-body{display:grid;grid-template-columns:minmax(0,1fr);gap:16px;margin-top:12px}
img.plot{max-width:min(100%,760px);height:auto;background:#fff;border:1px solid var(--line);
border-radius:12px}
.table-wrap{overflow-x:auto;background:var(--card);border:1px solid var(--line);
border-radius:12px}
table.results{border-collapse:collapse;width:100%;font-size:13px}
table.results th,table.results td{padding:7px 10px;text-align:left;
border-bottom:1px solid var(--line);white-space:nowrap}
table.results th{color:var(--muted);font-weight:600;background:#fafbfc}
.empty{color:var(--muted)}
footer{padding:24px clamp(16px,4vw,48px);color:var(--muted);font-size:12px}
@media (max-width:760px){article.variant{grid-template-columns:1fr}
figure.asset{max-width:100%}.meta{margin-left:0}}
"""

_JS = """
(() => {
  const segment = document.getElementById('segment-filter');
  const placement = document.getElementById('placement-filter');
  const count = document.getElementById('visible-count');
  const figures = Array.from(document.querySelectorAll('figure.asset'));
  const apply = () => {
    const s = segment.value, p = placement.value;
    document.querySelectorAll('section.segment').forEach((el) => {
      el.hidden = s !== '' && el.dataset.segment !== s;
    });
    document.querySelectorAll('article.variant').forEach((card) => {
      const any = Array.from(card.querySelectorAll('figure.asset'))
        .some((fig) => p === '' || fig.dataset.placement === p);
      card.hidden = !any;
    });
    figures.forEach((fig) => { fig.hidden = p !== '' && fig.dataset.placement !== p; });
    document.querySelectorAll('tr[data-segment]').forEach((row) => {
      row.hidden = s !== '' && row.dataset.segment !== s && row.dataset.segment !== 'all';
    });
    const shown = figures.filter((fig) => !fig.hidden && !fig.closest('[hidden]')).length;
    count.textContent = shown === figures.length
      ? figures.length + ' assets' : shown + ' of ' + figures.length + ' assets';
  };
  const quality = document.getElementById('quality-filter');
  const sort = document.getElementById('quality-sort');
  const worst = {SORTS};
  const original = new Map();
  document.querySelectorAll('article.variant').forEach((card, i) => original.set(card, i));
  const order = () => {
    const key = sort.value;
    const camel = key.replace(/_([a-z])/g, (m, c) => c.toUpperCase());
    const attr = 'q' + camel.charAt(0).toUpperCase() + camel.slice(1);
    document.querySelectorAll('div.creative').forEach((group) => {
      const cards = Array.from(group.querySelectorAll(':scope > article.variant'));
      const value = (card) => {
        const v = parseFloat(card.dataset[attr]);
        if (Number.isNaN(v)) return Infinity;
        return worst[key] === 'desc' ? -v : v;
      };
      cards.sort((a, b) => key === '' ? original.get(a) - original.get(b)
        : (value(a) - value(b)) || (original.get(a) - original.get(b)));
      cards.forEach((card) => group.appendChild(card));
    });
  };
  const filterQuality = () => {
    const q = quality.value;
    document.querySelectorAll('article.variant').forEach((card) => {
      if (q !== '' && card.dataset.quality !== q) card.hidden = true;
    });
  };
  const update = () => { apply(); filterQuality(); order(); recount(); };
  const recount = () => {
    const shown = figures.filter((fig) => !fig.hidden && !fig.closest('[hidden]')).length;
    count.textContent = shown === figures.length
      ? figures.length + ' assets' : shown + ' of ' + figures.length + ' assets';
  };
  segment.addEventListener('change', update);
  placement.addEventListener('change', update);
  quality.addEventListener('change', update);
  sort.addEventListener('change', update);
  update();
})();
"""


def _script() -> str:
    worst = json.dumps({key: end for key, (_, end) in _SORTS.items()})
    return _JS.replace("{SORTS}", worst)
