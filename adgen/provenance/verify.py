"""``adgen verify``: everything a picture or video file says about its making, read back.

For each file: the invisible watermark's payload and confidence (video: read on frames spread
over the clip), the IPTC ``DigitalSourceType`` in its XMP, and its C2PA manifest as the c2pa
SDK validates it. Given the output folder of the run that made it (or when the file sits in
one), the file is resolved to the manifest row of its asset: by its SHA-256 when it is the
file adgen wrote, else by its watermark payload (a re-encoded, resized or screenshotted copy).
A copy whose C2PA manifest was stripped is then matched back to that manifest through the
soft binding: the asset adgen wrote still carries it, and it names the same payload.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from adgen.errors import AdgenError, AssetError, listed
from adgen.manifest import MANIFEST_CSV, MANIFEST_PARQUET, read_manifest
from adgen.provenance import watermark
from adgen.provenance.c2pa import C2paReport, read_c2pa
from adgen.provenance.metadata import read_xmp, source_type, xmp_value

VIDEO_FRAMES = 6
"""Frames of a video read for its watermark."""


@dataclass(frozen=True)
class Verification:
    """What one file claims. ``frames`` (video): frames that gave the payload, frames read.
    ``asset``: the manifest row the file resolves to and ``matched_by`` how (``file``: it is
    the file adgen wrote; ``watermark``: a copy, found by its payload). ``recovered``: the C2PA
    manifest of that asset, when this file has none of its own but the asset's soft binding
    names this file's payload."""

    path: Path
    kind: str = ""
    watermark: watermark.Detection | None = None
    frames: tuple[int, int] | None = None
    source_type: str | None = None
    xmp: dict[str, str] = field(default_factory=dict)
    c2pa: C2paReport | None = None
    asset: dict[str, Any] | None = None
    matched_by: str | None = None
    recovered: C2paReport | None = None
    notes: tuple[str, ...] = ()

    @property
    def claims(self) -> bool:
        """Whether the file says anything about its making."""
        return bool(self.watermark or self.source_type or self.c2pa)

    def line(self) -> str:
        """One line for the terminal."""
        if not self.claims:
            parts = ["no provenance found (no watermark, no IPTC source type, no C2PA manifest)"]
        else:
            parts = []
            if self.watermark is not None:
                mark = self.watermark
                seen = f", {self.frames[0]}/{self.frames[1]} frames" if self.frames else ""
                parts.append(f"watermark {mark.payload} (confidence {mark.confidence:.2f}{seen})")
            else:
                parts.append("no watermark")
            if self.source_type:
                parts.append(f"IPTC {self.source_type.rsplit('/', 1)[-1]}")
            if self.c2pa is not None:
                parts.append(_c2pa_words("C2PA", self.c2pa))
            elif self.recovered is not None:
                parts.append(_c2pa_words("C2PA stripped, recovered from the soft binding",
                                         self.recovered))
        if self.asset is not None:
            row = self.asset
            what = f"variant {row['variant_id']} {row['placement']} ({row['path']})"
            parts.append(f"the asset of {what}" if self.matched_by == "file"
                         else f"a copy of {what}, found by its watermark")
        parts += list(self.notes)
        return f"{self.path}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``adgen verify --json``)."""
        mark = self.watermark
        return {
            "path": str(self.path), "kind": self.kind, "claims": self.claims,
            "watermark": None if mark is None else {
                "payload": mark.payload, "confidence": mark.confidence, "alg": watermark.ALGORITHM,
                "size": list(mark.size), "crop": mark.crop, "corrected_bits": mark.corrected,
                "frames": list(self.frames) if self.frames else None},
            "iptc_digital_source_type": self.source_type, "xmp": self.xmp,
            "c2pa": None if self.c2pa is None else self.c2pa.as_dict(),
            "asset": None if self.asset is None else {
                k: self.asset.get(k) for k in ("campaign", "variant_id", "placement", "path",
                                               "sha256", "watermark")},
            "matched_by": self.matched_by,
            "c2pa_recovered": None if self.recovered is None else self.recovered.as_dict(),
            "notes": list(self.notes),
        }


def _c2pa_words(what: str, report: C2paReport) -> str:
    words = f"{what} {report.state}"
    if report.failures:
        words += f" ({listed(report.failures, 3)})"
    if report.soft_binding:
        words += f", soft binding {report.soft_binding}"
    return words


def _is_output(folder: Path) -> bool:
    return (folder / MANIFEST_PARQUET).is_file() or (folder / MANIFEST_CSV).is_file()


def output_folder_of(path: Path) -> Path | None:
    """The nearest folder above ``path`` that holds a run's manifest, or None."""
    return next((f for f in Path(path).resolve().parents if _is_output(f)), None)


