"""``adgen review`` in a real headless Chromium: a person approves and rejects in the page, the
decisions survive a reload, the next run renders the rejected variant again, and the export
publishes only what was approved. The server is the real console script on a free port.

Saves a screenshot to ``artifacts/review-app.png`` (docs/review-app.png is a copy of it).
Skipped without Playwright or Chromium (see tests/browser/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import adgen
from adgen.review.decisions import Decisions
from tests.browser.conftest import watch
from tests.review_helpers import published, review_server, small_campaign


def _card(page: Any, variant: str) -> Any:
    return page.locator(f'article.variant[data-variant="{variant}"]')


def _shown(page: Any) -> list[str]:
    return page.evaluate("""Array.from(document.querySelectorAll('article.variant'))
        .filter((card) => card.checkVisibility()).map((card) => card.dataset.variant)""")


def _saved(page: Any, count: int) -> None:
    status = page.locator("#save-status")
    status.filter(has_text=f"Saved {count} decision").wait_for()
    status.evaluate("(el) => { el.textContent = ''; }")  # the next wait sees its own message


def _seed(page: Any, variant: str) -> str:
    return _card(page, variant).locator("dl.facts dt:text-is('Seed') + dd").inner_text()


def test_review_in_chromium(tmp_path: Path, browser: Any, artifacts: Path) -> None:
    spec = small_campaign(tmp_path)
    first = adgen.run(spec)
    out = Path(spec.output_location)
    a, b, c, d = list(dict.fromkeys(first.manifest["variant_id"]))
    page = browser.new_page(viewport={"width": 1200, "height": 1020})
    page.set_default_timeout(15_000)
    problems = watch(page)
    with review_server(out) as server:
        page.goto(server.url)
        # without a name, nothing is saved: the page asks for one
        _card(page, a).locator("button.approve").click()
        page.locator("#save-status.bad").filter(has_text="Name yourself first").wait_for()
        assert Decisions.of(out).events == []
        page.fill("#reviewer", "Ana")
        page.locator("#reviewer").dispatch_event("change")
        assert page.url.endswith("/?reviewer=Ana")
        # approve two, reject one with a comment
        _card(page, a).locator("button.approve").click()
        _saved(page, 1)
        _card(page, b).locator("button.approve").click()
        _saved(page, 1)
        _card(page, c).locator("textarea").fill("Too dark; show the bottle in daylight")
        _card(page, c).locator("button.reject").click()
        _saved(page, 1)
        assert page.locator('[data-count="approved"]').inner_text() == "2"
        # a reload shows the stored decisions (nothing lives in the browser)
        page.reload()
        assert page.input_value("#reviewer") == "Ana"
        states = {v: _card(page, v).get_attribute("data-decision") for v in (a, b, c, d)}
        assert states == {a: "approved", b: "approved", c: "rejected", d: "pending"}
        assert _card(page, c).locator("[data-comment]").inner_text() == (
            "Too dark; show the bottle in daylight")
        assert _card(page, a).locator("[data-by]").inner_text().startswith("by Ana · ")
        assert [page.locator(f'[data-count="{s}"]').inner_text()
                for s in ("approved", "rejected", "pending")] == ["2", "1", "1"]
        for image in page.locator("img").all():
            image.scroll_into_view_if_needed()
        page.wait_for_function("Array.from(document.images).every((i) => i.naturalWidth > 0)")
        segment = first.manifest.set_index("variant_id").loc[c, "segment_id"].iloc[0]
        page.select_option("#segment-filter", segment)  # the rejected and the pending one
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(artifacts / "review-app.png"))
        page.select_option("#segment-filter", "")
        seed_before = _seed(page, c)
        # the next run: the rejected variant comes back with another seed, pending
        adgen.run(spec)
        page.reload()
        assert _card(page, c).get_attribute("data-decision") == "pending"
        assert _seed(page, c) != seed_before
        assert "rendered again (take 1) after the rejection: Too dark" in _card(
            page, c).locator("[data-note]").inner_text()
        assert [_card(page, v).get_attribute("data-decision") for v in (a, b, d)] == [
            "approved", "approved", "pending"]
        # the export publishes only the approved
        adgen.export(spec)
        for platform in ("meta", "google"):
            files = published(out, platform)
            assert a in files and b in files, platform
            assert c not in files and d not in files, platform
        record = json.loads((out / "exports/export.json").read_text())
        assert {e["variant_id"] for e in record["meta"]["skipped"]} == {c, d}
        # undo one approval; then approve, in bulk, what the filters show: the pending
        # variants of the second segment (so not the one just undone)
        _card(page, b).locator("button.undo").click()
        _saved(page, 1)
        page.select_option("#segment-filter", segment)
        page.select_option("#decision-filter", "pending")
        assert _shown(page) == [c, d]
        bulk = page.locator('button[data-bulk="approved"]')
        assert bulk.inner_text() == "Approve 2 shown"
        bulk.click()
        _saved(page, 2)
        assert _shown(page) == []  # approved: no longer pending, so filtered out
        page.reload()
        states = {v: _card(page, v).get_attribute("data-decision") for v in (a, b, c, d)}
        assert states == {a: "approved", b: "pending", c: "approved", d: "approved"}
    assert problems == []
