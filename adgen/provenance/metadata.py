"""IPTC/XMP metadata: the machine-readable "AI-generated" statement in every finished ad.

Images get an XMP packet with the IPTC ``DigitalSourceType`` and the campaign, variant, renderer
and model in adgen's own namespace. It is inserted at the byte level, so the pixels and the
encoded bitstream are untouched and the cost is known in advance (:func:`embed_overhead`):

- JPEG: an APP1 ``http://ns.adobe.com/xap/1.0/`` segment after SOI and any JFIF/Exif segments;
- PNG: an uncompressed ``iTXt`` chunk ``XML:com.adobe.xmp`` before the first IDAT;
- WebP: an ``XMP `` chunk, with the file converted to the extended (VP8X) layout if needed and
  the VP8X XMP flag set.

MP4 files are remuxed by ffmpeg without re-encoding (``-c copy``, ``+faststart``) with a
``comment`` tag, and get a top-level XMP ``uuid`` box appended after ``mdat``, so no chunk
offset changes and ``moov`` stays in front. Embedding again replaces the previous packet.

:func:`sign_c2pa` adds a signed C2PA manifest (``c2pa-python``); sign last, since any later
re-encode or remux drops it.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape, unescape

from adgen.errors import AssetError, PostProcessError
from adgen.post.ffmpeg import QUIET, file_url, run_ffmpeg

IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
IPTC_GENERATED = IPTC_SOURCE_TYPES + "trainedAlgorithmicMedia"
"""Made by a model trained on sampled data (the diffusers renderers)."""
IPTC_COMPOSITE = IPTC_SOURCE_TYPES + "compositeWithTrainedAlgorithmicMedia"
"""A trained model's output composited with other media (a real product photo)."""
IPTC_ALGORITHMIC = IPTC_SOURCE_TYPES + "algorithmicMedia"
"""Made purely by an algorithm, not from sampled training data (the offline renderer)."""
IPTC_COMPOSITE_SYNTHETIC = IPTC_SOURCE_TYPES + "compositeSynthetic"
"""A composite of several elements, at least one synthetic (offline scene + product photo)."""
UNTRAINED_RENDERERS = frozenset({"offline"})
"""Renderers that use no trained model: their pictures are algorithmic, not AI-trained media."""
ADGEN_NS = "https://adgen.dev/ns/1.0/"
XMP_UUID = bytes.fromhex("be7acfcb97a942e89c71999491e3afac")
"""The UUID of the XMP box in ISO base media files (Adobe XMP spec part 3)."""

ImageFormat = Literal["jpeg", "png", "webp"]

_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_XMP_EXT = b"http://ns.adobe.com/xmp/extension/\x00"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_XMP_KEY = b"XML:com.adobe.xmp"
_WEBP_XMP_FLAG = 0x04
_WEBP_ALPHA_FLAG = 0x10
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Provenance:
    """What an ad file says about its own making."""

    campaign: str
    variant_id: str
    model: str
    renderer: str
    composite: bool
    created_at: str
    label: str = "AI-generated"
    watermark: str | None = None
    """The invisible watermark's payload in the pixels (:mod:`adgen.provenance.watermark`)."""

    @property
    def digital_source_type(self) -> str:
        """IPTC code: made by a trained model (diffusers) or by an algorithm alone (offline),
        composited with real pixels (a product photo) or fully generated."""
        if self.renderer in UNTRAINED_RENDERERS:
            return IPTC_COMPOSITE_SYNTHETIC if self.composite else IPTC_ALGORITHMIC
        return IPTC_COMPOSITE if self.composite else IPTC_GENERATED

    def comment(self) -> str:
        """One human-readable line for container tags (MP4 ``comment``)."""
        model = f"{self.renderer}/{self.model}" if self.model else self.renderer
        return (f"{self.label} by adgen; campaign {self.campaign}; variant {self.variant_id}; "
                f"model {model}; {self.digital_source_type}")


