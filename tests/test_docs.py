"""The documentation: the campaign reference covers every key of the models, the README stays a
front page whose links lead somewhere. (`make docs` builds the whole site with --strict.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adgen.spec import CampaignSpec
from tests.conftest import REPO
from tools.docs_hooks import DocsError, render_keys, sections, table_cells

PAGE = REPO / "docs" / "campaign-reference.md"


def _rendered() -> str:
    return render_keys(PAGE.read_text(encoding="utf-8"), "docs/campaign-reference.md")


def _row(rendered: str, section: str, key: str) -> list[str]:
    """The cells of ``key``'s row in the generated table of ``section``."""
    block = rendered.split(f"{{#{section}}}", 1)[1].split("\n## ", 1)[0]
    line = next(line for line in block.splitlines() if line.startswith(f"| `{key}` |"))
    return table_cells(line)


def test_every_key_of_every_section_has_a_row() -> None:
    rendered = _rendered()
    for path, model in sections().items():
        anchor = "top-level" if path == "campaign" else re.sub(r"[^a-z0-9_]+", "-", path).strip("-")
        assert f"{{#{anchor}}}" in rendered, path
        for name in model.model_fields:
            assert _row(rendered, anchor, name), f"{path}.{name}"
    assert "<!-- keys:" not in rendered


def test_types_and_defaults_come_from_the_models() -> None:
    rendered = _rendered()
    key, kind, default, example, _ = _row(rendered, "renderer", "aspect")
    assert (key, kind, default) == ("`aspect`", "one of `native`, `extend`, `crop`", "`native`")
    assert example == "`extend`"
    _, kind, default, example, _ = _row(rendered, "top-level", "variants")
    assert (kind, default) == ("integer (≥ 1, ≤ 100)", "`2`")
    assert example == "`2`"  # from campaigns/northwind-spring.yaml
    _, kind, default, _, _ = _row(rendered, "brand", "logo_size")
    assert (kind, default) == ("number (> 0, ≤ 0.5)", "`0.18`")
    _, kind, default, _, _ = _row(rendered, "top-level", "creatives")
    assert (kind, default) == ("list of [sections](#creatives)", "required")
    _, kind, default, _, _ = _row(rendered, "top-level", "placements")
    assert (kind, default) == ("list of [sections](#placements) (at least 1 item)",
                               "`[{placement: feed_square}]`")
    _, kind, default, _, _ = _row(rendered, "top-level", "audience")
    assert (kind, default) == ("[section](#audience)", "see its keys")
    _, _, _, example, _ = _row(rendered, "creatives", "captions")
    assert example == "`{headline: 'Made for {{ favourite_category }}', cta: Shop now}`"


def test_a_pipe_inside_a_code_span_stays_in_its_cell() -> None:
    row = "| `captions` | a `x | y` b | `{a: '{{ r | title }}'}` |"
    assert table_cells(row) == ["`captions`", "a `x | y` b", "`{a: '{{ r | title }}'}`"]
    assert table_cells("| `k` | ``a|`b`` | |") == ["`k`", "``a|`b``", ""]


def _without_row(text: str, section: str, key: str) -> str:
    marker = f"<!-- keys: {section} -->"
    head, tail = text.split(marker, 1)
    lines = tail.split("\n")
    return head + marker + "\n".join(line for line in lines if not line.startswith(f"| `{key}` |"))


def test_a_field_without_a_row_fails_the_build_naming_it() -> None:
    text = _without_row(PAGE.read_text(encoding="utf-8"), "quality", "min_sharpness")
    with pytest.raises(DocsError, match=r"^docs/campaign-reference.md: quality: no row for "
                                        r"min_sharpness \(of QualitySpec\): "
                                        r"add \| `min_sharpness` \|"):
        render_keys(text, "docs/campaign-reference.md")


def test_a_row_for_no_field_or_a_missing_section_fails_the_build() -> None:
    text = PAGE.read_text(encoding="utf-8")
    typo = text.replace("| `holdout` |", "| `hold_out` |", 1)
    with pytest.raises(DocsError, match="experiment: hold_out is not a field of ExperimentSpec: "
                                        "remove the row or fix its spelling; no row for holdout "
                                        r"\(of ExperimentSpec\)"):
        render_keys(typo, "page")
    start = text.index("<!-- keys: catalog.images -->")
    end = text.index("<!-- keys: locale -->")
    with pytest.raises(DocsError, match=r"no <!-- keys: catalog.images --> section"):
        render_keys(text[:start] + text[end:], "page")


def test_a_key_without_an_example_fails_the_build() -> None:
    text = PAGE.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `device` |"))
    with pytest.raises(DocsError, match=r"quality\.device has no example"):
        render_keys(text.replace(row, "| `device` | Where the checks run. | |"), "page")


def test_the_campaign_model_has_no_section_the_page_misses() -> None:
    # a new nested model shows up as a section, and so needs its table
    assert set(sections()) >= {"campaign", "audience", "creatives[]", "creatives[].video",
                               "placements[]", "catalog.images", "audience.aggregates.<name>"}
    assert sections()["campaign"] is CampaignSpec


def test_the_readme_is_a_front_page_whose_links_lead_somewhere() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert targets, "the README links to the documentation"
    missing = [t for t in targets if not t.startswith("http") and not (REPO / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
    docs = {p.name for p in (REPO / "docs").glob("*.md")}
    linked = {Path(t).name for t in targets if t.startswith("docs/")}
    assert docs - linked == set(), "every page of the site is linked from the README"


def test_the_meta_button_types_listed_are_the_ones_adgen_takes() -> None:
    from adgen.spec import META_CTA_TYPES

    meaning = _row(_rendered(), "export", "meta_cta")[4]
    assert re.findall(r"`([A-Z_]+)`", meaning) == list(META_CTA_TYPES)
