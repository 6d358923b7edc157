"""The quality gate: pictures made to fail each check, tiny models built from config, retries
with the next seed, near-duplicate twins, and what a run records of it all."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

import adgen
from adgen.jobs import Rendered, RenderJob
from adgen.planning import make_plan
from adgen.quality import GatedRenderer, GateSettings, QualityChecker, TwinFilter, phash
from adgen.quality.models import TEXT_ON_CPU, AlignmentScorer, SafetyScorer, TextDetector
from adgen.quality.pixels import hash_distance, pixel_scores
from adgen.spec import QualitySpec
from adgen.testing import make_tiny_clip, make_tiny_safety_checker, make_tiny_sd_pipeline
from tests.conftest import write_campaign

# -- pictures made to pass or fail --------------------------------------------------------------


def scene(seed: int, size: int = 256) -> Image.Image:
    """A crisp, text-free picture: a colour field with random discs."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(60, 200, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(8, size // 4))
        draw.ellipse((x - r, y - r, x + r, y + r),
                     fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image


def with_text(image: Image.Image) -> Image.Image:
    """The picture with a sale banner drawn across it (what a diffusion model should not do)."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, image.width // 9))
    middle = image.height // 2
    draw.rectangle((10, middle - 30, image.width - 10, middle + 30), fill=(250, 250, 250))
    draw.text((16, middle - 20), "SALE 50% OFF", fill=(10, 10, 10), font=font)
    return image


def flat(size: int = 256) -> Image.Image:
    return Image.new("RGB", (size, size), (128, 128, 128))


def blurred(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(4))


def twin(image: Image.Image) -> Image.Image:
    """A near-identical copy: a little brighter, re-encoded."""
    return image.point(lambda v: min(255, v + 6))


PICTURES = {"ok": scene, "flat": lambda seed: flat(), "blurred": lambda seed: blurred(scene(seed)),
            "text": lambda seed: with_text(scene(seed)), "dark": lambda seed: flat().point(
                lambda v: 3)}


class ScriptedRenderer:
    """Paints, for each seed, the picture the test chose (``kinds[seed]``, default ``ok``):
    ``ok`` (a crisp scene of that seed), ``flat``, ``blurred``, ``text``, ``dark``, or
    ``twin:<seed>`` (a near copy of that seed's scene). Counts the seeds it rendered."""

    name = "scripted"

    def __init__(self, kinds: dict[int, str] | None = None) -> None:
        self.kinds = kinds or {}
        self.seeds: list[int] = []

    def picture(self, seed: int, size: int) -> Image.Image:
        kind = self.kinds.get(seed, "ok")
        if kind.startswith("twin:"):
            return twin(scene(int(kind.split(":")[1]), size))
        if kind == "nan":
            raise ValueError("nan")
        return PICTURES[kind](seed).resize((size, size)) if kind != "ok" else scene(seed, size)

    def __call__(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        out = []
        for job in jobs:
            self.seeds.append(job.seed)
            out.append(Rendered(job.key, self.picture(job.seed, job.width)))
        return out


def job(seed: int, prompt: str = "a red shoe") -> RenderJob:
    return RenderJob("scripted", None, prompt, "", seed, 256, 256, 1, 0.0)


def settings(**quality: Any) -> GateSettings:
    return GateSettings.of(QualitySpec(**quality), "offline")


# -- pixel checks -------------------------------------------------------------------------------


def test_pixel_checks_reject_flat_blurred_and_dark_pictures() -> None:
    gate = settings()
    crisp = pixel_scores(scene(1))
    assert gate.reasons(crisp) == []
    assert gate.reasons(pixel_scores(flat())) == [
        "flat: contrast 0.000 < 0.03", "blurred: sharpness 0.00000 < 0.0002"]
    soft = gate.reasons(pixel_scores(blurred(scene(1))))
    assert len(soft) == 1 and soft[0].startswith("blurred: sharpness")
    dark = gate.reasons(pixel_scores(PICTURES["dark"](0)))
    assert dark[0] == "too dark: brightness 0.012 < 0.04"
    white = gate.reasons(pixel_scores(Image.new("RGB", (64, 64), (255, 255, 255))))
    assert white[0] == "washed out: brightness 1.000 > 0.96"


def test_sharpness_does_not_depend_on_the_picture_size() -> None:
    small = pixel_scores(scene(3, 256))["sharpness"]
    large = pixel_scores(scene(3, 256).resize((1024, 1024), Image.Resampling.NEAREST))
    assert large["sharpness"] == pytest.approx(small, rel=0.35)


def test_phash_is_close_for_a_near_copy_and_far_for_another_picture() -> None:
    original = scene(1)
    assert hash_distance(phash(original), phash(twin(original))) <= 2
    assert hash_distance(phash(original), phash(original.resize((200, 200)))) <= 4
    assert hash_distance(phash(original), phash(scene(2))) > 16
    assert len(phash(original)) == 16 and int(phash(original), 16) >= 0


# -- model checks -------------------------------------------------------------------------------


def test_ocr_finds_text_drawn_into_the_scene_and_none_in_a_clean_one() -> None:
    detector = TextDetector()
    clean, banner = detector([scene(4), with_text(scene(4))])
    assert clean == 0.0
    assert 0.03 < banner < 0.3  # the banner's line of text, not the whole picture
    assert settings(text=True).reasons({"text_area": banner}) == [
        f"text in the scene: {banner:.2%} of the picture (max 0.20%)"]


def banner(size: tuple[int, int], text: str = "Fresh olive oil, 2 for 1") -> Image.Image:
    """A scene of ``size`` with a line of dark text near its bottom, about 1/20 of its width
    high."""
    image = scene(9, max(size)).crop((0, 0, *size))
    font = ImageFont.load_default(size=max(10, size[0] // 20))
    ImageDraw.Draw(image).text((size[0] // 12, size[1] * 3 // 4), text, fill=(15, 15, 15),
                               font=font)
    return image


def test_text_detector_scores_a_batch_as_it_scores_each_picture_alone() -> None:
    detector = TextDetector()
    pictures = [scene(4), with_text(scene(5)), banner((1024, 576)), banner((300, 500)),
                flat(), banner((512, 512), "")]
    batch = detector(pictures)
    alone = [detector([picture])[0] for picture in pictures]
    assert batch == pytest.approx(alone, abs=1e-4)
    clean, drawn, wide, tall, grey, no_text = batch
    assert clean == grey == no_text == 0.0
    assert drawn > 0.03 and wide > 0.005 and tall > 0.005  # letterboxed, the text still found
    assert detector([]) == []


def test_text_detector_takes_any_picture_mode_and_shape() -> None:
    detector = TextDetector()
    drawn = with_text(scene(6))
    scores = detector([drawn.convert("L"), drawn.convert("RGBA"), drawn.convert("P"),
                       Image.new("RGB", (1, 1)), Image.new("RGB", (4000, 12), "white")])
    assert all(s > 0.03 for s in scores[:3]) and scores[3:] == [0.0, 0.0]


def test_text_detector_runs_on_the_cpu_without_onnxruntime_gpu() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert TextDetector(device="cuda:0").provider == "CUDAExecutionProvider"
    else:  # it says so, and how to mend it
        with pytest.warns(RuntimeWarning) as caught:
            detector = TextDetector(device="cuda:0")
        assert detector.provider == "CPUExecutionProvider"
        assert [str(w.message) for w in caught] == [TEXT_ON_CPU]
        assert "install onnxruntime-gpu in place of onnxruntime" in TEXT_ON_CPU
    with pytest.raises(ValueError, match="multiple of 32"):
        TextDetector(side=500)


def stripes(size: int = 64) -> Image.Image:
    """The tiny safety checker's "unsafe" picture: red and green stripes."""
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:, ::8] = (255, 0, 0)
    pixels[:, 4::8] = (0, 255, 0)
    return Image.fromarray(pixels)


def test_safety_checker_built_from_config_flags_its_unsafe_concept(tmp_path: Path) -> None:
    unsafe = stripes()
    folder = make_tiny_safety_checker(tmp_path / "safety", unsafe=[unsafe])
    scorer = SafetyScorer(str(folder))
    scores = scorer([unsafe, unsafe.resize((300, 300)), scene(1), flat()])
    assert scores[0] > 0 and scores[1] > 0
    assert scores[2] < 0 and scores[3] < 0
    # the same verdicts as diffusers' own checker gives
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import CLIPImageProcessor

    checker = StableDiffusionSafetyChecker.from_pretrained(folder)
    pixels = CLIPImageProcessor.from_pretrained(folder)(
        images=[unsafe, scene(1)], return_tensors="pt")["pixel_values"]
    _, nsfw = checker(pixels, [np.zeros((4, 4, 3))] * 2)
    assert nsfw == [True, False]


def test_a_local_pipeline_that_ships_a_safety_checker_supplies_it(tmp_path: Path) -> None:
    """Stable Diffusion 1.x folders carry ``safety_checker/`` and ``feature_extractor/``: the
    gate loads that checker (offline: HF_HUB_OFFLINE is set) rather than the hub default."""
    unsafe = stripes()
    folder = make_tiny_sd_pipeline(tmp_path / "sd", safety_checker=[unsafe])
    assert (folder / "safety_checker" / "model.safetensors").is_file()
    own = GateSettings.of(QualitySpec(text=False), "diffusers", str(folder))
    assert own.safety_model == str(folder)
    checker = QualityChecker(own)
    scores = [row["scores"]["unsafe"] for row in checker([unsafe, scene(1)], ["a", "b"])]
    assert scores[0] > 0 > scores[1]
    assert scores == pytest.approx(SafetyScorer(str(folder))([unsafe, scene(1)]))
    # a checker the campaign names wins; a folder without one, or a hub id, gets the default
    other = str(make_tiny_safety_checker(tmp_path / "other"))
    assert GateSettings.of(QualitySpec(safety_model=other), "diffusers",
                           str(folder)).safety_model == other
    plain = make_tiny_sd_pipeline(tmp_path / "plain")
    default = QualitySpec().safety_model
    assert GateSettings.of(QualitySpec(), "diffusers", str(plain)).safety_model == default
    assert GateSettings.of(QualitySpec(), "diffusers", "owner/model").safety_model == default
    assert own.key != GateSettings.of(QualitySpec(text=False), "diffusers").key  # re-measured


def test_clip_alignment_is_the_cosine_of_clip_embeddings(tmp_path: Path) -> None:
    folder = make_tiny_clip(tmp_path / "clip")
    scorer = AlignmentScorer(str(folder))
    images, prompts = [scene(1), scene(2)], ["a red shoe on a beach", "a blue bottle " * 40]
    scores = scorer(images, prompts)  # the long prompt is truncated, not an error
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder)
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True,
                       truncation=True)
    with torch.no_grad():
        out = model(**inputs)
    expected = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
    assert scores == pytest.approx(expected.tolist(), abs=1e-3)


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(adgen.RenderError, match=r"cannot load the CLIP model .*nowhere.*safetens"
                       r".* quality.clip_model: null$") as caught:
        AlignmentScorer(str(tmp_path / "nowhere"))
    assert "\n" not in str(caught.value) and "set quality.clip_model to " in str(caught.value)


# -- the gate around a renderer -----------------------------------------------------------------


def test_a_failing_render_is_retried_with_the_next_seeds_and_every_seed_is_recorded() -> None:
    fake = ScriptedRenderer({100: "flat", 101: "blurred", 200: "flat", 201: "flat", 202: "flat"})
    gate = GatedRenderer(lambda: fake, settings(retries=2))
    good, bad, clean = gate([job(100), job(200), job(300)])
    assert fake.seeds == [100, 200, 300, 101, 201, 102, 202]
    # kept the third seed, under the job's own key, with the two rejections and why
    assert good.job_key == job(100).key and good.error is None and good.image is not None
    assert good.quality is not None and good.quality["seed"] == 102
    assert [r["seed"] for r in good.quality["rejected"]] == [100, 101]
    assert good.quality["rejected"][0]["reasons"][0] == "flat: contrast 0.000 < 0.03"
    assert good.quality["rejected"][1]["reasons"][0].startswith("blurred")
    assert np.array_equal(np.asarray(good.image), np.asarray(scene(102)))
    # every seed failed: the job fails, naming each seed and its reason
    assert bad.image is None and bad.error is not None
    assert bad.error.startswith("quality: seed 200: flat: contrast 0.000 < 0.03")
    assert "seed 201: flat" in bad.error and "seed 202: flat" in bad.error
    assert clean.quality is not None and clean.quality["rejected"] == []
    assert set(clean.quality["scores"]) == {"brightness", "contrast", "sharpness"}


def test_checks_with_thresholds_off_pass_anything() -> None:
    fake = ScriptedRenderer({5: "flat"})
    gate = GatedRenderer(lambda: fake, settings(min_contrast=None, min_sharpness=None,
                                                retries=0))
    (result,) = gate([job(5)])
    assert result.error is None and fake.seeds == [5]


def test_checker_scores_a_batch_with_every_model_on(tmp_path: Path) -> None:
    spec = QualitySpec(clip_model=str(make_tiny_clip(tmp_path / "clip")), min_alignment=-1.0,
                       safety_model=str(make_tiny_safety_checker(tmp_path / "safety")))
    checker = QualityChecker(GateSettings.of(spec, "diffusers"))  # safety + text: auto on
    records = checker([scene(1), with_text(scene(2))], ["a shoe", "a bottle"])
    assert set(records[0]["scores"]) == {"brightness", "contrast", "sharpness", "alignment",
                                         "unsafe", "text_area"}
    assert records[0]["scores"]["text_area"] == 0.0 and records[1]["scores"]["text_area"] > 0.03
    assert records[0]["phash"] == phash(scene(1))


class CountingSession:
    """An onnxruntime session that counts its runs."""

    def __init__(self, session: Any) -> None:
        self.session, self.runs = session, 0

    def run(self, *args: Any) -> Any:
        self.runs += 1
        return self.session.run(*args)


def test_checker_scores_a_batch_in_one_call_per_model_as_it_scores_each_picture(
    tmp_path: Path
) -> None:
    spec = QualitySpec(clip_model=str(make_tiny_clip(tmp_path / "clip")), min_alignment=-1.0,
                       safety_model=str(make_tiny_safety_checker(tmp_path / "safety",
                                                                 unsafe=[stripes()])))
    # the renderer's half precision is for a GPU: on the CPU the models stay in float32
    checker = QualityChecker(GateSettings.of(spec, "diffusers"), dtype=torch.bfloat16)
    assert checker.alignment is not None and checker.safety is not None and checker.text
    assert checker.alignment.model.dtype == checker.safety.model.dtype == torch.float32
    calls = {"clip": 0, "safety": 0}
    checker.alignment.model.vision_model.register_forward_hook(
        lambda *_: calls.__setitem__("clip", calls["clip"] + 1))
    checker.safety.model.vision_model.register_forward_hook(
        lambda *_: calls.__setitem__("safety", calls["safety"] + 1))
    checker.text.session = CountingSession(checker.text.session)
    pictures = [scene(1), with_text(scene(2)), stripes(256), banner((640, 360))]
    prompts = ["a shoe", "a bottle", "stripes", "a banner " * 30]
    batch = checker(pictures, prompts)
    assert calls == {"clip": 1, "safety": 1} and checker.text.session.runs == 1
    alone = [checker([picture], [prompt])[0]
             for picture, prompt in zip(pictures, prompts, strict=True)]
    for together, single in zip(batch, alone, strict=True):
        assert together["phash"] == single["phash"]
        assert together["scores"] == pytest.approx(single["scores"], abs=1e-3)
    assert [r["scores"]["unsafe"] > 0 for r in batch] == [False, False, True, False]
    assert [r["scores"]["text_area"] > 0.005 for r in batch] == [False, True, False, True]


def safety_checker_on_clips_tower(folder: Path, clip: Path) -> Path:
    """A tiny safety checker whose vision tower and projection are the tiny CLIP's (as
    diffusers' checker is built on OpenAI's CLIP ViT-L/14), flagging the stripes."""
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import CLIPImageProcessor, CLIPModel

    make_tiny_safety_checker(folder)
    checker = StableDiffusionSafetyChecker.from_pretrained(folder)
    model = CLIPModel.from_pretrained(clip)
    tower = {k.removeprefix("vision_model."): v for k, v in model.vision_model.state_dict().items()}
    checker.vision_model.load_state_dict(
        {k: tower[k.removeprefix("vision_model.")] for k in checker.vision_model.state_dict()})
    checker.visual_projection.load_state_dict(model.visual_projection.state_dict())
    pixels = CLIPImageProcessor.from_pretrained(folder)(images=[stripes()],
                                                         return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        checker.concept_embeds[:1] = checker.visual_projection(checker.vision_model(pixels)[1])
    checker.save_pretrained(folder, safe_serialization=True)
    return folder


def test_a_safety_checker_on_clips_own_tower_shares_its_run(tmp_path: Path) -> None:
    clip = make_tiny_clip(tmp_path / "clip")
    shared = safety_checker_on_clips_tower(tmp_path / "safety", clip)
    spec = QualitySpec(clip_model=str(clip), min_alignment=-1.0, safety_model=str(shared),
                       text=False)
    checker = QualityChecker(GateSettings.of(spec, "diffusers"))
    assert checker.shared_tower and checker.alignment and checker.safety
    calls = {"clip": 0, "safety": 0}
    checker.alignment.model.vision_model.register_forward_hook(
        lambda *_: calls.__setitem__("clip", calls["clip"] + 1))
    checker.safety.model.vision_model.register_forward_hook(
        lambda *_: calls.__setitem__("safety", calls["safety"] + 1))
    pictures, prompts = [scene(1), stripes(), flat()], ["a shoe", "stripes", "grey"]
    records = checker(pictures, prompts)
    assert calls == {"clip": 1, "safety": 0}  # one tower run for both checks
    # the same scores as each model computes alone
    assert [r["scores"]["unsafe"] for r in records] == pytest.approx(
        SafetyScorer(str(shared))(pictures), abs=1e-4)
    unsafe = [r["scores"]["unsafe"] for r in records]
    assert unsafe[1] == pytest.approx(0.1, abs=1e-3) and unsafe[1] == max(unsafe)  # its concept
    assert [r["scores"]["alignment"] for r in records] == pytest.approx(
        AlignmentScorer(str(clip))(pictures, prompts), abs=1e-4)
    # another tower (the usual tiny checker) or another preprocessing: each runs its own
    other = QualitySpec(clip_model=str(clip), min_alignment=-1.0, text=False,
                        safety_model=str(make_tiny_safety_checker(tmp_path / "other")))
    assert not QualityChecker(GateSettings.of(other, "diffusers")).shared_tower
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}
                       ).save_pretrained(shared)
    assert not QualityChecker(GateSettings.of(spec, "diffusers")).shared_tower


def test_twins_are_judged_in_plan_order_whatever_order_renders_arrive_in() -> None:
    hashes = {"a": phash(scene(1)), "b": phash(twin(scene(1))), "c": phash(scene(2))}
    for order in (["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"]):
        twins = TwinFilter([["a", "b", "c"]], 6, hashes.get)
        released = [k for key in order for k in twins.add(key)]
        assert sorted(released) == ["a", "c"]
        assert list(twins.twins) == ["b"] and twins.twins["b"][0] == "a"
    # the twin rendered again with a different picture is released; the kept ones stay kept
    hashes["b"] = phash(scene(7))
    assert twins.add("b") == ["b"]
    # nothing is released before its whole group has arrived
    waiting = TwinFilter([["a", "b"], ["c", "a"]], 6, hashes.get)
    assert waiting.add("a") == [] and waiting.add("c") == ["c"] and waiting.add("b") == ["a", "b"]


# -- a whole run --------------------------------------------------------------------------------


def _campaign(tmp_path: Path, campaign_data: dict[str, Any], **quality: Any) -> adgen.CampaignSpec:
    data = dict(campaign_data, quality=quality, placements=["300x250"])
    data["creatives"] = [dict(data["creatives"][0], product=None,
                              prompt="a bottle in the {{ region }}")]
    data["audience"] = dict(data["audience"], segment_by=["region"])
    return adgen.load_campaign(write_campaign(tmp_path, data))


def _variants(campaign: adgen.CampaignSpec) -> dict[str, tuple[str, int]]:
    """``{"north-v0": (variant id, seed), ...}`` of a campaign segmented by region."""
    plan = make_plan(campaign)
    return {f"{json.loads(row.segment)['region']}-v{row.variant_index}": (row.variant_id, row.seed)
            for row in plan.variants.itertuples()}


def test_run_retries_twins_and_failures_and_records_every_seed(
    tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    campaign = _campaign(tmp_path, campaign_data, retries=2, text=True)
    variants = _variants(campaign)
    (north0_id, north0), (north1_id, north1) = variants["north-v0"], variants["north-v1"]
    south0_id, south0 = variants["south-v0"]
    kinds = {north1: f"twin:{north0}",  # a twin of v0: rendered again with the next seed
             south0: "text", south0 + 1: "flat", south0 + 2: "dark"}  # fails every seed
    fake = ScriptedRenderer(kinds)
    result = adgen.run(campaign, make_renderer=lambda: fake)
    manifest = result.manifest.set_index("variant_id")
    # the twin got a new seed and the run says which, and why the first was rejected
    row = manifest.loc[north1_id]
    quality = json.loads(row["quality"])
    assert row["status"] == "ok" and row["seed"] == north1 + 1 == quality["seed"]
    assert quality["rejected"] == [{"seed": north1, "reasons": [
        quality["rejected"][0]["reasons"][0]]}]
    assert quality["rejected"][0]["reasons"][0].startswith(
        f"near-duplicate of {north0_id} (pHash distance ")
    assert set(quality["scores"]) == {"brightness", "contrast", "sharpness", "text_area"}
    with Image.open(result.out / row["path"]) as picture:  # the asset shows the new seed
        assert picture.size == (300, 250)
    # the variant whose every seed failed is a failed row, with no file and no customers
    failed = manifest.loc[south0_id]
    assert failed["path"] == "" and failed["status"].startswith(
        f"failed: render failed: quality: seed {south0}: text in the scene")
    assert [r["seed"] for r in json.loads(failed["quality"])["rejected"]] == [
        south0, south0 + 1, south0 + 2]
    assert south0_id not in set(result.assignments["variant_id"])
    run_json = json.loads((result.out / "run.json").read_text())
    assert run_json["quality"][south0_id]["seed"] is None
    assert [r["seed"] for r in run_json["quality"][north1_id]["rejected"]] == [north1]
    assert run_json["quality"][north1_id]["seed"] == north1 + 1
    # the other variants passed on their first seed and carry their scores
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) == len(variants) - 1 == result.rendered  # the twin counts once
    # rerun: the accepted renders are cached with their scores; only the failed one renders
    again = ScriptedRenderer(kinds)
    second = adgen.run(campaign, make_renderer=lambda: again)
    assert again.seeds == [south0, south0 + 1, south0 + 2]
    assert second.manifest.set_index("variant_id").loc[north1_id, "seed"] == north1 + 1
    # a stricter threshold measures the cache again: renders failing it are rendered again
    stricter = _campaign(tmp_path, campaign_data, retries=2, min_contrast=0.99)
    strict = ScriptedRenderer(kinds)
    third = adgen.run(stricter, make_renderer=lambda: strict)
    assert (third.manifest["status"] != "ok").all() and len(strict.seeds) == 3 * len(variants)


def test_a_cached_twin_rendered_again_counts_as_rendered(
    tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    # a first run without twin detection caches the twin (as a run killed before its retry
    # would); the next run finds it, renders it again, and says it rendered one picture
    loose = _campaign(tmp_path, campaign_data, retries=2, max_duplicate_distance=None)
    variants = _variants(loose)
    (_, north0), (north1_id, north1) = variants["north-v0"], variants["north-v1"]
    kinds = {north1: f"twin:{north0}"}
    assert adgen.run(loose, make_renderer=lambda: ScriptedRenderer(kinds)).rendered == len(
        variants)
    strict = ScriptedRenderer(kinds)
    again = adgen.run(_campaign(tmp_path, campaign_data, retries=2),
                      make_renderer=lambda: strict)
    assert strict.seeds == [north1 + 1] and again.rendered == 1
    assert again.summary()["cached"] == len(variants) - 1  # the twin is not counted twice
    assert again.manifest.set_index("variant_id").loc[north1_id, "seed"] == north1 + 1


def test_run_with_the_diffusers_renderer_scores_alignment_and_safety(
    tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    from adgen.testing import make_tiny_sd_pipeline

    tiny = make_tiny_sd_pipeline(tmp_path / "tiny-sd")
    clip = make_tiny_clip(tmp_path / "clip")
    safety = make_tiny_safety_checker(tmp_path / "safety")
    data = dict(campaign_data, variants=1, renderer={
        "name": "diffusers", "model": str(tiny), "width": 64, "height": 64, "steps": 1})
    campaign = _campaign(tmp_path, data, clip_model=str(clip), min_alignment=-1.0,
                         safety_model=str(safety), text=False, min_sharpness=None,
                         max_duplicate_distance=None, retries=0)
    adgen.run(campaign)
    manifest = pd.read_parquet(campaign.output_dir / "manifest.parquet")
    assert len(manifest) == 3 and (manifest["status"] == "ok").all()
    scores = [json.loads(q)["scores"] for q in manifest["quality"]]
    assert all({"alignment", "unsafe"} <= set(s) for s in scores)
    assert all(s["unsafe"] < 0 for s in scores)


def test_safety_is_on_by_default_for_a_generative_renderer_and_names_its_model(
    tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    assert settings().safety is False and settings().text is False
    generative = GateSettings.of(QualitySpec(), "diffusers")
    assert generative.safety and generative.text
    assert not GateSettings.of(QualitySpec(safety=False), "diffusers").safety
    with pytest.raises(adgen.RenderError, match=r"safety checker model .*nowhere.* set "
                       r"quality.safety_model to .* quality.safety: false$"):
        SafetyScorer(str(tmp_path / "nowhere"))


def test_quality_settings_are_validated(tmp_path: Path, campaign_data: dict[str, Any]) -> None:
    with pytest.raises(adgen.CampaignError, match="retries"):
        _campaign(tmp_path, campaign_data, retries=-1)
    with pytest.raises(adgen.CampaignError, match="max_text_areas"):
        _campaign(tmp_path, campaign_data, max_text_areas=0.1)


# -- the review sheet ---------------------------------------------------------------------------


def quality_output(root: Path) -> Path:
    """A sample output folder whose variants passed, were retried, and failed the gate."""
    from tests.browser.sample_output import make_output

    out = make_output(root, video=False, analysis=False)
    manifest = pd.read_parquet(out / "manifest.parquet")
    variants = list(dict.fromkeys(manifest["variant_id"]))
    records = {
        variants[0]: {"scores": {"alignment": 0.31, "sharpness": 0.01, "text_area": 0.0},
                      "rejected": [], "seed": 1000},
        variants[1]: {"scores": {"alignment": 0.22, "sharpness": 0.004, "text_area": 0.001},
                      "seed": 1002, "rejected": [
                          {"seed": 1001, "reasons": ["text in the scene: 4.00% of the picture "
                                                     "(max 0.20%)"]}]},
        variants[2]: {"scores": {"alignment": 0.27, "sharpness": 0.02}, "rejected": []},
    }
    manifest["quality"] = [json.dumps(records.get(v, {})) for v in manifest["variant_id"]]
    manifest["status"] = "ok"
    failed = manifest[manifest["variant_id"] == variants[3]].iloc[:1].copy()
    failed[["path", "placement", "sha256", "asset_key"]] = ""
    failed["status"] = "failed: quality: seed 7: flat: contrast 0.000 < 0.03"
    failed["quality"] = json.dumps({"rejected": [
        {"seed": 7, "reasons": ["flat: contrast 0.000 < 0.03"]}]})
    manifest = pd.concat([manifest[manifest["variant_id"] != variants[3]], failed])
    manifest.to_parquet(out / "manifest.parquet", index=False)
    return out


def test_review_sheet_shows_scores_and_marks_retried_and_rejected_variants(
    tmp_path: Path
) -> None:
    import html as html_lib

    from adgen.review.sheet import write_report

    out = quality_output(tmp_path)
    page = write_report(out).read_text(encoding="utf-8")
    cards = page.split("<article ")[1:]
    assert len(cards) == 4
    passed, retried, other, rejected = cards
    assert 'data-quality="passed"' in passed and 'data-q-alignment="0.31"' in passed
    assert "Alignment</dt><dd>0.310" in passed and "Text</dt><dd>0.00%" in passed
    assert 'data-quality="retried"' in retried and 'data-q-retries="1"' in retried
    assert "retried · 1 seed rejected" in retried
    assert "<code>1001</code> text in the scene: 4.00% of the picture (max 0.20%)" in (
        html_lib.unescape(retried))
    assert 'data-quality="passed"' in other
    assert 'data-quality="rejected"' in rejected and ">rejected</span>" in rejected
    assert "failed: quality: seed 7: flat" in html_lib.unescape(rejected)
    assert "could not be shown" not in page  # a failed variant has no file, by design
    for option in ('value="retried"', 'value="rejected"', 'value="alignment"',
                   'value="unsafe"', 'value="text_area"'):
        assert option in page


@pytest.mark.usefixtures("ray_pool")
def test_the_ray_backend_gates_renders_as_the_local_one_does(
    tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    """On Ray the twins are found on the driver from the hashes the actors send back; with
    ``post: cluster`` a twin's first picture is never post-processed, and every asset is the
    local backend's, byte for byte."""
    data = dict(campaign_data, quality={"retries": 2, "text": True}, placements=["300x250"])
    data["creatives"] = [dict(data["creatives"][0], product=None,
                              prompt="a bottle in the {{ region }}")]
    data["audience"] = dict(data["audience"], segment_by=["region"])
    path = write_campaign(tmp_path, data)
    variants = _variants(adgen.load_campaign(path))
    north0 = variants["north-v0"][1]
    north1_id, north1 = variants["north-v1"]
    south0_id, south0 = variants["south-v0"]
    kinds = {north1: f"twin:{north0}", south0: "text", south0 + 1: "flat", south0 + 2: "dark"}
    runs = {}
    for name, options in {"local": [], "cluster": ["backend.name=ray", "backend.post=cluster"],
                          "driver": ["backend.name=ray", "backend.post=driver"]}.items():
        campaign = adgen.load_campaign(path, overrides=[f"output={tmp_path / name}", *options])
        runs[name] = adgen.run(campaign, make_renderer=lambda: ScriptedRenderer(kinds))
    local = runs["local"].manifest
    assert local.set_index("variant_id").loc[north1_id, "seed"] == north1 + 1
    for name in ("cluster", "driver"):
        manifest = runs[name].manifest
        for column in ("variant_id", "status", "seed", "quality", "path", "sha256"):
            assert list(manifest[column]) == list(local[column]), (name, column)
        # only the kept pictures were made into assets: one file per ok row
        files = sorted(p.relative_to(runs[name].out).as_posix()
                       for p in (runs[name].out / "assets").rglob("*.jpg"))
        assert files == sorted(manifest.loc[manifest["status"] == "ok", "path"])
    assert south0_id not in set(runs["cluster"].assignments["variant_id"])
