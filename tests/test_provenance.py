"""Provenance metadata: XMP written by adgen, read back by Pillow, exiftool and c2pa."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from adgen.errors import AssetError, FFmpegError, PostProcessError
from adgen.post.ffmpeg import mp4_boxes
from adgen.provenance.c2pa import sign_c2pa
from adgen.provenance.metadata import (
    IPTC_COMPOSITE,
    IPTC_GENERATED,
    XMP_UUID,
    Provenance,
    embed_image,
    embed_mp4,
    embed_overhead,
    read_xmp,
    xmp_packet,
)

PROV = Provenance(campaign='spring <sale> & "friends"', variant_id="hero-s1234-v0",
                  model="stabilityai/sdxl-turbo", renderer="diffusers", composite=False,
                  created_at="2026-03-01T12:00:00+00:00")
EXIFTOOL = shutil.which("exiftool")


@pytest.mark.parametrize(("renderer", "composite", "code"), [
    ("offline", False, "algorithmicMedia"),
    ("offline", True, "compositeSynthetic"),
    ("diffusers", False, "trainedAlgorithmicMedia"),
    ("diffusers", True, "compositeWithTrainedAlgorithmicMedia"),
    ("diffusers-video", False, "trainedAlgorithmicMedia"),
    ("diffusers-video", True, "compositeWithTrainedAlgorithmicMedia"),
])
def test_source_type_says_whether_a_trained_model_made_it(
    renderer: str, composite: bool, code: str
) -> None:
    prov = Provenance(**{**PROV.__dict__, "renderer": renderer, "composite": composite})
    # the IPTC NewsCodes URIs, spelled out (cv.iptc.org/newscodes/digitalsourcetype)
    assert prov.digital_source_type == f"http://cv.iptc.org/newscodes/digitalsourcetype/{code}"
    assert prov.digital_source_type in xmp_packet(prov).decode("utf-8")
    assert prov.comment().endswith(prov.digital_source_type)


def _picture(mode: str = "RGB", size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(7)
    channels = len(mode)
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def _encode(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


SAMPLES = {
    "jpeg": ("jpeg", lambda: _encode(_picture(), "JPEG", quality=85)),
    "png": ("png", lambda: _encode(_picture(), "PNG")),
    "webp-lossy": ("webp", lambda: _encode(_picture(), "WEBP", quality=80)),
    "webp-lossless-alpha": ("webp", lambda: _encode(_picture("RGBA"), "WEBP", lossless=True)),
}


def _pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.mode, image.size, image.tobytes()


def _exiftool(*paths: Path) -> list[dict[str, Any]]:
    assert EXIFTOOL
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-validate", "-warning", "-XMP:all",
                          "-ItemList:Comment", *map(str, paths)],
                         capture_output=True, text=True, check=True).stdout
    return list(json.loads(out))


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_embed_keeps_pixels_and_pillow_reads_the_xmp(sample: str) -> None:
    pytest.importorskip("defusedxml")  # Pillow's getxmp() needs it
    fmt, make = SAMPLES[sample]
    original = make()
    marked = embed_image(original, fmt, PROV)  # type: ignore[arg-type]

    assert _pixels(marked) == _pixels(original)
    assert len(marked) - len(original) == embed_overhead(fmt, PROV)  # type: ignore[arg-type]
    with Image.open(io.BytesIO(marked)) as image:
        description = image.getxmp()["xmpmeta"]["RDF"]["Description"]
    assert description["DigitalSourceType"] == IPTC_GENERATED
    assert description["Campaign"] == 'spring <sale> & "friends"'
    assert description["VariantId"] == "hero-s1234-v0"
    assert description["Model"] == "stabilityai/sdxl-turbo"
    # embedding again replaces the packet instead of adding a second one
    composite = Provenance(**{**PROV.__dict__, "composite": True})
    again = embed_image(marked, fmt, composite)  # type: ignore[arg-type]
    assert again == embed_image(original, fmt, composite)  # type: ignore[arg-type]
    assert IPTC_COMPOSITE in (read_xmp(again) or "")
    assert (read_xmp(again) or "").count("DigitalSourceType") == 1


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed (bash tests/system_deps.sh)")
def test_exiftool_reads_and_validates_every_image_format(tmp_path: Path) -> None:
    paths = []
    for name, (fmt, make) in sorted(SAMPLES.items()):
        path = tmp_path / f"{name}.{fmt}"
        path.write_bytes(embed_image(make(), fmt, PROV))  # type: ignore[arg-type]
        paths.append(path)
    for info in _exiftool(*paths):
        assert info["ExifTool:Validate"] == "OK", info
        assert "ExifTool:Warning" not in info, info
        assert info["XMP-iptcExt:DigitalSourceType"] == IPTC_GENERATED
        assert info["XMP-adgen:Campaign"] == 'spring <sale> & "friends"'
        assert info["XMP-adgen:VariantId"] == "hero-s1234-v0"
        assert info["XMP-adgen:Renderer"] == "diffusers"
        assert info["XMP-dc:Description"] == "AI-generated"


def test_jpeg_xmp_goes_after_exif_which_survives() -> None:
    exif = Image.Exif()
    exif[0x010E] = "product shot"  # ImageDescription
    original = _encode(_picture(), "JPEG", exif=exif.tobytes())
    marked = embed_image(original, "jpeg", PROV)
    with Image.open(io.BytesIO(marked)) as image:
        assert image.getexif()[0x010E] == "product shot"
    assert marked.index(b"Exif\x00\x00") < marked.index(b"http://ns.adobe.com/xap/1.0/")


def test_webp_extended_layout_gets_the_xmp_flag() -> None:
    exif = Image.Exif()
    exif[0x010E] = "product shot"
    original = _encode(_picture(), "WEBP", quality=80, exif=exif.tobytes())
    assert original[12:16] == b"VP8X" and not original[20] & 0x04
    marked = embed_image(original, "webp", PROV)
    assert marked[12:16] == b"VP8X"
    assert marked[20] & 0x04  # XMP flag
    assert _pixels(marked) == _pixels(original)


def test_simple_webp_with_alpha_keeps_the_alpha_flag() -> None:
    marked = embed_image(SAMPLES["webp-lossless-alpha"][1](), "webp", PROV)
    assert marked[12:16] == b"VP8X" and marked[20] & 0x10
    assert int.from_bytes(marked[24:27], "little") + 1 == 64  # canvas width
    assert int.from_bytes(marked[27:30], "little") + 1 == 48


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(PostProcessError, match="not a JPEG file"):
        embed_image(SAMPLES["png"][1](), "jpeg", PROV)
    with pytest.raises(PostProcessError, match="unknown image format 'gif'"):
        embed_image(b"GIF89a", "gif", PROV)  # type: ignore[arg-type]
    assert read_xmp(SAMPLES["png"][1]()) is None


# --- MP4 -------------------------------------------------------------------------------------


def _clip(path: Path, *, faststart: bool) -> Path:
    import imageio_ffmpeg

    params = ["-movflags", "+faststart"] if faststart else []
    writer = imageio_ffmpeg.write_frames(str(path), (64, 48), fps=10, codec="libx264",
                                         pix_fmt_out="yuv420p", output_params=params,
                                         macro_block_size=16)
    writer.send(None)
    for i in range(10):
        writer.send(np.full((48, 64, 3), i * 20, np.uint8).tobytes())
    writer.close()
    return path


def _frames(path: Path) -> list[bytes]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    return list(reader)


def test_mp4_gets_xmp_and_comment_keeps_frames_and_faststart(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "ad.mp4", faststart=False)
    order = mp4_boxes(clip)
    assert order.index("mdat") < order.index("moov")  # not faststart before
    before = _frames(clip)

    embed_mp4(clip, PROV)
    embed_mp4(clip, PROV)  # twice: still one packet

    data = clip.read_bytes()
    order = mp4_boxes(clip)
    assert order.index("moov") < order.index("mdat")
    assert data.count(XMP_UUID) == 1
    assert IPTC_GENERATED in (read_xmp(data) or "")
    assert _frames(clip) == before
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind
    if EXIFTOOL:
        (info,) = _exiftool(clip)
        assert info["XMP-iptcExt:DigitalSourceType"] == IPTC_GENERATED
        assert info["XMP-adgen:Campaign"] == 'spring <sale> & "friends"'
        assert info["ItemList:Comment"].startswith("AI-generated by adgen; campaign spring")


def test_embed_mp4_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=r"nope\.mp4: no such video file"):
        embed_mp4(tmp_path / "nope.mp4", PROV)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(FFmpegError, match=r"while adding provenance metadata to .*broken\.mp4"):
        embed_mp4(broken, PROV)
    assert broken.read_bytes() == b"not a video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]


# --- C2PA ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_c2pa_round_trip(tmp_path: Path, test_pki: dict[str, Path], fmt: str) -> None:
    c2pa = pytest.importorskip("c2pa", reason="c2pa-python not installed")
    composite = Provenance(**{**PROV.__dict__, "composite": True})
    original = SAMPLES[fmt][1]()
    src = tmp_path / f"ad.{fmt}"
    src.write_bytes(embed_image(original, fmt, composite))  # type: ignore[arg-type]
    dst = tmp_path / "signed" / f"ad.{fmt}"

    sign_c2pa(src, dst, cert=test_pki["chain"], key=test_pki["key"], prov=composite)

    signed = dst.read_bytes()
    assert _pixels(signed) == _pixels(original)
    assert IPTC_COMPOSITE in (read_xmp(signed) or "")  # XMP survives signing
    assert len(signed) - len(src.read_bytes()) < 8000  # no embedded thumbnail
    trust = {"trust": {"trust_anchors": test_pki["root"].read_text()}}
    with c2pa.Context.from_dict(trust) as context, c2pa.Reader(str(dst), context=context) as reader:
        assert reader.get_validation_state() == "Trusted"
        manifest = reader.get_active_manifest()
    actions = next(a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))
    (created,) = actions["data"]["actions"]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == IPTC_COMPOSITE
    custom = next(a for a in manifest["assertions"] if a["label"] == "dev.adgen.provenance")
    assert custom["data"]["variant_id"] == "hero-s1234-v0"


def test_c2pa_mp4_keeps_faststart(tmp_path: Path, test_pki: dict[str, Path]) -> None:
    c2pa = pytest.importorskip("c2pa", reason="c2pa-python not installed")
    clip = _clip(tmp_path / "ad.mp4", faststart=True)
    embed_mp4(clip, PROV)
    dst = tmp_path / "signed.mp4"
    sign_c2pa(clip, dst, cert=test_pki["chain"], key=test_pki["key"], prov=PROV)
    order = mp4_boxes(dst)
    assert order.index("moov") < order.index("mdat")
    assert _frames(dst) == _frames(clip)
    trust = {"trust": {"trust_anchors": test_pki["root"].read_text()}}
    with c2pa.Context.from_dict(trust) as context, c2pa.Reader(str(dst), context=context) as reader:
        assert reader.get_validation_state() == "Trusted"


def test_c2pa_bad_key_is_a_user_error(tmp_path: Path, test_pki: dict[str, Path]) -> None:
    pytest.importorskip("c2pa", reason="c2pa-python not installed")
    src = tmp_path / "ad.jpeg"
    src.write_bytes(SAMPLES["jpeg"][1]())
    with pytest.raises(AssetError, match=r"C2PA signing: private key .*missing\.pem does not"):
        sign_c2pa(src, tmp_path / "o.jpeg", cert=test_pki["chain"], key=tmp_path / "missing.pem",
                  prov=PROV)
    with pytest.raises(AssetError, match=r"C2PA signing of .*ad\.jpeg failed: .*PEM certificate"):
        sign_c2pa(src, tmp_path / "o.jpeg", cert=test_pki["root"], key=test_pki["key"],
                  prov=PROV)
    assert not (tmp_path / "o.jpeg").exists()
