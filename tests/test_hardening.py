"""Bounded cost and clear one-line errors on hostile input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import adgen
from adgen.errors import CampaignError
from adgen.guardrails import EMAIL, has_phone_number, text_problem
from tests.conftest import REPO, write_campaign


@pytest.mark.parametrize("text", [
    "Sale ends 2026-03-15", "Only 19.99 today", "price 3.14159265", "order 1234567890123",
    "Offer valid 12/03/2026 to 31/03/2026", "Up to 50% off 1,299.00",
])
def test_dates_prices_and_decimals_are_not_phone_numbers(text: str) -> None:
    assert text_problem({"headline": text}, [], allow_pii=False) is None


@pytest.mark.parametrize("text", ["Call +44 20 7946 0958 now", "call (415) 555-2671",
                                  "Text 415-555-2671"])
def test_real_phone_numbers_are_found(text: str) -> None:
    assert has_phone_number(text, "US")
    assert "phone number" in str(text_problem({"cta": text}, [], allow_pii=False))


def test_hundred_thousand_character_value_is_blocked_by_length_quickly() -> None:
    value = "a" * 100_000 + "@"  # the old e-mail pattern was quadratic on this
    reason = text_problem({"headline": value}, [], allow_pii=False)
    assert reason == ("headline is 100,001 characters, over guardrails.max_caption_chars (500); "
                      "shorten the template or the values it uses")
    assert EMAIL.search("x" * 100_000) is None  # linear: one quick pass
    assert EMAIL.search("write to ana.b+x@mail.example.com") is not None


def test_long_value_in_the_audience_blocks_only_its_variant(tmp_path: Path,
                                                            campaign_data: dict) -> None:
    (tmp_path / "audience.csv").write_text(
        "customer_id,region,tier,spend\n1,north,gold,1\n2,south,gold,2\n"
        f"3,{'x' * 100_000},gold,3\n", encoding="utf-8")
    campaign_data["placements"] = ["300x250"]
    campaign_data["variants"] = 1
    plan = adgen.validate(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    assert len(plan.blocked) == 1
    assert "over guardrails.max_prompt_chars (2,000)" in next(iter(plan.blocked.values()))


def test_everything_blocked_or_no_placements_is_exit_2(tmp_path: Path,
                                                       campaign_data: dict) -> None:
    campaign_data["guardrails"] = {"blocked": ["bottle"]}
    path = write_campaign(tmp_path, campaign_data)
    with pytest.raises(CampaignError, match="the guardrails block every variant"):
        adgen.run(adgen.load_campaign(path))
    with pytest.raises(CampaignError, match=r"placements: List should have at least 1 item"):
        adgen.load_campaign(path, overrides=["placements=[]"])


def test_yaml_alias_bomb_is_refused_before_expansion(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("name: bomb\ncreatives: [{id: x, prompt: y}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(CampaignError, match=r"bomb.yaml: the YAML expands to more than 100,000"):
        adgen.load_campaign(path)


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "adgen", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def _one_line_exit_2(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and lines[0].startswith("error: ")
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_former_tracebacks_are_one_line_and_exit_2(tmp_path: Path, campaign_data: dict) -> None:
    path = write_campaign(tmp_path, campaign_data)
    (tmp_path / "a-file").write_text("x")
    _one_line_exit_2(_cli("run", path, "--out", tmp_path / "a-file"), "is a file, not a folder")
    _one_line_exit_2(_cli("validate", path, "--set", "audience.encoding=klingon"),
                     "audience.encoding", "klingon")
    _one_line_exit_2(_cli("validate", path, "--set", "renderer.options.batch_size=0"),
                     "batch_size")
    _one_line_exit_2(_cli("validate", path, "--set", "renderer.options.nonsense=1"),
                     "unknown option(s) nonsense")
    frame = pd.DataFrame({"customer_id": ["1", "2"], "region": ["n", "s"], "tier": ["g", "g"],
                          "spend": [1, 2], "tags": [["a"], ["b"]]})
    frame.to_parquet(tmp_path / "aud.parquet")
    _one_line_exit_2(_cli("validate", path, "--audience", tmp_path / "aud.parquet"),
                     "column 'tags'", "ndarray")
    run = _cli("run", path, "--set", "placements=[300x250]", "--set", "variants=1")
    assert run.returncode == 0, run.stderr
    header = tmp_path / "results.csv"
    header.write_text("variant_id,users,conversions\n")
    _one_line_exit_2(_cli("analyze", tmp_path / "out", "--results", header), "no rows")
    inf = tmp_path / "inf.csv"
    inf.write_text("variant_id,users,conversions\nx,inf,1\n")
    _one_line_exit_2(_cli("analyze", tmp_path / "out", "--results", inf), "users")
    big = tmp_path / "big.csv"
    big.write_text("variant_id,users,conversions\nx,99999999999999999999999,1\n")
    _one_line_exit_2(_cli("analyze", tmp_path / "out", "--results", big), "users")


def test_segment_ids_in_file_names_are_keyed_by_the_experiment_seed(
        tmp_path: Path, campaign_data: dict) -> None:
    import hashlib

    from adgen.audience.segments import segment_id

    (tmp_path / "audience.csv").write_text(
        "customer_id,region,tier,spend\nana@example.com,north,gold,1\n", encoding="utf-8")
    campaign_data["audience"]["segment_by"] = []
    campaign_data["placements"] = ["300x250"]
    campaign_data["variants"] = 1
    campaign_data["creatives"][0]["captions"] = {"headline": "Hello"}
    campaign_data["creatives"][0]["prompt"] = "a bottle"
    campaign_data["guardrails"] = {"allow_pii": True}
    result = adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    path = str(result.manifest["path"].iloc[0])
    guesses = [hashlib.sha256(b"ana@example.com").hexdigest()[:10],
               segment_id("ana@example.com"), segment_id("ana@example.com", "other-seed")]
    assert "ana" not in path and not any(guess in path for guess in guesses)
    assert segment_id("ana@example.com", "exp-1") in path  # reproducible with the seed
