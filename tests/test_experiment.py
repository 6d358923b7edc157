"""GrowthBook-compatible hashing and arm assignment."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from adgen.errors import AudienceError, CampaignError
from adgen.experiments import hashing
from adgen.experiments.hashing import (
    assign_arms,
    bucket_ranges,
    choose_variation,
    fnv1a32,
    gb_hash,
    hash_many,
)

# (seed, id, v1, v2) from the official Python SDK (REFERENCE.md)
VECTORS = [("", "a", 0.22, 0.0216), ("", "b", 0.077, 0.9054),
           ("seed", "user-1", 0.657, 0.4232), ("exp-key", "ünïcode", 0.078, 0.8916)]

ALPHABET = ["a", "Z", "7", "-", "_", " ", "ü", "é", "ß", "中", "文", "한", "😀", "🚀", "👍🏽",
            "\U0001f1eb\U0001f1f7", "\ud800", "\udfff", "\uffff", "\x00", "\u200d"]


def random_ids(count: int, seed: int = 1) -> list[str]:
    """Ids of 0..40 characters mixing ASCII, accents, CJK, emoji (surrogate pairs), lone
    surrogates and NUL."""
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
            for _ in range(count)]


@pytest.mark.parametrize(("seed", "value", "v1", "v2"), VECTORS)
def test_reference_vectors(seed: str, value: str, v1: float, v2: float) -> None:
    assert gb_hash(seed, value, 1) == v1
    assert gb_hash(seed, value, 2) == v2
    assert gb_hash(seed, value) == v2
    assert hash_many(seed, [value], 1).tolist() == [v1]
    assert hash_many(seed, pd.Series([value])).tolist() == [v2]


def test_fnv1a32_known_values_and_utf16_units() -> None:
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968
    # U+1F600 is the surrogate pair D83D DE00 in UTF-16: hashed as two code units
    assert fnv1a32("😀") == fnv1a32("\ud83d\ude00")
    assert gb_hash("exp", "x", 3) is None


def test_bucket_ranges_and_choose_variation() -> None:
    assert bucket_ranges(4, 0.5) == [(0, 0.125), (0.25, 0.375), (0.5, 0.625), (0.75, 0.875)]
    assert bucket_ranges(2, 1.0, [0.3, 0.7]) == [(0, 0.3), (0.3, 1.0)]
    ranges = bucket_ranges(3, 0.8, [0.5, 0.25, 0.25])
    assert [choose_variation(n, ranges) for n in (0.0, 0.39, 0.4, 0.5, 0.69, 0.7, 0.75, 0.95)] \
        == [0, 0, -1, 1, 1, -1, 2, -1]


@pytest.mark.parametrize("version", [1, 2])
def test_hash_many_equals_gb_hash_for_every_id(version: int) -> None:
    ids = [*random_ids(3000), "", "x" * 1000, "0", "ünïcode"]
    for seed in ("", "exp-7", "ü🚀"):
        expected = [gb_hash(seed, i, version) for i in ids]
        assert hash_many(seed, ids, version).tolist() == expected


def test_hash_many_in_chunks_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = random_ids(500, seed=2) + [f"customer-{i}" for i in range(500)]
    whole = hash_many("exp", ids)
    monkeypatch.setattr(hashing, "_CHUNK", 64)
    assert np.array_equal(hash_many("exp", ids), whole)
    assert hash_many("exp", []).shape == (0,)


def test_matches_the_growthbook_sdk() -> None:
    gb = pytest.importorskip("growthbook.core")
    ids = random_ids(5000, seed=3) + [f"user-{i}" for i in range(5000)]
    for seed in ("", "campaign-spring", "ünïcode-🙂"):
        for version in (1, 2):
            expected = [gb.gbhash(seed, i, version) for i in ids]
            assert [gb_hash(seed, i, version) for i in ids] == expected
            assert hash_many(seed, ids, version).tolist() == expected
    for count, coverage, weights in ((2, 1.0, [0.5, 0.5]), (3, 0.7, [0.2, 0.3, 0.5]),
                                     (3, 1.0, [1 / 3, 1 / 3, 1 / 3]), (4, 0.5, None)):
        ranges = bucket_ranges(count, coverage, weights)
        assert ranges == gb.getBucketRanges(count, coverage, weights)
        ns = hash_many("exp", ids).tolist()
        assert [choose_variation(n, ranges) for n in ns] == [gb.chooseVariation(n, ranges)
                                                             for n in ns]


def test_assign_arms_is_choose_variation_of_gb_hash() -> None:
    # object dtype: arrow strings cannot hold the lone surrogates
    ids = pd.Series([i for i in random_ids(2000, seed=4) if i], dtype=object)
    weights = [0.2, 0.3, 0.5]
    ranges = bucket_ranges(3, 0.9, weights)
    expected = [choose_variation(gb_hash("exp", i) or 0.0, ranges) for i in ids]
    assert assign_arms(ids, seed="exp", weights=weights, coverage=0.9).tolist() == expected


def test_assignment_shares_follow_weights_coverage_and_holdout() -> None:
    ids = pd.Series([f"cust-{i:07d}" for i in range(100_000)])
    arms = assign_arms(ids, seed="spring", weights=[0.5, 0.3, 0.2], holdout=0.1)
    shares = np.bincount(arms + 1, minlength=4) / len(ids)
    # 10% held out; the remaining 90% split 50/30/20
    assert shares == pytest.approx([0.1, 0.45, 0.27, 0.18], abs=0.006)
    covered = assign_arms(ids, seed="spring", weights=[0.5, 0.5], coverage=0.4)
    assert np.mean(covered == -1) == pytest.approx(0.6, abs=0.006)


def test_holdout_is_independent_of_the_arm_split() -> None:
    ids = pd.Series([f"cust-{i}" for i in range(50_000)])
    plain = assign_arms(ids, seed="exp", weights=[0.5, 0.5])
    held = assign_arms(ids, seed="exp", weights=[0.5, 0.5], holdout=0.2)
    held_out = held == -1
    # the held-out customers are a fair sample of both arms
    assert np.mean(plain[held_out] == 0) == pytest.approx(0.5, abs=0.02)
    # everyone else keeps the arm they would have had without a holdout
    assert np.array_equal(held[~held_out], plain[~held_out])
    # the same customers stay held out when the weights change
    reweighted = assign_arms(ids, seed="exp", weights=[0.1, 0.2, 0.7], holdout=0.2)
    assert np.array_equal(reweighted == -1, held_out)
    # and the rule is the documented one: gb_hash(seed + "-holdout", id) < holdout
    expected = [(gb_hash("exp-holdout", i) or 0.0) < 0.2 for i in ids[:2000]]
    assert held_out[:2000].tolist() == expected


def test_growing_an_arm_only_moves_customers_into_it() -> None:
    ids = pd.Series([f"c{i}" for i in range(20_000)])
    before = assign_arms(ids, seed="exp", weights=[0.5, 0.5])
    after = assign_arms(ids, seed="exp", weights=[0.6, 0.4])
    moved = before != after
    assert moved.any()
    assert (after[moved] == 0).all() and (before[moved] == 1).all()


def test_integer_ids_hash_as_decimal_strings() -> None:
    ids = pd.Series([1, 42, 1234567890123], dtype="int64")
    assert hash_many("exp", ids).tolist() == [gb_hash("exp", str(i)) for i in ids]


def test_bad_ids_name_the_row() -> None:
    with pytest.raises(AudienceError, match=r"customer id at row 'c' is missing"):
        assign_arms(pd.Series(["x", "y", None], index=["a", "b", "c"]), seed="e",
                    weights=[0.5, 0.5])
    with pytest.raises(AudienceError, match=r"customer id at position 1 is 2.5 \(float\)"):
        hash_many("e", ["x", 2.5])  # type: ignore[list-item]
    with pytest.raises(AudienceError) as info:
        assign_arms(pd.Series(["x", ""], index=[10, 11]), seed="e", weights=[0.5, 0.5])
    assert str(info.value) == ("customer id at row 11 is empty: every customer needs an id "
                               "(GrowthBook leaves customers without an id out of experiments)")
    with pytest.raises(AudienceError, match=r"^customer id at position 2 is empty: every"):
        assign_arms(["x", "y", ""], seed="e", weights=[0.5, 0.5])


def test_an_empty_id_in_a_later_chunk_is_named_by_its_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hashing, "_CHUNK", 4)  # ids are hashed 4 at a time
    ids = ["a", "b", "c", "d", "e", "f", "", "h"]
    with pytest.raises(AudienceError, match=r"^customer id at position 6 is empty"):
        assign_arms(ids, seed="e", weights=[0.5, 0.5])
    chunked = assign_arms([i or "g" for i in ids], seed="e", weights=[0.5, 0.5])
    monkeypatch.setattr(hashing, "_CHUNK", 1 << 20)
    assert list(chunked) == list(assign_arms([i or "g" for i in ids], seed="e",
                                             weights=[0.5, 0.5]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"weights": [0.5, 0.6]}, r"experiment weights \[0.5, 0.6\] sum to 1.1: they must sum to 1"),
     ({"weights": [1.2, -0.2]}, r"contain -0.2: every weight must be a non-negative number"),
     ({"weights": []}, "at least one arm"),
     ({"weights": [0.5, 0.5], "coverage": 1.5}, r"coverage 1.5 is outside \[0, 1\]"),
     ({"weights": [0.5, 0.5], "holdout": 1.0}, r"holdout 1.0 is outside \[0, 1\)"),
     ({"weights": [0.5, 0.5], "seed": ""}, "experiment seed is empty")],
)
def test_invalid_settings_raise_campaign_error(kwargs: dict, message: str) -> None:
    options = {"seed": "exp", **kwargs}
    with pytest.raises(CampaignError, match=message):
        assign_arms(pd.Series(["a", "b"]), **options)


def test_bucket_ranges_rejects_wrong_weight_count() -> None:
    with pytest.raises(CampaignError, match=r"have 2 entries but there are 3 arms"):
        bucket_ranges(3, 1.0, [0.5, 0.5])
    with pytest.raises(CampaignError, match="hash version 3 is not supported"):
        hash_many("exp", ["a"], 3)
