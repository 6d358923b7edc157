"""Caption text: fonts and fallback, right-to-left and CJK drawing, wrapping, fitting, contrast."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont

from adgen.errors import AssetError, PostProcessError
from adgen.post import color
from adgen.post import text as t

needs_raqm = pytest.mark.skipif(not t.RAQM, reason="Pillow without libraqm")


def draw_block(text: str, size: int = 40, *, bold: bool = False,
               box: tuple[int, int, int, int] = (0, 0, 480, 90)) -> tuple[Image.Image, t.TextBlock]:
    image = Image.new("L", (box[2], box[3]), 0)
    block = t.layout(text, t.font_chain(None, bold=bold), size, box,
                     t.TextStyle(bold=bold, align="start"))
    assert block is not None
    t.draw_text(ImageDraw.Draw(image), block, 255)
    return image, block


def glyph(font: ImageFont.FreeTypeFont, char: str) -> Image.Image:
    image = Image.new("L", (80, 80), 0)
    ImageDraw.Draw(image).text((10, 60), char, font=font, fill=255, anchor="ls")
    return image


def test_bundled_fonts_and_licences_are_shipped():
    for path in (t.REGULAR, t.BOLD, t.CJK):
        assert path.is_file()
    licences = {p.name for p in t.FONTS_DIR.glob("LICENSE-*")}
    assert licences == {"LICENSE-DejaVu.txt", "LICENSE-WenQuanYi.txt",
                        "LICENSE-NotoColorEmoji.txt"}
    assert t.EMOJI.is_file()
    assert "SIL OPEN FONT LICENSE Version 1.1" in (
        t.FONTS_DIR / "LICENSE-NotoColorEmoji.txt").read_text()
    assert "Bitstream" in (t.FONTS_DIR / "LICENSE-DejaVu.txt").read_text()
    assert "Apache License" in (t.FONTS_DIR / "LICENSE-WenQuanYi.txt").read_text()


def test_runs_fall_back_to_the_font_that_has_the_glyph():
    runs = t.split_runs("Sale 夏日 -20%", t.font_chain())
    assert [(text, face.path.name) for text, face in runs] == [
        ("Sale ", "DejaVuSans.ttf"), ("夏日 -20%", "wqy-microhei.ttc")
    ]
    arabic = t.split_runs("خصم 20% على Nike", t.font_chain())
    assert len(arabic) == 1 and arabic[0][1].path == t.REGULAR


def test_cjk_in_a_bold_caption_is_emboldened():
    runs = t.split_runs("Big 特惠", t.font_chain(bold=True))
    assert runs[0][1] == t.Face(t.BOLD) and runs[1][1] == t.Face(t.CJK, 0, embolden=True)


def test_missing_characters_finds_private_use_and_unassigned_but_not_joiners():
    chain = t.font_chain()
    assert t.missing_characters("A\ue000B\u0378 e\u0301\u200d!", chain) == [(1, "\ue000"),
                                                                         (3, "\u0378")]
    assert t.describe_char("\ue000") == "U+E000 (private use)"
    assert t.describe_char("\u0378") == "U+0378 (unassigned)"


@pytest.mark.parametrize("sample", ["夏日特惠", "セール", "여름 세일", "Ærøskøbing Łódź"])
def test_drawn_characters_are_real_glyphs_not_tofu(sample):
    for char in sample.replace(" ", ""):
        (run, face), = t.split_runs(char, t.font_chain())
        font = t.load_font(face.path, face.index, 48)
        tofu = glyph(font, "\u0378")  # unassigned: the font's .notdef box
        drawn = glyph(font, run)
        assert drawn.getbbox() is not None
        assert ImageChops.difference(drawn, tofu).getbbox() is not None, f"{char!r} is tofu"


def test_accents_are_drawn_above_capitals_inside_the_box():
    plain, _ = draw_block("E")
    accented, block = draw_block("É")
    assert ImageChops.difference(plain, accented).getbbox() is not None
    ink = accented.getbbox()
    assert ink is not None and block.ink[1] >= 0 and ink[1] >= block.ink[1]


@needs_raqm
def test_hebrew_with_latin_is_laid_out_right_to_left():
    text = "מבצע ABC"
    ours, block = draw_block(text)
    font = t.load_font(t.REGULAR, 0, 40)
    origin = (block.runs[0].x, block.runs[0].baseline)
    for direction, same in (("rtl", True), ("ltr", False)):
        ref = Image.new("L", ours.size, 0)
        ImageDraw.Draw(ref).text(origin, text, font=font, fill=255, anchor="ls",
                                 direction=direction)
        assert (ImageChops.difference(ours, ref).getbbox() is None) == same


@needs_raqm
def test_arabic_is_shaped():
    text = "سلام"
    ours, block = draw_block(text)
    basic = ImageFont.truetype(str(t.REGULAR), 40, layout_engine=ImageFont.Layout.BASIC)
    unshaped = Image.new("L", ours.size, 0)
    ImageDraw.Draw(unshaped).text((block.runs[0].x, block.runs[0].baseline), text[::-1],
                                  font=basic, fill=255, anchor="ls")
    assert ImageChops.difference(ours, unshaped).getbbox() is not None
    assert block.runs[0].rtl and t.is_rtl(text) and not t.is_rtl("Sale سلام")


def test_wrap_keeps_lines_within_width_and_explicit_newlines():
    chain = t.font_chain()
    lines = t.wrap("Refill anywhere. Keeps cold\nfor 24 hours, every day", chain, 20, 150)
    assert lines is not None and len(lines) >= 3
    assert all(t.measure(line, chain, 20) <= 150 for line in lines)
    assert "cold" in lines[lines.index(next(x for x in lines if "cold" in x))]
    assert any(line.startswith("for 24") for line in lines)
    assert t.wrap("Supercalifragilistic", chain, 20, 60) is None


def test_cjk_wraps_between_characters_and_keeps_punctuation_attached():
    chain = t.font_chain()
    lines = t.wrap("夏日特惠，全场八折，限时抢购！", chain, 30, 200)
    assert lines is not None and len(lines) > 1
    assert not any(line.startswith(("，", "！")) for line in lines)


# Kinsoku shori: what may not start a line (closing punctuation, iteration marks, small kana, the
# prolonged sound mark) and what may not end one (opening brackets).
NOT_FIRST = set("、。，．・：；？！）」』】〕〉》〙〗〛｝］”’々ゝゞヽヾ"
                "ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶー")
NOT_LAST = set("「『（【〔〈《〘〖〚｛［“‘")
KINSOKU = [
    "「ちょっと待って」と彼女は言った。キャンペーンはもうすぐ終わりますよ、ぜひチェックしてね！",
    "ファイル、ウィーク、ヴォーカル、ティッシュ、ぎゅうにゅう、びょういん、くゎし、ぁぃぅぇぉ",
    "スーパーセール開催中！（期間限定）『夏の特別価格』をお見逃しなく。",
    "他说：“你好”。我们走吧，好吗？【限时】《夏日》〔特价〕〈新品〉",
    "時々、人々は「まだ ？」と思う。こゝろ、いすゞ、バヽ、ハヾ、東京・大阪・名古屋",
    "Trail runner – berry、まだ気になりますか？",
    "新しいTrail runnerシューズ、Summer saleで20%オフ！",
]


def lines_at_every_width(text: str, size: int = 16) -> list[list[str]]:
    chain = t.font_chain(bold=True)
    found = []
    narrowest = int(t.widest_word(text, chain, size)[1]) + 1
    for width in range(narrowest, int(t.measure(text, chain, size)) + size, 5):
        lines = t.wrap(text, chain, size, width)
        assert lines is not None, width
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")
        assert all(t.measure(line, chain, size) <= width for line in lines)
        found.append(lines)
    return found


@pytest.mark.parametrize("text", KINSOKU)
def test_cjk_lines_obey_kinsoku_at_every_width(text):
    wraps = lines_at_every_width(text)
    assert max(len(lines) for lines in wraps) > 3  # narrow widths really broke the text
    for lines in wraps:
        assert not [line for line in lines if line[0] in NOT_FIRST], lines
        assert not [line for line in lines if line[-1] in NOT_LAST], lines


def test_mixed_latin_and_cjk_breaks_between_scripts_and_keeps_latin_words_whole():
    text = "新しいTrail runnerシューズ、Summer saleで20%オフ！"
    wraps = lines_at_every_width(text)
    broke_between_scripts = False
    for lines in wraps:
        words = [w for line in lines for w in re.findall(r"[A-Za-z0-9%]+", line)]
        assert words == ["Trail", "runner", "Summer", "sale", "20%"], lines
        broke_between_scripts |= any(line.startswith(("Trail", "シ", "で")) for line in lines)
    assert broke_between_scripts
    chain = t.font_chain()
    size = 20
    width = t.measure("新しいTrail runner", chain, size) + 1
    assert t.wrap(text, chain, size, width) == ["新しいTrail runner", "シューズ、", "Summer saleで",
                                                "20%オフ！"]


def test_breaks_next_to_cjk_follow_uax14_and_a_space_before_a_closing_mark_does_not_break():
    assert t._tokens("まだ ？") == (("", "ま"), ("", "だ ？"))
    assert t._tokens("￥1,500です") == (("", "￥1,500"), ("", "で"), ("", "す"))
    assert t._tokens("Shop 今すぐ") == (("", "Shop"), (" ", "今"), ("", "す"), ("", "ぐ"))


@pytest.mark.parametrize("text", ["Sale  ends 2026-03-15 / and/or", "Summer sale ☀️🏖️ -20%",
                                  "L'été, c'est maintenant !", "Ærøskøbing — Łódź\t2×1"])
def test_text_without_cjk_breaks_at_spaces_only_as_before(text):
    words = [w for w in re.split(r"[ \t]+", text) if w]
    assert [piece for _, piece in t._tokens(text)] == words
    assert [sep for sep, _ in t._tokens(text)][1:] == [" "] * (len(words) - 1)


def block_lines(block: t.TextBlock) -> list[str]:
    """The text of each line of a fitted block, top to bottom."""
    rows: dict[int, list[t.Run]] = {}
    for run in block.runs:
        rows.setdefault(run.baseline, []).append(run)
    return ["".join(run.text for run in sorted(row, key=lambda run: run.x))
            for _, row in sorted(rows.items())]


def test_the_catalog_headline_that_failed_in_300x600_fits_and_obeys_kinsoku():
    # The Japanese catalog headline in the 300x600 banner's headline box (bold, 11-48 px). At
    # 11 px it fits one line of 240 px by its advance, but the emboldened kana's ink overhangs it.
    text = "Trail runner – berry、まだ気になりますか？"
    box = (30, 379, 270, 502)
    style = t.TextStyle(bold=True, min_size=11, max_size=48)
    assert t.layout(text, t.font_chain(bold=True), 11, box, style, "ja") is None
    block = t.fit_text(text, box, style, role="headline", lang="ja")
    lines = block_lines(block)
    assert block.lines == len(lines) >= 2 and block.size > style.min_size
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert not [line for line in lines if line[0] in NOT_FIRST or line[-1] in NOT_LAST]
    assert all(word in " ".join(lines).split() for word in ("Trail", "runner"))
    assert_drawn_inside(block, box, (300, 600))


def test_ink_wider_than_the_box_wraps_again_only_when_nothing_else_fits():
    chain = t.font_chain(bold=True)
    text = "まだ気になりますか"
    width = int(t.measure(text, chain, 12))  # the advance fits; the emboldened ink does not
    box = (0, 0, width, 100)
    style = t.TextStyle(bold=True, min_size=12, max_size=12)
    assert t.wrap(text, chain, 12, width) == [text]
    assert t.layout(text, chain, 12, box, style) is None
    trimmed = t.layout(text, chain, 12, box, style, trim=True)
    assert trimmed is not None and trimmed.lines == 2
    assert trimmed.ink[0] >= 0 and trimmed.ink[2] <= width
    assert t.fit_text(text, box, style).lines == 2
    # where the text fits without it, nothing changes
    roomy = (0, 0, width + 20, 100)
    assert t.layout(text, chain, 12, roomy, style, trim=True) == t.layout(text, chain, 12, roomy,
                                                                          style)


def test_korean_breaks_at_spaces_like_latin():
    chain = t.font_chain()
    lines = t.wrap("여름 세일 지금 시작합니다", chain, 20, 110)
    assert lines is not None and len(lines) > 1
    assert set(" ".join(lines).split()) == {"여름", "세일", "지금", "시작합니다"}


def test_balanced_wrap_evens_out_lines():
    chain = t.font_chain(bold=True)
    greedy = t.wrap("Summer hydration, zero plastic", chain, 40, 600)
    even = t.balanced_wrap("Summer hydration, zero plastic", chain, 40, 600)
    assert greedy == ["Summer hydration, zero", "plastic"]
    assert even == ["Summer hydration,", "zero plastic"]


@pytest.mark.parametrize("text", ["Shop now", "Summer hydration, zero plastic",
                                  "Refill anywhere. Keeps cold for 24 hours. Every single day."])
def test_fit_finds_the_largest_size_with_ink_inside_the_box(text):
    box = (20, 30, 420, 190)
    style = t.TextStyle(bold=True, min_size=8, max_size=150)
    block = t.fit_text(text, box, style)
    assert box[0] <= block.ink[0] and box[1] <= block.ink[1]
    assert block.ink[2] <= box[2] and block.ink[3] <= box[3]
    bigger = t.layout(text, t.font_chain(bold=True), block.size + 1, box, style)
    assert bigger is None or block.size == style.max_size
    assert_drawn_inside(block, box, (500, 250))


def assert_drawn_inside(block: t.TextBlock, box: tuple[int, int, int, int],
                        canvas: tuple[int, int]) -> None:
    """Drawn on a canvas of that size, every pixel of ``block``'s ink lies inside ``box``."""
    image = Image.new("L", canvas, 0)
    t.draw_text(ImageDraw.Draw(image), block, 255)
    ink = image.getbbox()
    assert ink is not None
    assert box[0] <= ink[0] and box[1] <= ink[1] and ink[2] <= box[2] and ink[3] <= box[3]


