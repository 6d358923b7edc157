"""C2PA: a signed manifest in every asset (:func:`sign_c2pa`), read back by :func:`read_c2pa`.

The manifest says ``c2pa.created`` with the IPTC digital source type, and adgen's own
``dev.adgen.provenance`` assertion names the campaign and variant. When the asset carries
adgen's invisible watermark it also has a ``c2pa.soft-binding`` assertion (the watermark's
algorithm and payload) and a ``c2pa.watermarked.bound`` action, so a copy whose manifest was
stripped (a platform re-encode, a screenshot) can be matched back to it: decode the payload
from the pixels, then look it up (``adgen verify --out``). Sign last: any later re-encode or
remux drops the manifest. ``c2pa-python`` is optional (``pip install adgen[c2pa]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adgen.errors import AssetError
from adgen.provenance.metadata import Provenance
from adgen.provenance.watermark import ALGORITHM, SCHEME
from adgen.version import __version__

ADGEN_ASSERTION = "dev.adgen.provenance"
SOFT_BINDING = "c2pa.soft-binding"


def c2pa_manifest(prov: Provenance, *, title: str = "") -> dict[str, Any]:
    """The C2PA manifest definition :func:`sign_c2pa` signs."""
    agent = {"name": "adgen", "version": __version__}
    actions: list[dict[str, Any]] = [{"action": "c2pa.created",
                                      "digitalSourceType": prov.digital_source_type,
                                      "softwareAgent": agent}]
    assertions: list[dict[str, Any]] = [
        {"label": ADGEN_ASSERTION, "data": {
            "campaign": prov.campaign, "variant_id": prov.variant_id,
            "renderer": prov.renderer, "model": prov.model, "created_at": prov.created_at,
            "label": prov.label,
        }},
    ]
    if prov.watermark:
        actions.append({"action": "c2pa.watermarked.bound", "softwareAgent": agent})
        assertions.append({"label": SOFT_BINDING, "data": {
            "alg": ALGORITHM, "name": SCHEME,
            "blocks": [{"scope": {}, "value": prov.watermark}], "pad": []}})
    return {
        "claim_generator_info": [agent],
        "title": title or f"{prov.campaign} {prov.variant_id}",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}, *assertions],
    }


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError:
        raise AssetError("C2PA needs c2pa-python: pip install c2pa-python") from None
    return c2pa


def sign_c2pa(src: Path, dst: Path, *, cert: Path, key: Path, prov: Provenance,
              ta_url: str | None = None, thumbnail: bool = False) -> None:
    """Write ``src`` to ``dst`` with a signed C2PA manifest (:func:`c2pa_manifest`). ``cert``
    is a PEM chain (signing cert first, ES256 key, ``emailProtection`` or ``documentSigning``
    EKU), ``key`` its PEM private key. ``ta_url`` (a RFC 3161 time-stamp server) is the only
    network access, and off by default. ``thumbnail`` embeds the SDK's preview JPEG in the
    manifest (tens of KB, so off: ad byte budgets are tight)."""
    c2pa = _c2pa()
    src, dst = Path(src), Path(dst)
    for what, file in (("asset", src), ("certificate", cert), ("private key", key)):
        if not Path(file).is_file():
            raise AssetError(f"C2PA signing: {what} {file} does not exist")
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=Path(cert).read_bytes(),
                               private_key=Path(key).read_bytes(),
                               ta_url=ta_url.encode() if ta_url else None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=src.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        settings = {"builder": {"thumbnail": {"enabled": thumbnail}}}
        with c2pa.Context.from_dict(settings) as context, \
                c2pa.Signer.from_info(info) as signer, \
                c2pa.Builder(json.dumps(c2pa_manifest(prov)), context) as builder:
            builder.sign_file(src, tmp, signer)
        os.replace(tmp, dst)
    except c2pa.C2paError as exc:
        raise AssetError(
            f"C2PA signing of {src} failed: {exc}. Check that {cert} is a PEM certificate chain "
            f"(signing certificate first, ES256, emailProtection/documentSigning EKU) and "
            f"{key} its private key"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@dataclass(frozen=True)
class C2paReport:
    """What a file's C2PA manifest says, and whether it holds. ``state`` is the SDK's:
    ``Trusted`` (valid, signer in the trust anchors), ``Valid`` (valid, signer not known) or
    ``Invalid`` (``failures`` lists the codes: a changed file, a broken signature)."""

    state: str
    title: str = ""
    source_type: str | None = None
    soft_binding: str | None = None
    """The watermark payload the manifest binds (``c2pa.soft-binding`` with adgen's alg)."""
    adgen: dict[str, Any] = field(default_factory=dict)
    """adgen's own assertion: campaign, variant_id, renderer, model, created_at, label."""
    failures: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "title": self.title, "source_type": self.source_type,
                "soft_binding": self.soft_binding, "adgen": self.adgen,
                "failures": list(self.failures)}


def read_c2pa(path: Path, *, trust: Path | None = None) -> C2paReport | None:
    """The C2PA manifest of the file at ``path`` as the c2pa SDK reads and validates it, or
    None when it has none. ``trust`` is a PEM file of trust anchors (root certificates) to
    accept besides the SDK's own. :class:`AssetError` when c2pa-python is missing or the
    manifest cannot be read at all."""
    c2pa = _c2pa()
    settings: dict[str, Any] = {}
    if trust is not None:
        if not Path(trust).is_file():
            raise AssetError(f"trust anchors {trust} do not exist: give a PEM file of root "
                             "certificates")
        settings = {"trust": {"trust_anchors": Path(trust).read_text(encoding="utf-8")}}
    try:
        with c2pa.Context.from_dict(settings) as context:
            reader = c2pa.Reader.try_create(str(path), context=context)
            if reader is None:
                return None
            with reader:
                state = str(reader.get_validation_state())
                manifest = reader.get_active_manifest() or {}
                results = reader.get_validation_results() or {}
    except c2pa.C2paError.NotSupported:
        return None  # a file type that cannot hold a manifest
    except c2pa.C2paError as exc:
        return C2paReport("Invalid", failures=(" ".join(str(exc).split()),))
    return _report(state, manifest, results)


def _report(state: str, manifest: dict[str, Any], results: dict[str, Any]) -> C2paReport:
    assertions = {a.get("label", ""): a.get("data") or {} for a in
                  manifest.get("assertions") or []}
    source_type = None
    for label, data in assertions.items():
        if label.startswith("c2pa.actions"):
            source_type = next((a.get("digitalSourceType") for a in data.get("actions") or []
                                if a.get("action") == "c2pa.created"), source_type)
    binding = assertions.get(SOFT_BINDING) or {}
    blocks = binding.get("blocks") or []
    soft = str(blocks[0].get("value")) if binding.get("alg") == ALGORITHM and blocks else None
    failures = tuple(str(f.get("code")) for f in
                     (results.get("activeManifest") or {}).get("failure") or [])
    return C2paReport(state, str(manifest.get("title") or ""), source_type, soft,
                      dict(assertions.get(ADGEN_ASSERTION) or {}), failures)