def xmp_packet(prov: Provenance) -> bytes:
    """The UTF-8 XMP packet adgen embeds (no padding)."""
    attrs = {
        "Iptc4xmpExt:DigitalSourceType": prov.digital_source_type,
        "xmp:CreateDate": prov.created_at,
        "xmp:CreatorTool": "adgen",
        "adgen:Campaign": prov.campaign,
        "adgen:VariantId": prov.variant_id,
        "adgen:Renderer": prov.renderer,
        "adgen:Model": prov.model,
        "adgen:Label": prov.label,
    }
    if prov.watermark:
        attrs["adgen:Watermark"] = prov.watermark
    lines = "".join(f'\n    {name}="{_attr(value)}"' for name, value in attrs.items())
    xml = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        f'    xmlns:adgen="{ADGEN_NS}"{lines}>\n'
        "   <dc:description><rdf:Alt>"
        f'<rdf:li xml:lang="x-default">{_attr(prov.label)}</rdf:li>'
        "</rdf:Alt></dc:description>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return xml.encode("utf-8")


def _attr(value: str) -> str:
    return escape(_XML_ILLEGAL.sub("", str(value)), {'"': "&quot;"})


def embed_overhead(fmt: ImageFormat, prov: Provenance) -> int:
    """The most bytes :func:`embed_image` adds to a file that has no XMP yet (exact for JPEG and
    PNG; WebP counts the 18-byte VP8X chunk a simple-layout file gets). Reserve it from a
    placement's byte budget before encoding."""
    size = len(xmp_packet(prov))
    if fmt == "jpeg":
        return 4 + len(_JPEG_XMP) + size
    if fmt == "png":
        return 12 + len(_PNG_XMP_KEY) + 5 + size
    if fmt == "webp":
        return 18 + 8 + size + (size & 1)
    raise PostProcessError(f"unknown image format {fmt!r}: use 'jpeg', 'png' or 'webp'")


def embed_image(data: bytes, fmt: ImageFormat, prov: Provenance) -> bytes:
    """``data`` with adgen's XMP packet embedded (replacing an earlier XMP packet); the encoded
    pixels are copied byte for byte."""
    packet = xmp_packet(prov)
    if fmt == "jpeg":
        return _jpeg_with_xmp(data, packet)
    if fmt == "png":
        return _png_with_xmp(data, packet)
    if fmt == "webp":
        return _webp_with_xmp(data, packet)
    raise PostProcessError(f"unknown image format {fmt!r}: use 'jpeg', 'png' or 'webp'")