def test_button_prefers_one_line():
    box = (0, 0, 200, 120)
    style = t.TextStyle(bold=True, min_size=8, max_size=80, max_lines=2, pad_em=(0.9, 0.42),
                        one_line_first=True)
    assert t.fit_text("Shop now", box, style).lines == 1


def test_too_long_caption_error_names_role_length_placement_and_fix():
    text = "word " * 80
    with pytest.raises(PostProcessError) as info:
        t.fit_text(text.strip(), (0, 0, 200, 60), t.TextStyle(min_size=12, max_size=40),
                   role="headline", where="placement 'iab_300x250' (300x250)")
    message = str(info.value)
    assert message.startswith(
        "caption 'headline' (399 characters) does not fit placement 'iab_300x250' (300x250)"
    )
    assert "minimum font size of 12 px" in message
    assert re.search(r"shorten it to about \d+ characters, or drop this placement", message)


def test_too_wide_word_error_names_the_word():
    with pytest.raises(PostProcessError, match="the word 'Donaudampfschifffahrt' alone is"):
        t.fit_text("Donaudampfschifffahrt", (0, 0, 8, 60), t.TextStyle(min_size=12),
                   role="cta", where="placement 'x'")


def test_brand_font_errors_name_the_file(tmp_path):
    missing = tmp_path / "Brand.ttf"
    with pytest.raises(AssetError, match=re.escape(f"font '{missing}' does not exist")):
        t.check_font(missing)
    broken = tmp_path / "Broken.ttf"
    broken.write_bytes(b"this is not a font")
    with pytest.raises(AssetError, match=re.escape(f"font '{broken}' is not a readable")):
        t.check_font(broken)


