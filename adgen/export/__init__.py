"""Publishing: upload files for ad platforms, made from a run's output folder.

``export(out, to=[...])`` reads the manifest (finished ads only: ``status == "ok"``) and the
assignment, and writes under ``<out>/exports/``:

- ``html5/<variant_id>/<placement>.zip``: animated HTML5 banners per variant × IAB size
  (:mod:`adgen.export.html5`);
- ``meta/``: an Ads Manager bulk-import sheet, Marketing API ``asset_feed_spec`` JSON per ad
  set, optional hashed customer lists (:mod:`adgen.export.meta`);
- ``google/``: a Google Ads Editor sheet of responsive display ads, optional Customer Match
  lists (:mod:`adgen.export.google`);
- ``csv/``: ``ads.csv`` and ``ads.json`` for any other platform (:mod:`adgen.export.generic`);
- ``export.json``: what each format wrote, the ads it left out and why, warnings, and per ad
  whether it is AI-generated, where it shows the visible label and its watermark payloads
  (:mod:`adgen.export.disclosure`).

Every ad is created paused; nothing is uploaded. Each format's files are replaced as a whole:
files an earlier export of that format wrote (listed in ``export.json``) and this one did not
are removed, and nothing else in the folder is touched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from adgen.audience.read import AudienceSource, read_audience
from adgen.errors import CampaignError
from adgen.export import html5
from adgen.export.base import ExportContext, Written
from adgen.export.disclosure import disclosures
from adgen.export.generic import write_generic
from adgen.export.google import write_google
from adgen.export.meta import write_meta
from adgen.export.source import EXPORTS_DIR, ExportSource
from adgen.output.files import atomic_write_bytes, atomic_write_text
from adgen.spec import CampaignSpec, ExportFormat, ExportSpec, validation_message

FORMATS: tuple[str, ...] = get_args(ExportFormat)
RECORD = "export.json"


@dataclass
class ExportResult:
    """What :func:`export` wrote: files by format (absolute paths), ads left out with the
    reason, and warnings, by format."""

    out: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)


WRITERS: dict[str, Callable[[ExportContext], Written]] = {
    "html5": html5.write_html5, "meta": write_meta, "google": write_google, "csv": write_generic,
}


def export(
    out: str | Path | CampaignSpec,
    *,
    to: str | Sequence[str] | None = None,
    campaign: CampaignSpec | None = None,
    audience: AudienceSource | None = None,
    url: str | None = None,
    audiences: bool | None = None,
) -> ExportResult:
    """Write upload files for the ``to`` formats (``meta``, ``google``, ``html5``, ``csv``;
    default: the campaign's ``export.to``) from an output folder, or from a campaign's.

    ``campaign`` supplies the export settings, the brand (banners) and the audience (customer
    lists; ``audience`` overrides its source); ``url`` and ``audiences`` override
    ``export.url`` and ``export.audiences``."""
    if isinstance(out, CampaignSpec):
        campaign, out_dir = out, out.output_dir
    else:
        out_dir = Path(out)
    # 1. settings and formats
    settings = campaign.export if campaign is not None else ExportSpec()
    changes: dict[str, Any] = {k: v for k, v in {"url": url, "audiences": audiences}.items()
                               if v is not None}
    if changes:
        try:
            settings = ExportSpec.model_validate(settings.model_dump() | changes)
        except ValidationError as exc:
            raise CampaignError(validation_message(exc, "export")) from None
    formats = _formats(to if to is not None else settings.to)
    # 2. read the output folder (only what review lets through) and the audience, when
    #    customer lists are wanted
    source, held = ExportSource.read(out_dir).reviewed(
        _require_approval(settings, campaign, out_dir))
    frame, id_column = None, "customer_id"
    if settings.audiences and campaign is not None and {"meta", "google"} & set(formats):
        frame = read_audience(campaign.audience, audience).frame
        id_column = campaign.audience.id_column
    root = out_dir / EXPORTS_DIR
    record = _read_record(root)
    # 3. build every format in memory first (a settings error writes nothing) ...
    previous = {name: _keys(record.get(name)) for name in formats}
    built = {name: WRITERS[name](ExportContext(source, settings, campaign, frame, id_column,
                                               previous[name])) for name in formats}
    # 4. ... then write them, drop what older exports of these formats left, and record it
    result = ExportResult(out_dir)
    for name, written in built.items():
        for rel, content in written.files.items():
            path = root / rel
            if rel in written.keys and previous[name].get(rel) == written.keys[rel] \
                    and path.is_file():
                continue  # unchanged since the last export
            if isinstance(content, bytes):
                atomic_write_bytes(path, content)
            else:
                atomic_write_text(path, content)
        _remove_stale(root, record.get(name, {}).get("files", []), set(written.files))
        written.skipped = [*held, *written.skipped]
        left_out = {s["variant_id"] for s in written.skipped if "placement" not in s}
        record[name] = {"files": sorted(written.files), "skipped": written.skipped,
                        "warnings": written.warnings, "keys": written.keys,
                        "disclosure": disclosures([ad for ad in source.ads
                                                   if ad.variant_id not in left_out]),
                        "exported_at": datetime.now(tz=UTC).isoformat(timespec="seconds")}
        result.files[name] = [root / rel for rel in sorted(written.files)]
        result.skipped[name] = written.skipped
        result.warnings[name] = written.warnings
    atomic_write_text(root / RECORD, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return result


def _require_approval(settings: ExportSpec, campaign: CampaignSpec | None,
                      out_dir: Path) -> bool:
    """The campaign's :attr:`~adgen.spec.CampaignSpec.approval_required`; from an output
    folder alone, ``export.require_approval`` if given, else what its last run recorded."""
    if campaign is not None:
        return campaign.approval_required
    if settings.require_approval is not None:
        return settings.require_approval
    try:
        run = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
        return bool(run["review"]["require_approval"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _formats(to: str | Sequence[str]) -> list[str]:
    names = [to] if isinstance(to, str) else list(to)
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise CampaignError(f"unknown export format(s) {bad}: use {', '.join(FORMATS)}")
    if not names:
        raise CampaignError(f"nothing to export: name a format ({', '.join(FORMATS)}) with "
                            "--to, or set export.to in the campaign")
    return list(dict.fromkeys(names))


def _read_record(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _keys(entry: Any) -> dict[str, str]:
    keys = entry.get("keys") if isinstance(entry, dict) else None
    return {str(k): str(v) for k, v in keys.items()} if isinstance(keys, dict) else {}


def _remove_stale(root: Path, before: list[str], now: set[str]) -> None:
    """Delete files an earlier export wrote and this one did not (only those, and only
    inside ``exports/``), then empty folders they leave."""
    for rel in before:
        if rel in now or not isinstance(rel, str):
            continue
        path = (root / rel).resolve()
        if root.resolve() not in path.parents or not path.is_file():
            continue
        path.unlink()
        parent = path.parent
        while parent != root.resolve() and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


__all__ = ["FORMATS", "ExportResult", "export"]
