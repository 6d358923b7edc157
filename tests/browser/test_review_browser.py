"""The review sheet in a real headless Chromium (Playwright driving the system browser).

Needs ``pip install playwright`` and a Chromium binary (``bash tests/system_deps.sh`` installs
Debian's; ``ADGEN_CHROMIUM`` points elsewhere). Never run ``playwright install``: it downloads
browsers. Skipped when either is missing. Saves a screenshot to ``artifacts/review.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adgen.review.sheet import write_report
from tests.browser.conftest import watch
from tests.browser.sample_output import make_output

XSS = {"headline": "<script>alert(1)</script>", "cta": '"><img src=x onerror=alert(1)>'}


def _visible_assets(page: Any) -> list[tuple[str, str]]:
    return [tuple(x) for x in page.evaluate(
        """Array.from(document.querySelectorAll('figure.asset'))
             .filter((f) => f.checkVisibility())
             .map((f) => [f.closest('section').dataset.segment, f.dataset.placement])""")]


def test_review_sheet_in_chromium(tmp_path: Path, browser: Any, artifacts: Path) -> None:
    out = make_output(tmp_path, captions=XSS)
    report = write_report(out)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(10_000)
    problems = watch(page)

    page.goto(report.as_uri())
    page.wait_for_load_state("load")

    # every thumbnail (lazy-loaded) and the plot decode; the video's metadata loads
    for image in page.locator("img").all():
        image.scroll_into_view_if_needed()
    page.wait_for_function("Array.from(document.images).every((i) => i.complete)")
    widths = page.evaluate("Array.from(document.images).map((i) => i.naturalWidth)")
    assert len(widths) == 13 and all(w > 0 for w in widths), widths
    page.wait_for_function("document.querySelector('video').readyState >= 1")
    assert page.evaluate("document.querySelector('video').videoWidth") == 96

    everything = _visible_assets(page)
    assert len(everything) == 13
    count = page.locator("#visible-count")
    assert count.inner_text() == "13 assets"

    # the segment filter hides the other segment (and its rows in the results table)
    page.select_option("#segment-filter", "s1f2e3d4c5b")
    shown = _visible_assets(page)
    assert {seg for seg, _ in shown} == {"s1f2e3d4c5b"} and len(shown) == 6
    assert not page.locator('section[data-segment="s0a1b2c3d4e"]').is_visible()
    rows = page.evaluate("""Array.from(document.querySelectorAll('tr[data-segment]'))
        .filter((r) => r.checkVisibility()).map((r) => r.dataset.segment)""")
    assert sorted(set(rows)) == ["all", "s1f2e3d4c5b"]
    assert count.inner_text() == "6 of 13 assets"

    # the placement filter hides other placements; both filters combine
    page.select_option("#segment-filter", "")
    page.select_option("#placement-filter", "story")
    shown = _visible_assets(page)
    assert {p for _, p in shown} == {"story"} and len(shown) == 4
    page.select_option("#segment-filter", "s0a1b2c3d4e")
    page.select_option("#placement-filter", "reel")
    assert _visible_assets(page) == [("s0a1b2c3d4e", "reel")]
    assert page.locator("article.variant:visible").count() == 1  # cards without it hide

    page.select_option("#segment-filter", "")
    page.select_option("#placement-filter", "")
    assert _visible_assets(page) == everything
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "review.png"), full_page=True)

    # responsive: nothing wider than a phone screen
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.close()
    assert problems == []