def test_brand_font_comes_first_and_bundled_fonts_fill_its_gaps(tmp_path):
    from fontTools import subset

    brand = tmp_path / "Latin.ttf"
    options = subset.Options()
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    font = subset.load_font(str(t.REGULAR), options)
    subsetter.populate(text="ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz")
    subsetter.subset(font)
    subset.save_font(font, str(brand), options)
    runs = t.split_runs("Sale 50€ 特惠", t.font_chain(brand))
    assert [face.path for _, face in runs] == [brand, t.REGULAR, t.CJK]


def test_wcag_contrast_values():
    assert color.contrast(color.WHITE, color.BLACK) == pytest.approx(21.0)
    assert color.contrast((118, 118, 118), color.WHITE) == pytest.approx(4.54, abs=0.01)
    assert color.parse_color("0A84FF") == (10, 132, 255)
    assert color.parse_color("navy") == (0, 0, 128)
    with pytest.raises(PostProcessError, match="brand colour 'blurple' is not a colour"):
        color.parse_color("blurple")


def test_scrim_alpha_reaches_the_target_on_stripes():
    stripes = np.array([[0, 0, 0], [255, 255, 255]] * 50, dtype=np.uint8)
    alpha = color.scrim_alpha(stripes, color.WHITE, color.BLACK)
    assert alpha is not None and 0.5 < alpha < 1
    veiled = np.rint(stripes * (1 - alpha)).astype(np.uint8)
    assert color.text_contrast(color.WHITE, color.luminance(veiled)) >= 4.5


