"""The offline renderer: sizes, determinism, prompt steering, palettes, product composition."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from adgen.errors import AssetError, RenderError
from adgen.jobs import RenderJob
from adgen.renderers.base import Renderer
from adgen.renderers.offline import OfflineRenderer, prompt_terms

EXAMPLES = Path(__file__).parents[1] / "examples" / "assets"


def make_job(prompt: str = "studio shot", *, seed: int = 1, size: tuple[int, int] = (192, 192),
             product: Path | None = None, negative: str = "", **options: Any) -> RenderJob:
    return RenderJob(
        renderer="offline", model=None, prompt=prompt, negative_prompt=negative, seed=seed,
        width=size[0], height=size[1], steps=1, guidance=0.0,
        product_image=str(product) if product else None,
        product_sha256="0" * 64 if product else None,
        options=tuple(sorted(options.items())),
    )


def render(job: RenderJob, renderer: OfflineRenderer | None = None) -> Any:
    out = (renderer or OfflineRenderer())([job])
    assert len(out) == 1 and out[0].error is None
    return out[0]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60x100 cut-out: a striped opaque body with a soft edge, inside a transparent margin."""
    arr = np.zeros((120, 80, 4), np.uint8)
    arr[10:110, 10:70, 0] = np.arange(60, dtype=np.uint8)[None, :] * 4
    arr[10:110, 10:70, 1] = np.arange(100, dtype=np.uint8)[:, None] * 2
    arr[10:110, 10:70, 2] = 200
    arr[10:110, 10:70, 3] = 255
    arr[10:110, 10, 3] = arr[10:110, 69, 3] = 128  # semi-transparent sides
    path = tmp_path_factory.mktemp("assets") / "product.png"
    Image.fromarray(arr, "RGBA").save(path)
    return path


def test_renders_rgb_images_of_the_job_size_in_order() -> None:
    sizes = [(64, 64), (728, 90), (90, 320), (300, 250), (160, 600), (17, 33)]
    jobs = [make_job("summer", seed=i, size=s) for i, s in enumerate(sizes)]
    out = OfflineRenderer()(jobs)
    assert [r.job_key for r in out] == [j.key for j in jobs]
    for r, size in zip(out, sizes, strict=True):
        assert r.image is not None and r.image.mode == "RGB" and r.image.size == size
        assert r.subject_box is None and r.composite is False and r.error is None


def test_is_a_renderer_and_survives_pickling(product: Path) -> None:
    renderer = OfflineRenderer(grain=0.5, staging="podium")
    assert isinstance(renderer, Renderer) and renderer.name == "offline"
    job = make_job("winter", product=product, grain=0.5, staging="podium")
    clone = pickle.loads(pickle.dumps(renderer))
    assert render(job, clone).image.tobytes() == render(job, renderer).image.tobytes()


def test_same_job_gives_identical_bytes_from_two_renderers(product: Path) -> None:
    job = make_job("playful christmas night", seed=42, size=(256, 320), product=product,
                   palette=("#0B3D91", "#F2A900", "#FFFFFF"))
    a, b = render(job, OfflineRenderer()), render(job, OfflineRenderer())
    assert a.image.tobytes() == b.image.tobytes()
    assert a.subject_box == b.subject_box