# --- JPEG ------------------------------------------------------------------------------------


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The marker segments between SOI and SOS as ``(marker, whole segment)``, and the offset
    where the rest (SOS onwards) starts."""
    if data[:2] != b"\xff\xd8":
        raise PostProcessError("not a JPEG file (no SOI marker): cannot embed XMP")
    segments: list[tuple[int, bytes]] = []
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise PostProcessError(f"corrupt JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or 0xD0 <= marker <= 0xD9:
            return segments, pos
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        segments.append((marker, data[pos:pos + 2 + length]))
        pos += 2 + length
    raise PostProcessError("corrupt JPEG: no image data (SOS) found")


def _jpeg_with_xmp(data: bytes, packet: bytes) -> bytes:
    payload = _JPEG_XMP + packet
    if len(payload) + 2 > 0xFFFF:
        raise PostProcessError(f"XMP packet of {len(packet)} bytes is too big for one JPEG APP1 "
                               "segment; shorten the campaign name or model")
    segments, rest = _jpeg_segments(data)
    kept = [(m, s) for m, s in segments if not _is_jpeg_xmp(m, s)]
    # after SOI and any leading JFIF (APP0) / Exif (APP1) segments
    at = 0
    while at < len(kept) and kept[at][0] in (0xE0, 0xE1):
        at += 1
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    head = [s for _, s in kept[:at]] + [app1] + [s for _, s in kept[at:]]
    return b"\xff\xd8" + b"".join(head) + data[rest:]


def _is_jpeg_xmp(marker: int, segment: bytes) -> bool:
    body = segment[4:]
    return marker == 0xE1 and (body.startswith(_JPEG_XMP) or body.startswith(_JPEG_XMP_EXT))


def _read_jpeg_xmp(data: bytes) -> bytes | None:
    segments, _ = _jpeg_segments(data)
    for marker, segment in segments:
        if marker == 0xE1 and segment[4:].startswith(_JPEG_XMP):
            return segment[4 + len(_JPEG_XMP):]
    return None


# --- PNG -------------------------------------------------------------------------------------


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """``(type, whole chunk)`` for every chunk of a PNG file."""
    if not data.startswith(_PNG_SIG):
        raise PostProcessError("not a PNG file (bad signature): cannot embed XMP")
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunks.append((kind, data[pos:pos + 12 + length]))
        pos += 12 + length
    return chunks


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _is_png_xmp(kind: bytes, chunk: bytes) -> bool:
    return kind == b"iTXt" and chunk[8:8 + len(_PNG_XMP_KEY) + 1] == _PNG_XMP_KEY + b"\x00"


def _png_with_xmp(data: bytes, packet: bytes) -> bytes:
    chunks = [(k, c) for k, c in _png_chunks(data) if not _is_png_xmp(k, c)]
    # keyword, NUL, compression flag 0, method 0, empty language tag and translated keyword
    itxt = _png_chunk(b"iTXt", _PNG_XMP_KEY + b"\x00\x00\x00\x00\x00" + packet)
    idat = next((i for i, (k, _) in enumerate(chunks) if k == b"IDAT"), None)
    if idat is None:
        raise PostProcessError("corrupt PNG: no IDAT chunk")
    out = [c for _, c in chunks[:idat]] + [itxt] + [c for _, c in chunks[idat:]]
    return _PNG_SIG + b"".join(out)


def _read_png_xmp(data: bytes) -> bytes | None:
    for kind, chunk in _png_chunks(data):
        if _is_png_xmp(kind, chunk):
            body = chunk[8:-4]
            rest = body[len(_PNG_XMP_KEY) + 1:]
            compressed = rest[0] == 1
            rest = rest[2:]
            rest = rest[rest.index(b"\x00") + 1:]  # language tag
            rest = rest[rest.index(b"\x00") + 1:]  # translated keyword
            return zlib.decompress(rest) if compressed else rest
    return None


# --- WebP ------------------------------------------------------------------------------------


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """``(fourcc, payload)`` for every chunk of a WebP file."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise PostProcessError("not a WebP file (no RIFF/WEBP header): cannot embed XMP")
    chunks: list[tuple[bytes, bytes]] = []
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        chunks.append((kind, data[pos + 8:pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


def _webp_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) & 1 else b"")


def _webp_canvas(chunks: list[tuple[bytes, bytes]]) -> tuple[int, int, bool]:
    """Canvas width, height and alpha of a simple-layout WebP (VP8 or VP8L bitstream)."""
    kind, payload = chunks[0]
    if kind == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", payload[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    if kind == b"VP8L" and payload[:1] == b"\x2f":
        (bits,) = struct.unpack("<I", payload[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    raise PostProcessError(f"unsupported WebP layout (first chunk {kind!r}): cannot embed XMP")


def _webp_with_xmp(data: bytes, packet: bytes) -> bytes:
    chunks = [(k, p) for k, p in _webp_chunks(data) if k != b"XMP "]
    if not chunks:
        raise PostProcessError("corrupt WebP: no chunks")
    if chunks[0][0] == b"VP8X":
        header = bytearray(chunks[0][1])
        header[0] |= _WEBP_XMP_FLAG
        chunks[0] = (b"VP8X", bytes(header))
    else:
        width, height, alpha = _webp_canvas(chunks)
        flags = _WEBP_XMP_FLAG | (_WEBP_ALPHA_FLAG if alpha else 0)
        vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (
            height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", vp8x))
    chunks.append((b"XMP ", packet))
    body = b"WEBP" + b"".join(_webp_chunk(k, p) for k, p in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _read_webp_xmp(data: bytes) -> bytes | None:
    return next((p for k, p in _webp_chunks(data) if k == b"XMP "), None)


# --- MP4 -------------------------------------------------------------------------------------


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """``(type, payload start, box end)`` of the ISO-BMFF boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    boxes: list[tuple[bytes, int, int]] = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8:pos + 16])
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            break
        boxes.append((kind, pos + header, min(pos + size, end)))
        pos += size
    return boxes


def _read_mp4_xmp(data: bytes) -> bytes | None:
    found: bytes | None = None
    for kind, start, end in _boxes(data):
        if kind == b"uuid" and data[start:start + 16] == XMP_UUID:
            found = data[start + 16:end]  # the last one wins (it was appended last)
        elif kind == b"moov" and found is None:
            for sub, s_start, s_end in _boxes(data, start, end):
                if sub == b"udta":
                    for leaf, l_start, l_end in _boxes(data, s_start, s_end):
                        if leaf == b"XMP_":
                            found = data[l_start:l_end]
    return found


def embed_mp4(path: Path, prov: Provenance) -> None:
    """Mark an MP4 in place: ffmpeg remux (no re-encode, ``+faststart``) with a ``comment`` tag,
    then an XMP ``uuid`` box appended at the end. Atomic: the file is replaced by rename."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{path}: no such video file to mark; run `adgen run` first")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.mp4")
    os.close(fd)
    tmp = Path(name)
    try:
        run_ffmpeg([*QUIET, "-y", "-i", file_url(path), "-map", "0", "-c", "copy",
                    "-map_metadata", "0", "-metadata", f"comment={prov.comment()}",
                    "-movflags", "+faststart", "-f", "mp4", file_url(tmp)],
                   what=f"adding provenance metadata to {path}")
        packet = xmp_packet(prov)
        with tmp.open("ab") as handle:
            handle.write(struct.pack(">I4s", 8 + 16 + len(packet), b"uuid") + XMP_UUID + packet)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_xmp(data: bytes) -> str | None:
    """The XMP packet in a JPEG, PNG, WebP or MP4 file's bytes, or ``None`` when it has none."""
    if data[:2] == b"\xff\xd8":
        raw = _read_jpeg_xmp(data)
    elif data.startswith(_PNG_SIG):
        raw = _read_png_xmp(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raw = _read_webp_xmp(data)
    elif data[4:8] == b"ftyp":
        raw = _read_mp4_xmp(data)
    else:
        raise PostProcessError("unknown file type: read_xmp reads JPEG, PNG, WebP and MP4")
    return None if raw is None else raw.decode("utf-8")



def xmp_value(packet: str, name: str) -> str | None:
    """The value of the XMP property ``name`` (``DigitalSourceType``, ``VariantId``, …, any
    namespace prefix) in ``packet``: an attribute (as adgen writes it), an element's text, or
    an element's ``rdf:resource`` (as other tools write it); None when it is not there."""
    prop = rf"(?:[\w.-]+:)?{re.escape(name)}"
    found = (re.search(rf"\s{prop}\s*=\s*\"([^\"]*)\"", packet)
             or re.search(rf"<{prop}\s+rdf:resource\s*=\s*\"([^\"]*)\"", packet)
             or re.search(rf"<{prop}\s*>\s*([^<]*?)\s*</", packet))
    return unescape(found.group(1), {"&quot;": "\"", "&apos;": "'"}) if found else None


def source_type(packet: str) -> str | None:
    """The IPTC ``DigitalSourceType`` an XMP packet states (a full NewsCodes URI)."""
    return xmp_value(packet, "DigitalSourceType")
