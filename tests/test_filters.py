"""audience.filter: a whitelisted expression language, never code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import adgen
from adgen.audience.filters import apply_filter
from adgen.errors import AudienceError, CampaignError
from tests.conftest import write_campaign

FRAME = pd.DataFrame({
    "customer_id": ["1", "2", "3", "4", "5"],
    "region": ["north", "south", "north", None, "east"],
    "email": ["a@example.com", "b@other.org", None, "d@example.com", "e@example.com"],
    "spend": [10.0, 50.0, 5.0, 80.0, None],
    "opted_in": [True, False, True, True, True],
})


@pytest.mark.parametrize(("text", "ids"), [
    ("opted_in == True", ["1", "3", "4", "5"]),
    ('region in ["north", "east"] and spend > 6', ["1"]),
    ('region not in ("north",)', ["2", "4", "5"]),
    ("not opted_in or spend >= 80", ["2", "4"]),
    ("10 <= spend < 60", ["1", "2"]),
    ("region.isna()", ["4"]),
    ('email.notna() and email.str.endswith("@example.com")', ["1", "4", "5"]),
    ('email.str.contains(".")', ["1", "2", "4", "5"]),  # plain text, not a regex
    ('region.str.upper() == "NORTH"', ["1", "3"]),
    ("spend > -1 and (region == 'south' or region == 'east')", ["2"]),
])
def test_allowed_expressions(text: str, ids: list[str]) -> None:
    assert list(apply_filter(FRAME, text, "test")["customer_id"]) == ids


@pytest.mark.parametrize(("text", "why"), [
    ("@pd.io.common.os.system('touch /tmp/adgen-pwned')", "not a valid filter expression"),
    ("__import__('os').system('touch /tmp/adgen-pwned')", "this call"),
    ("region.__class__.__init__.__globals__", "attribute syntax"),
    ("region.str.__getattribute__('x')", "this call"),
    ("region.apply(print)", "this call"),
    ("[c for c in region]", "listcomp syntax"),
    ("(lambda: 1)()", "this call"),
    ("region[0] == 'n'", "subscript syntax"),
    ("spend + 1 > 2", "binop syntax"),
    ("region.str.startswith(region)", "a non-literal argument"),
    ("_secret == 1", "the name '_secret'"),
    ("a>1" + " and a>1" * 120, "parts"),
    ("x" * 3000, "characters long"),
])
def test_code_is_refused(text: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match=r"audience\.filter") as info:
        apply_filter(FRAME, text, "test")
    assert why in str(info.value)
    assert not Path("/tmp/adgen-pwned").exists()


def test_unknown_column_and_non_condition(tmp_path: Path) -> None:
    with pytest.raises(AudienceError, match=r"column 'tier', which the audience does not have"):
        apply_filter(FRAME, "tier == 'gold'", "audience.csv")
    with pytest.raises(CampaignError, match="does not depend on any column"):
        apply_filter(FRAME, "1 == 1", "audience.csv")


def test_campaign_and_set_override_are_checked_at_load(tmp_path: Path,
                                                       campaign_data: dict) -> None:
    path = write_campaign(tmp_path, campaign_data)
    attack = "audience.filter=@pd.io.common.os.system('touch /tmp/adgen-pwned') == 0"
    with pytest.raises(CampaignError, match=r"audience.filter: .*not a valid filter"):
        adgen.load_campaign(path, overrides=[attack])
    campaign = adgen.load_campaign(path, overrides=['audience.filter=region == "north"'])
    assert adgen.plan(campaign).summary()["customers"] == 3
    assert not Path("/tmp/adgen-pwned").exists()


@pytest.mark.parametrize(("text", "why", "column"), [
    ("spend == [1, 2]", "a list not after `in` / `not in`", 10),
    ("[1] in region", "a list not after `in` / `not in`", 1),
    ('region in ["a"] == region', "`in` without a list of literals after it", 11),
    ('region in "north"', "`in` without a list of literals after it", 11),
    ('"north" in ["north"]', "a literal before `in`", 1),
    ('-region == "x"', "a minus sign before a non-number", 1),
    ("region == -None", "a minus sign before a non-number", 11),
    ("spend > -True", "a minus sign before a non-number", 9),
    ('region.str.startswith("A", "zzz")', "2 argument(s) to .startswith() (it takes one text)",
     1),
    ('region.str.contains("a", "b")', "2 argument(s) to .contains() (it takes one text)", 1),
    ("region.str.endswith()", "0 argument(s) to .endswith() (it takes one text)", 1),
    ('region.str.lower("x") == "x"', "1 argument(s) to .lower() (it takes no argument)", 1),
    ("region.str.startswith(1)", "a non-literal argument (give a text in quotes)", 23),
    ("1 == 1", "does not depend on any column", None),
])
def test_filters_that_cannot_mean_anything_are_refused_at_load(
        text: str, why: str, column: int | None, tmp_path: Path, campaign_data: dict) -> None:
    path = write_campaign(tmp_path, campaign_data)
    with pytest.raises(CampaignError) as info:
        adgen.load_campaign(path, overrides=[f"audience.filter={text}"])
    message = str(info.value)
    assert "\n" not in message and why in message
    if column is not None:
        assert f"at column {column} is not allowed" in message


@pytest.mark.parametrize(("text", "ids"), [
    ('region.str.strip("h") == "nort"', ["1", "3"]),
    ("spend.isna() == False and spend > -1.5", ["1", "2", "3", "4"]),
    ('region.str.len() and region.notna()', ["1", "2", "3", "5"]),
    ('region.str.contains("o") == True != region.str.startswith("s")', ["1", "3"]),
])
def test_mixed_types_give_answers_not_tracebacks(text: str, ids: list[str]) -> None:
    assert list(apply_filter(FRAME, text, "test")["customer_id"]) == ids