# -- fitting remembers --------------------------------------------------------------------------


def test_a_caption_is_fitted_once_per_box_size_wherever_the_box_is(monkeypatch):
    style = t.TextStyle(bold=True, min_size=12, max_size=90)
    text = "Remembered across placements 7c1f"  # a text no other test fits
    layouts: list[int] = []
    real = t.layout

    def counted(*args, **kwargs):
        layouts.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(t, "layout", counted)
    first = t.fit_text(text, (0, 0, 400, 160), style)
    searched = len(layouts)
    moved = t.fit_text(text, (37, 911, 437, 1071), style)
    assert searched > 3 and len(layouts) == searched  # the second box cost no layout at all
    assert moved == t.shifted(first, 37, 911)
    assert moved.frame[0] >= 37 and moved.ink[1] >= 911
    t.fit_text(text, (0, 0, 300, 160), style)  # another size: searched again
    assert len(layouts) > searched


def test_a_remembered_block_is_a_copy_its_caller_may_change():
    style = t.TextStyle(min_size=12, max_size=60)
    block = t.fit_text("Copies, not the cache 51aa", (0, 0, 300, 100), style)
    block.runs.clear()
    again = t.fit_text("Copies, not the cache 51aa", (0, 0, 300, 100), style)
    assert again.runs and again.size == block.size