def test_different_seeds_give_visibly_different_variants(product: Path) -> None:
    images = [pixels(render(make_job("calm spring", seed=s, product=product)).image)
              for s in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(images[i] - images[j]).mean() > 4


def _mean_rgb(prompt: str, seeds: range = range(3), **options: Any) -> np.ndarray:
    return np.mean([pixels(render(make_job(prompt, seed=s, **options)).image).mean(axis=(0, 1))
                    for s in seeds], axis=0)


def test_prompt_words_steer_temperature_and_light() -> None:
    winter_night = _mean_rgb("a winter night")
    summer_sunset = _mean_rgb("a summer sunset")
    # winter night: cool (blue above red) and dark; summer sunset: warm (red above blue)
    assert winter_night[2] - winter_night[0] > 20
    assert summer_sunset[0] - summer_sunset[2] > 20
    assert winter_night.mean() < summer_sunset.mean() - 20
    assert _mean_rgb("bright morning").mean() > _mean_rgb("luxury").mean() + 60


def test_same_words_keep_the_mood_across_seeds() -> None:
    winter = [_mean_rgb("winter", range(s, s + 1)) for s in range(3)]
    autumn = _mean_rgb("autumn", range(1))
    spread = max(np.abs(a - b).max() for a in winter for b in winter)
    assert spread < np.abs(winter[0] - autumn).max() / 2


def test_colour_words_tint_the_background() -> None:
    red, teal = _mean_rgb("red"), _mean_rgb("teal")
    assert red[0] > red[2] + 15 and teal[2] > teal[0] + 15


def test_brand_palette_dominates() -> None:
    green = _mean_rgb("summer sunset", palette=("#1B7F3A", "#F2C14E"))
    red = _mean_rgb("summer sunset", palette=("#C8102E", "#FFFFFF"))
    assert green[1] > green[0] + 10 and green[1] > green[2] + 10
    assert red[0] > red[1] + 15 and red[0] > red[2] + 15


@pytest.mark.parametrize("prompt", ["", "minimal", "luxury", "winter night", "energetic bold"])
def test_background_is_neither_flat_nor_noise(prompt: str) -> None:
    image = render(make_job(prompt, seed=3, size=(256, 256))).image
    arr = pixels(image)
    assert arr.std(axis=(0, 1)).max() > 6
    assert len(image.getcolors(256 * 256) or []) > 50
    # smooth: neighbouring pixels differ by little on average (grain, not noise)
    assert np.abs(np.diff(arr, axis=1)).mean() < 8


def test_product_pixels_are_composed_unchanged_inside_the_subject_box(product: Path) -> None:
    for seed, size in [(1, (256, 256)), (2, (320, 180)), (3, (180, 320))]:
        r = render(make_job("autumn", seed=seed, size=size, product=product))
        assert r.composite is True and r.subject_box is not None
        x0, y0, x1, y1 = r.subject_box
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
        with Image.open(product) as im:
            cut = im.convert("RGBA")
        cut = cut.crop(cut.getchannel("A").getbbox())
        expected = np.asarray(cut.resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC))
        got = np.asarray(r.image)[y0:y1, x0:x1]
        opaque = expected[..., 3] == 255
        assert opaque.mean() > 0.8
        assert np.array_equal(got[opaque], expected[..., :3][opaque])