def verify(paths: list[Path] | list[str], *, out: Path | str | None = None,
           trust: Path | str | None = None) -> list[Verification]:
    """Verify each file (see the module docstring). ``out``: the output folder the files
    came from (else each file's own, when it sits in one); ``trust``: a PEM file of C2PA
    trust anchors. :class:`AssetError` when a file does not exist (nothing is verified)."""
    files = [Path(p) for p in paths]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise AssetError(f"no such file: {listed(missing)}; give the pictures or videos to verify")
    if out is not None and not _is_output(Path(out)):
        raise AssetError(f"{out}: no manifest.parquet or manifest.csv there; give the output "
                         "folder of the run that made the files (--out)")
    if trust is not None and not Path(trust).is_file():
        raise AssetError(f"trust anchors {trust} do not exist: give a PEM file of root "
                         "certificates (--trust)")
    folders: dict[Path, _Folder] = {}
    results = []
    for file in files:
        home = Path(out).resolve() if out is not None else output_folder_of(file)
        if home is not None and home not in folders:
            folders[home] = _Folder.read(home)
        results.append(_verify_one(file, folders.get(home) if home else None,
                                   Path(trust) if trust else None))
    return results


@dataclass(frozen=True)
class _Folder:
    """An output folder's finished assets, for resolving files to them."""

    root: Path
    rows: list[dict[str, Any]]

    @classmethod
    def read(cls, root: Path) -> _Folder:
        frame = read_manifest(root)
        rows = [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
        return cls(root, [r for r in rows if r.get("path") and r.get("status") == "ok"])

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """The asset sizes of the run (custom placements included)."""
        return sorted({(int(r["width"]), int(r["height"])) for r in self.rows
                       if str(r.get("width")).isdigit() and str(r.get("height")).isdigit()})

    def find(self, sha256: str, payload: str | None) -> tuple[dict[str, Any] | None, str | None]:
        for row in self.rows:
            if row.get("sha256") == sha256:
                return row, "file"
        for row in self.rows if payload else ():
            if row.get("watermark") == payload:
                return row, "watermark"
        return None, None


def _verify_one(path: Path, folder: _Folder | None, trust: Path | None) -> Verification:
    data = path.read_bytes()
    notes: list[str] = []
    kind, detection, frames = _read_watermark(path, data, folder, notes)
    try:
        packet = read_xmp(data)
    except AdgenError:
        packet = None
    fields = {name: value for name in ("Campaign", "VariantId", "Renderer", "Model", "Watermark")
              if packet and (value := xmp_value(packet, name)) is not None}
    report = _c2pa(path, trust, notes) if kind else None
    asset, matched_by, recovered = None, None, None
    if folder is not None:
        asset, matched_by = folder.find(hashlib.sha256(data).hexdigest(),
                                        detection.payload if detection else None)
        if asset is not None and report is None and matched_by == "watermark":
            original = folder.root / str(asset["path"])
            found = _c2pa(original, trust, notes) if original.is_file() else None
            if found is not None and detection is not None \
                    and found.soft_binding == detection.payload:
                recovered = found
    return Verification(path, kind, detection, frames, packet and source_type(packet), fields,
                        report, asset, matched_by, recovered, tuple(dict.fromkeys(notes)))


def _read_watermark(path: Path, data: bytes, folder: _Folder | None, notes: list[str]
                    ) -> tuple[str, watermark.Detection | None, tuple[int, int] | None]:
    """The file's kind (``image``, ``video`` or empty), its watermark and, for a video, the
    frames that gave the payload and the frames read."""
    sizes = folder.sizes if folder is not None else []
    if data[4:8] == b"ftyp":
        try:
            pictures = watermark.video_frames(path, VIDEO_FRAMES)
        except AdgenError as exc:
            notes.append(f"its frames cannot be read ({str(exc).splitlines()[0]})")
            return "video", None, None
        found = [d for d in (watermark.detect(f, sizes) for f in pictures) if d is not None]
        if not found:
            return "video", None, (0, len(pictures))
        payload, count = Counter(d.payload for d in found).most_common(1)[0]
        best = max((d for d in found if d.payload == payload), key=lambda d: d.confidence)
        return "video", best, (count, len(pictures))
    try:
        with Image.open(path) as image:
            image.load()
            return "image", watermark.detect(image, sizes), None
    except (UnidentifiedImageError, OSError):
        notes.append("not a picture or video adgen can read")
        return "", None, None


def _c2pa(path: Path, trust: Path | None, notes: list[str]) -> C2paReport | None:
    try:
        return read_c2pa(path, trust=trust)
    except AssetError as exc:
        notes.append(f"C2PA not checked: {exc}")
        return None


def as_json(results: list[Verification]) -> str:
    """The JSON ``adgen verify --json`` prints."""
    return json.dumps([r.as_dict() for r in results], indent=2, ensure_ascii=False)
