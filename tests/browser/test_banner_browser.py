"""HTML5 banners in a real headless Chromium (Playwright driving the system browser), loaded
from the ZIP's contents with every network request refused: the animation runs and ends on
the final frame, which matches the static ad; the first frame has its layout without the
captions; a click opens the clickTag URL. Skipped without Playwright or Chromium (see
``tests/system_deps.sh``). Saves the final frames to ``artifacts/banner-*.png``."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import adgen
from tests.export_fixture import URL, make_output


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> adgen.RunResult:
    return make_output(tmp_path_factory.mktemp("banners"))


def _screenshot(page: Any, width: int, height: int) -> np.ndarray:
    png = page.screenshot(clip={"x": 0, "y": 0, "width": width, "height": height})
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("placement", ["iab_300x250", "iab_728x90"])
def test_banner_plays_to_the_static_ad_and_clicks_through(
        browser: Any, run: adgen.RunResult, tmp_path: Path, artifacts: Path,
        placement: str) -> None:
    variant = sorted(set(run.manifest["variant_id"]))[0]
    row = run.manifest[(run.manifest["variant_id"] == variant)
                       & (run.manifest["placement"] == placement)].iloc[0]
    width, height = int(row["width"]), int(row["height"])
    static = np.asarray(Image.open(run.out / row["path"]).convert("RGB"), dtype=np.int16)
    folder = tmp_path / "banner"
    with zipfile.ZipFile(run.out / "exports" / "html5" / variant / f"{placement}.zip") as zf:
        zf.extractall(folder)

    context = browser.new_context(viewport={"width": width, "height": height})
    outside: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith("file://"):
            request_route.continue_()
        elif url == URL:  # the landing page: answered here, nothing leaves the machine
            request_route.fulfill(status=200, content_type="text/html", body="<p>landing</p>")
        else:
            outside.append(url)
            request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto((folder / "index.html").as_uri())
    page.wait_for_function("Array.from(document.images).every((i) => i.complete "
                           "&& i.naturalWidth > 0)")

    # the timeline: one animation per caption, at most 3 loops, ending within 30 s
    timing = page.evaluate("""document.getAnimations().map((a) => {
        const t = a.effect.getComputedTiming();
        return [a.effect.target.dataset.role, t.endTime, t.iterations]; })""")
    assert {role for role, _, _ in timing} == {"headline", "cta"}
    assert all(end <= 30_000 and loops <= 3 for _, end, loops in timing)

    # first frame: the static ad's picture and logo, captions not yet there
    page.evaluate("document.getAnimations().forEach((a) => { a.pause(); a.currentTime = 0; })")
    first = _screenshot(page, width, height)
    boxes = page.evaluate("""Array.from(document.querySelectorAll('.caption')).map((i) =>
        [i.offsetLeft, i.offsetTop, i.offsetLeft + i.offsetWidth, i.offsetTop + i.offsetHeight])""")
    mask = np.zeros((height, width), dtype=bool)
    for left, top, right, bottom in boxes:
        mask[top:bottom, left:right] = True
    assert mask.any() and not mask.all()
    assert np.abs(first - static)[~mask].mean() < 4  # same crop, logo and panel
    assert np.abs(first - static)[mask].mean() > 15  # the captions enter later

    # the animation really runs to its end and stays on the final frame: the static ad
    page.evaluate("document.getAnimations().forEach((a) => a.play())")
    page.wait_for_function("document.getAnimations().every((a) => a.playState === 'finished')",
                           timeout=20_000)
    final = _screenshot(page, width, height)
    Image.fromarray(final.astype(np.uint8)).save(artifacts / f"banner-{placement}.png")
    assert np.abs(final - static).mean() < 3
    # around the text the static JPEG has its compression ringing; the PNG captions do not
    assert np.abs(final - static)[mask].mean() < 10
    assert np.abs(final - static)[mask].mean() < np.abs(first - static)[mask].mean() / 3

    # a click opens the clickTag URL in a new window
    with page.expect_popup() as popup_info:
        page.click("#ad")
    popup = popup_info.value
    popup.wait_for_load_state()
    assert popup.url == URL
    assert popup.inner_text("p") == "landing"
    context.close()
    assert outside == [] and problems == []