def test_shadow_darkens_the_floor_under_the_product(product: Path) -> None:
    for staging in ("floor", "podium", "float"):
        lit = render(make_job("morning", product=product, staging=staging, shadow=False)).image
        shaded = render(make_job("morning", product=product, staging=staging)).image
        box = render(make_job("morning", product=product, staging=staging)).subject_box
        x0, _, x1, y1 = box
        w = x1 - x0
        rows = slice(y1, y1 + 4) if staging != "float" else slice(y1, y1 + 30)
        band = (rows, slice(x0 + w // 4, x1 - w // 4))
        lum_lit, lum_shaded = pixels(lit.convert("L")), pixels(shaded.convert("L"))
        assert lum_shaded[band].mean() < lum_lit[band].mean() - 8, staging
        assert np.array_equal(lum_shaded[:8, :8], lum_lit[:8, :8])  # far away: untouched


@pytest.mark.parametrize("size", [(64, 64), (728, 90), (90, 728), (300, 250), (540, 960)])
@pytest.mark.parametrize("shape", [(200, 60), (40, 160)])
def test_product_fits_inside_frames_of_any_shape(tmp_path: Path, size: tuple[int, int],
                                                 shape: tuple[int, int]) -> None:
    path = tmp_path / "p.png"
    Image.new("RGBA", shape, (200, 30, 30, 255)).save(path)
    box = render(make_job("bold", size=size, product=path)).subject_box
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
    # a sensible share of the frame along the side that limits it
    assert 0.3 < max((x1 - x0) / size[0], (y1 - y0) / size[1]) < 0.9
    assert abs((x1 - x0) / (y1 - y0) - shape[0] / shape[1]) < 0.1 * shape[0] / shape[1] + 0.1


def test_product_without_alpha_is_composed_as_an_opaque_rectangle(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (90, 60), (10, 120, 230)).save(path, quality=100)
    r = render(make_job("summer", product=path))
    x0, y0, x1, y1 = r.subject_box
    inner = pixels(r.image)[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
    assert np.abs(inner - (10, 120, 230)).max() <= 3


def test_product_layout_varies_with_the_seed(product: Path) -> None:
    boxes = {render(make_job("summer", seed=s, product=product)).subject_box for s in range(6)}
    assert len(boxes) >= 4


def test_missing_or_corrupt_product_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(AssetError, match=r"product image '.*nope\.png' does not exist"):
        render(make_job(product=missing))
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"not a png at all")
    with pytest.raises(AssetError, match=r"broken\.png' is not a readable image"):
        render(make_job(product=corrupt))
    blank = tmp_path / "blank.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(blank)
    with pytest.raises(AssetError, match=r"blank\.png' is fully transparent"):
        render(make_job(product=blank))


def test_bad_options_teach_the_fix() -> None:
    with pytest.raises(RenderError) as bad_colour:
        render(make_job(palette=("#0B3D91", "navy")))
    assert str(bad_colour.value) == (
        "palette colour 'navy' is not a hex colour: write it as '#RRGGBB', e.g. '#0B3D91'")
    with pytest.raises(RenderError, match="staging 'shelf' is unknown; use one of auto, floor"):
        render(make_job(staging="shelf"))
    with pytest.raises(RenderError, match=r"unknown option\(s\) lora, steps; it accepts pal"):
        OfflineRenderer(steps=3, lora="x")
    with pytest.raises(RenderError, match="grain must be a number from 0 to 10, got -1"):
        OfflineRenderer(grain=-1)
    with pytest.raises(RenderError, match="shadow must be true or false, got 'no'"):
        OfflineRenderer(shadow="no")
    with pytest.raises(RenderError, match="staging 'shelf' is unknown"):
        OfflineRenderer(staging="shelf")
    # a model, devices and runtime options (speed and memory only) are accepted and ignored
    OfflineRenderer("ignored-model", device="cuda:0", dtype="float16", vae_tiling=True)


def test_short_palette_colours_and_other_renderers_options_are_accepted() -> None:
    r = render(make_job("calm", palette=("#08f", "#FFF"), scheduler="euler"))
    mean = pixels(r.image).mean(axis=(0, 1))
    assert mean[2] > mean[0] + 15  # '#08f' is a blue


def test_grain_option_scales_the_grain() -> None:
    def roughness(grain: float) -> float:
        arr = pixels(render(make_job("minimal", size=(128, 128), grain=grain)).image)
        return float(np.abs(np.diff(arr, axis=1)).mean())

    assert roughness(0) < roughness(1) - 0.5 < roughness(2) - 1


def test_prompt_terms_map_synonyms_and_drop_negative_words() -> None:
    assert prompt_terms("Cozy FALL evening, golden hour, pastel pinks") == (
        "autumn", "sunset", "pastel", "pink")
    assert prompt_terms("winter sunset over snowy hills", "sunset, people") == ("winter",)
    assert prompt_terms("A bottle on a table") == ()
    assert prompt_terms("sneaker on a clean pedestal") == ("minimal", "podium")


def test_prompt_can_ask_for_a_pedestal_or_a_floating_product(product: Path) -> None:
    def pixels_of(prompt: str, **options: Any) -> bytes:
        return render(make_job(prompt, seed=5, product=product, **options)).image.tobytes()

    assert pixels_of("mug on a pedestal") == pixels_of("mug on a", staging="podium")
    assert pixels_of("floating mug") == pixels_of("mug", staging="float")
    assert pixels_of("mug on a pedestal") != pixels_of("mug on a", staging="floor")
    # an explicit option wins over the prompt
    assert pixels_of("mug on a pedestal", staging="floor") == pixels_of("mug", staging="floor")


def test_example_assets_are_cut_outs() -> None:
    for name in ("sneaker.png", "bottle.png", "mug.png", "logo.png", "logo_light.png"):
        with Image.open(EXAMPLES / name) as im:
            assert im.mode == "RGBA", name
            alpha = np.asarray(im.getchannel("A"))
        assert alpha[0, 0] == 0 and alpha.max() == 255, name


def test_an_extend_job_reads_its_source_through_the_reader_it_is_given() -> None:
    """The renderer opens no file for an extend job: the source and its subject box come from
    the reader (here a dict), kept pixel for pixel in the middle, the box moved with it."""
    source = Image.fromarray(np.random.default_rng(3).integers(
        0, 256, (96, 64, 3), dtype=np.uint8), "RGB")
    read: list[str] = []

    def sources(key: str) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
        read.append(key)
        return {"base": (source, (16, 24, 48, 72))}[key]

    job = RenderJob(renderer="offline", model=None, prompt="studio", negative_prompt="",
                    seed=2, width=192, height=96, steps=1, guidance=0.0, source_key="base")
    result = render(job, OfflineRenderer(sources=sources))
    assert read == ["base"] and result.image.size == (192, 96)
    x = (192 - 64) // 2
    band = max(2, round(0.08 * 64))  # the blend stays outside the subject box
    middle = np.asarray(result.image)[:, x + band:x + 64 - band]
    assert np.array_equal(middle, np.asarray(source)[:, band:64 - band])
    assert result.subject_box == (16 + x, 24, 48 + x, 72)
    with pytest.raises(RenderError, match=r"^extend job [0-9a-f]{8} has no source render"):
        OfflineRenderer()([job])