def test_a_remembered_misfit_still_names_the_caption_and_placement_asked_about():
    style = t.TextStyle(min_size=30, max_size=40, max_lines=1)
    box = (0, 0, 120, 40)
    with pytest.raises(PostProcessError, match=r"caption 'headline' .* does not fit story"):
        t.fit_text("Much too long for this box 0d2e", box, style, role="headline", where="story")
    with pytest.raises(PostProcessError, match=r"caption 'cta' .* does not fit 300x250"):
        t.fit_text("Much too long for this box 0d2e", (10, 10, 130, 50), style, role="cta",
                   where="300x250")


def test_characters_are_checked_once_per_caption():
    chain = t.font_chain(None)
    text = "Checked once 93b0 \ue000"
    before = t._missing.cache_info()
    assert t.missing_characters(text, chain) == [(len(text) - 1, "\ue000")]
    assert t.missing_characters(text, chain) == [(len(text) - 1, "\ue000")]
    after = t._missing.cache_info()
    assert after.misses == before.misses + 1 and after.hits == before.hits + 1


@pytest.mark.parametrize("text,bold", [("Summer sale 4a1e", True), ("夏日特惠 4a1e", True),
                                       ("مرحبا بكم 4a1e", False), ("Sale 🎉 4a1e", False)])
def test_text_is_rasterised_once_and_painted_as_drawing_it_would(text, bold, monkeypatch):
    style = t.TextStyle(bold=bold, min_size=12, max_size=48)
    first = t.fit_text(text, (10, 10, 330, 90), style)
    second = t.fit_text(text, (200, 140, 520, 220), style)
    for block in (first, second):  # drawn directly, for reference
        expected = Image.new("RGB", (560, 260), (40, 90, 160))
        t.draw_text(ImageDraw.Draw(expected), block, (250, 250, 250))
        t.paste_color_runs(expected, block)
        painted = Image.new("RGB", (560, 260), (40, 90, 160))
        t.paint_text(painted, block, (250, 250, 250))
        difference = np.abs(np.asarray(painted, dtype=int) - np.asarray(expected, dtype=int))
        assert difference.max() <= (2 if bold and "夏" in text else 0)
    drawn: list[str] = []
    monkeypatch.setattr(t, "draw_text", lambda draw, block, fill: drawn.append(block))
    t.paint_text(Image.new("RGB", (560, 260)), first, (0, 0, 0))
    t.paint_text(Image.new("RGBA", (560, 260)), second, (0, 0, 0))
    assert drawn == []  # both from the mask rasterised above
