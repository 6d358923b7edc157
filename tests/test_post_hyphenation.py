"""Words too long for their box are hyphenated (pyphen, per language) or broken, not failed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import adgen
from adgen.errors import PostProcessError
from adgen.placements import PRESETS
from adgen.post import Caption, compose
from adgen.post import text as t
from tests.conftest import write_campaign

WELSH = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch"


def inside(box, outer) -> bool:
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]


@pytest.mark.parametrize("name", ["iab_300x250", "story"])
def test_welsh_place_name_headline_is_hyphenated_inside_the_safe_area(name):
    placement = PRESETS[name]
    picture = Image.new("RGB", (256, 256), (11, 61, 145))
    result = compose(picture, placement, captions=[Caption("headline", WELSH),
                                                   Caption("cta", "Shop now")],
                     colors=["#0B3D91", "#F2A900"])
    buffer = io.BytesIO()
    result.image.save(buffer, "PNG")
    decoded = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    assert decoded.size == placement.size
    assert result.checks["hyphenated"] == ["headline"]
    box = result.caption_boxes["headline"]
    safe = placement.safe.box(placement.width, placement.height)
    assert inside(box, safe) and inside(box, (0, 0, *placement.size))
    # the text is really drawn there: near-black or near-white ink in the caption box
    pixels = np.asarray(decoded.crop(box)).astype(int)
    extreme = (pixels.min(axis=2) > 200) | (pixels.max(axis=2) < 55)
    assert extreme.sum() > 0.05 * extreme.size


def test_lines_of_a_hyphenated_word_end_in_hyphens_and_rejoin_to_the_word():
    block = t.fit_text(WELSH, (0, 0, 200, 120), t.TextStyle(bold=True, min_size=12))
    lines: dict[int, str] = {}
    for run in block.runs:
        lines[run.baseline] = lines.get(run.baseline, "") + run.text
    texts = [lines[b] for b in sorted(lines)]
    assert block.hyphenated and len(texts) >= 2
    assert all(line.endswith("-") for line in texts[:-1])
    assert "".join(line.removesuffix("-") for line in texts) == WELSH
    assert block.ink[2] <= 200 and block.ink[3] <= 120


def test_german_compound_breaks_at_german_hyphenation_points():
    word = "Donaudampfschifffahrtsgesellschaftskapitänsmütze"
    chain = t.font_chain(None, bold=True)
    lines = t.wrap(word, chain, 24, 260, lang="de_DE")
    assert lines is not None and len(lines) >= 2
    import pyphen

    points = pyphen.Pyphen(lang="de_DE").positions(word)
    cut = 0
    for line in lines[:-1]:
        assert line.endswith("-")
        cut += len(line) - 1
        assert cut in points, f"{line!r} is not cut at a German hyphenation point"
    assert t.wrap(word, chain, 24, 260) is None  # without a language: no breaking


def test_word_without_dictionary_point_is_broken_between_characters():
    word = "X" * 40  # no hyphenation point in any dictionary
    block = t.fit_text(word, (0, 0, 120, 200), t.TextStyle(min_size=14, max_size=40))
    assert block.hyphenated and block.lines >= 3
    assert block.ink[2] <= 120 and block.ink[3] <= 200
    assert "".join(r.text.removesuffix("-") for r in block.runs) == word


def test_text_that_fits_is_not_hyphenated_or_changed():
    style = t.TextStyle(min_size=12, max_size=60)
    block = t.fit_text("Summer hydration, zero plastic", (0, 0, 260, 120), style, lang="de_DE")
    assert not block.hyphenated
    assert [r.text for r in block.runs] == ["Summer", "hydration,", "zero plastic"]


def test_a_box_too_narrow_for_one_letter_still_fails_with_the_word_named():
    with pytest.raises(PostProcessError, match="the word 'Donaudampfschifffahrt' alone is"):
        t.fit_text("Donaudampfschifffahrt", (0, 0, 8, 60), t.TextStyle(min_size=12),
                   role="cta", where="placement 'x'")


def test_cjk_still_wraps_between_characters_without_hyphens():
    block = t.fit_text("夏のセール開催中、送料無料でお届けします", (0, 0, 120, 200),
                       t.TextStyle(min_size=12, max_size=40), lang="ja")
    assert not block.hyphenated
    assert not any(r.text.endswith("-") for r in block.runs)


def test_cjk_broken_as_a_last_resort_gets_no_hyphen_but_latin_beside_it_does():
    # 22 px holds one 12 px character: "か？" (kinsoku keeps them together) must be split
    block = t.fit_text("まだ気になりますか？Trail", (0, 0, 22, 600),
                       t.TextStyle(min_size=12, max_size=12), lang="ja")
    assert block.hyphenated
    lines = [r.text for r in block.runs]
    assert lines[:10] == list("まだ気になりますか？")
    assert "".join(lines[10:]).count("-") >= 1 and "".join(lines).replace("-", "").endswith("Trail")


def test_welsh_headline_passes_preflight_and_is_recorded_in_checks(
        tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["creatives"][0]["captions"]["headline"] = WELSH
    path = write_campaign(tmp_path, campaign_data)
    campaign = adgen.load_campaign(path)
    result = adgen.run(campaign)
    manifest = result.manifest
    assert (manifest["status"] == "ok").all(), manifest["status"].tolist()
    for row in manifest.to_dict("records"):
        checks = json.loads(row["checks"])
        assert checks["hyphenated"] == ["headline"], (row["placement"], checks)
        with Image.open(result.out / row["path"]) as image:
            assert image.size == PRESETS[
                {"300x250": "iab_300x250"}.get(row["placement"], row["placement"])].size
