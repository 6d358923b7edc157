"""Catalog product images: fetched once into the cache, checked, and cut out.

An ``image_link`` is an http(s) URL or a path inside the catalog's folder (relative to it, or
``file://``). Downloads go through :mod:`adgen.catalog.fetch`: public hosts only (unless named
in ``allow_hosts``), on every redirect too, with a time limit for the whole transfer, a byte limit,
an allowed set of types (by the ``Content-Type`` header and by what the bytes decode as) and a
pixel limit. Photos are reduced to :data:`MAX_SIDE` before the cut-out (JPEGs are decoded at the
reduced size). Each URL is downloaded once; the bytes live under ``.cache/catalog/downloads``
and the cut-out under ``.cache/catalog/cutouts``, keyed by the source bytes' hash and the matte
version, so a changed photo is cut out again. Anything that fails, a cut-out with nothing left
in it included, raises :class:`CatalogError` with the reason, which the plan records for that
product.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image, UnidentifiedImageError

from adgen.catalog.feeds import Product
from adgen.catalog.fetch import FetchError, get
from adgen.errors import CatalogError
from adgen.output.files import atomic_write_bytes, atomic_write_text
from adgen.post.matte import MATTE_VERSION, model_matte, white_matte

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
"""Allowed image types: MIME type → the format Pillow must decode the bytes as."""

MAX_SIDE = 2048
"""Photos are reduced to at most this many pixels on their longer side before the cut-out (more
than a product fills of a render at the default sizes); matting a 40-megapixel photo at full
size takes half a minute and 4 GB."""


@dataclass(frozen=True)
class FetchLimits:
    """Limits on one product image download."""

    timeout: float = 10.0
    max_bytes: int = 15_000_000
    max_pixels: int = 40_000_000
    allow_hosts: Sequence[str] = ()


@dataclass(frozen=True)
class Cutout:
    """A product's cut-out: the RGBA PNG in the cache, its hash, and how it was made."""

    path: Path
    sha256: str
    source: str
    note: str


class ProductImages:
    """Fetch and cut out catalog product images, with a cache under ``root``."""

    def __init__(self, root: Path, catalog_dir: Path, *, limits: FetchLimits | None = None,
                 matte: str = "white", matte_model: str | None = None) -> None:
        self.root, self.catalog_dir = root, catalog_dir.resolve()
        self.limits = limits or FetchLimits()
        self.matte = matte if matte != "model" else f"model:{matte_model}"
        self._cutouts: dict[str, Cutout] = {}

    def cutout(self, product: Product) -> Cutout:
        """The product's cut-out (fetched and made on first use)."""
        if product.id not in self._cutouts:
            data = self.fetch(product.image_link)
            source = hashlib.sha256(data).hexdigest()
            key = hashlib.sha256(
                f"{source}|{self.matte}|{MATTE_VERSION}|{MAX_SIDE}".encode()).hexdigest()
            path = self.root / "cutouts" / f"{key}.png"
            meta = path.with_suffix(".json")
            if path.is_file() and meta.is_file():
                note = json.loads(meta.read_text(encoding="utf-8")).get("note", "")
            else:
                cut, note = self._cut(self._decode(data, product.image_link))
                if cut.getchannel("A").getbbox() is None:
                    raise CatalogError(
                        f"image {product.image_link[:80]!r} has nothing left to show after the "
                        f"cut-out ({note}): the photo is all background or fully transparent")
                buffer = io.BytesIO()
                cut.save(buffer, "PNG")
                atomic_write_bytes(path, buffer.getvalue())
                atomic_write_text(meta, json.dumps({"product": product.id, "source": source,
                                                    "image_link": product.image_link,
                                                    "matte": self.matte, "note": note}))
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            self._cutouts[product.id] = Cutout(path, sha, product.image_link, note)
        return self._cutouts[product.id]

    def _cut(self, image: Image.Image) -> tuple[Image.Image, str]:
        if self.matte == "none":
            return image.convert("RGBA"), "photo as is"
        if self.matte.startswith("model:"):
            return model_matte(image, self.matte.removeprefix("model:"))
        return white_matte(image)

    def fetch(self, link: str) -> bytes:
        """The bytes behind an image link (from the cache after the first download)."""
        try:
            parsed = urlparse(link)
        except ValueError as exc:  # a broken IPv6 literal
            raise CatalogError(f"image link {link[:80]!r} is not a valid URL ({exc})") from None
        if parsed.scheme in {"http", "https"}:
            return self._download(link)
        if parsed.scheme not in {"", "file"} or (parsed.scheme == "" and "://" in link):
            raise CatalogError(f"image link {link[:80]!r}: only http(s) URLs and files in the "
                               "catalog's folder are allowed")
        return self._local(Path(unquote(parsed.path)) if parsed.scheme else Path(link), link)

    def _local(self, path: Path, link: str) -> bytes:
        full = (path if path.is_absolute() else self.catalog_dir / path).resolve()
        if not full.is_relative_to(self.catalog_dir):
            raise CatalogError(f"image link {link[:80]!r} is outside the catalog's folder "
                               f"{self.catalog_dir}; copy the image there or use a URL")
        if not full.is_file():
            raise CatalogError(f"image link {link[:80]!r}: file not found")
        if full.stat().st_size > self.limits.max_bytes:
            raise CatalogError(f"image link {link[:80]!r} is larger than "
                               f"{self.limits.max_bytes} bytes")
        return full.read_bytes()

    def _download(self, url: str) -> bytes:
        key = hashlib.sha256(url.encode()).hexdigest()
        path = self.root / "downloads" / key[:2] / key
        if path.is_file():
            return path.read_bytes()
        limits = self.limits
        try:
            response = get(url, timeout=limits.timeout, max_bytes=limits.max_bytes,
                           types=FORMATS, allow_hosts=limits.allow_hosts)
        except FetchError as exc:
            raise CatalogError(f"image {url[:80]!r} {exc}") from None
        data = response.body
        self._decode(data, url, content_type=response.content_type)
        atomic_write_bytes(path, data)
        atomic_write_text(path.with_suffix(".json"), json.dumps({
            "url": url, "final_url": response.url, "content_type": response.content_type,
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "fetched_at": datetime.now(tz=UTC).isoformat(timespec="seconds")}))
        return data

    def _decode(self, data: bytes, link: str, *, content_type: str | None = None
                ) -> Image.Image:
        """The photo, checked and reduced to at most :data:`MAX_SIDE` on its longer side."""
        short = link[:80]
        try:
            with Image.open(io.BytesIO(data)) as probe:
                if probe.width * probe.height > self.limits.max_pixels:
                    raise CatalogError(f"image {short!r} is {probe.width}x{probe.height} px, "
                                       f"more than {self.limits.max_pixels} pixels")
                kind = probe.format
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)  # draft, reduce
            image.load()
        except CatalogError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                Image.DecompressionBombError) as exc:
            raise CatalogError(f"image {short!r} does not decode ({exc})") from None
        if kind not in FORMATS.values():
            raise CatalogError(f"image {short!r} is a {kind} file; use JPEG, PNG or WebP")
        if content_type is not None and FORMATS[content_type] != kind:
            raise CatalogError(f"image {short!r} is sent as {content_type} but is a {kind} file")
        return image
