"""Experiment assignment, bit-for-bit compatible with GrowthBook's SDKs.

A customer's position in an experiment is ``gb_hash(seed, customer_id)``, a number in [0, 1)
(FNV-1a 32 over UTF-16 code units; version 2 hashes twice). The arms own consecutive ranges of
that line (:func:`bucket_ranges`); a customer gets the arm whose range holds its number, or -1
when ``coverage`` leaves it outside every range.

Holdout rule (:func:`assign_arms`): a customer is held out, and gets -1, when
``gb_hash(seed + "-holdout", customer_id) < holdout``. The holdout hash uses its own derived seed,
as GrowthBook's holdouts are experiments of their own, so holdout membership is independent of
the arm split and does not change when the weights, the coverage or the number of arms change.

Unlike GrowthBook, which silently falls back to equal weights, invalid weights raise
:class:`~adgen.errors.CampaignError`: a typo in a split should stop the campaign, not reshape it.

:func:`hash_many` and :func:`assign_arms` are vectorised with numpy (one pass per character
position, not per customer) and return exactly what :func:`gb_hash` returns for each id.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import count

import numpy as np
import pandas as pd

from adgen.errors import AudienceError, CampaignError

__all__ = [
    "HOLDOUT_SUFFIX",
    "assign_arms",
    "bucket_ranges",
    "choose_variation",
    "fnv1a32",
    "gb_hash",
    "hash_many",
]

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_PRIME_U32 = np.uint32(_FNV_PRIME)
_POW10 = 10 ** np.arange(10, dtype=np.uint32)
_CHUNK = 1 << 20  # ids hashed at a time: bounds memory for tens of millions of customers
_WEIGHT_SUM_MIN, _WEIGHT_SUM_MAX = 0.99, 1.01
HOLDOUT_SUFFIX = "-holdout"


# --- scalar reference -------------------------------------------------------------------------


def _utf16_units(text: str) -> Iterator[int]:
    """UTF-16 code units of ``text``, as JavaScript's ``charCodeAt`` sees them."""
    data = text.encode("utf-16-le", "surrogatepass")
    return (data[i] | (data[i + 1] << 8) for i in range(0, len(data), 2))


def _fnv_update(state: int, text: str) -> int:
    for unit in _utf16_units(text):
        state = ((state ^ unit) * _FNV_PRIME) & 0xFFFFFFFF
    return state


def fnv1a32(text: str) -> int:
    """FNV-1a 32-bit hash of ``text`` over its UTF-16 code units (GrowthBook's ``fnv1a32``)."""
    return _fnv_update(_FNV_OFFSET, text)


def gb_hash(seed: str, value: str, version: int = 2) -> float | None:
    """GrowthBook's ``hash``: a number in [0, 1) for ``value``; None for an unknown version."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def check_weights(weights: Sequence[float], num_variations: int) -> list[float]:
    """``weights`` as floats, or CampaignError naming what is wrong with them."""
    values = list(weights)
    if len(values) != num_variations:
        raise CampaignError(
            f"experiment weights {values} have {len(values)} entries but there are "
            f"{num_variations} arms: give one weight per arm"
        )
    bad = [w for w in values if not isinstance(w, int | float) or isinstance(w, bool)
           or not math.isfinite(w) or w < 0]
    if bad:
        raise CampaignError(
            f"experiment weights {values} contain {bad[0]!r}: every weight must be a "
            "non-negative number"
        )
    total = math.fsum(values)
    if not _WEIGHT_SUM_MIN <= total <= _WEIGHT_SUM_MAX:
        raise CampaignError(
            f"experiment weights {values} sum to {total:g}: they must sum to 1 "
            "(between 0.99 and 1.01), e.g. [0.5, 0.5]"
        )
    return [float(w) for w in values]


def bucket_ranges(
    num_variations: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """GrowthBook's ``getBucketRanges``: ``(start, start + coverage * weight)`` per arm.

    ``weights`` default to equal weights. Invalid weights or a coverage outside [0, 1] raise
    CampaignError (GrowthBook would silently use equal weights / clamp the coverage).
    """
    if num_variations < 1:
        raise CampaignError(f"an experiment needs at least one arm, got {num_variations}")
    if not 0.0 <= coverage <= 1.0:
        raise CampaignError(
            f"experiment coverage {coverage} is outside [0, 1]: it is the share of customers "
            "in the experiment, e.g. 1.0 for everyone"
        )
    if weights is None:
        weights = [1 / num_variations] * num_variations
    cumulative = 0.0
    ranges = []
    for weight in check_weights(weights, num_variations):
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def choose_variation(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """Index of the first range with ``start <= n < end``, or -1 when none holds ``n``."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


# --- vectorised -------------------------------------------------------------------------------


def _as_str_list(values: pd.Series | Sequence[str]) -> list[str]:
    """Customer ids as a list of str; integer Series are formatted in decimal."""
    if isinstance(values, pd.Series):
        missing = values.isna().to_numpy()
        if missing.any():
            raise AudienceError(
                f"customer id at row {_row(values, int(np.argmax(missing)))} is missing: every "
                "customer needs an id"
            )
        if pd.api.types.is_integer_dtype(values.dtype):
            values = values.astype(str)
        return list(values.tolist())
    return list(values)


def _row(values: pd.Series, position: int) -> str:
    """The index label at ``position``, as a user would write it."""
    label = values.index[position]
    return repr(label.item() if isinstance(label, np.generic) else label)


def _join(values: list[str]) -> str:
    try:
        return "".join(values)
    except TypeError:
        position, bad = next((i, v) for i, v in enumerate(values) if not isinstance(v, str))
        raise AudienceError(
            f"customer id at position {position} is {bad!r} ({type(bad).__name__}): ids must be "
            "strings; read the id column as text (e.g. dtype=str)"
        ) from None


def _encode(values: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All values' UTF-16 code units concatenated, and each value's start and length in units."""
    joined = _join(values)
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    ends = np.cumsum(lengths)
    if joined.isascii():
        return np.frombuffer(joined.encode("ascii"), dtype=np.uint8), ends - lengths, lengths
    code_points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    units = np.frombuffer(joined.encode("utf-16-le", "surrogatepass"), dtype="<u2")
    # A code point above U+FFFF is two UTF-16 units (a surrogate pair); map positions over.
    unit_pos = np.concatenate(([0], np.cumsum(1 + (code_points > 0xFFFF))))
    starts, stops = unit_pos[ends - lengths], unit_pos[ends]
    return units, starts, stops - starts


def _fnv_update_many(
    state: np.ndarray, units: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Continue FNV-1a for every value, one character position at a time (uint32 wraps)."""
    if len(state) == 0:
        return state
    shortest, longest = int(lengths.min()), int(lengths.max())
    last = max(len(units) - 1, 0)
    for j in range(longest):
        codes = units[np.minimum(starts + j, last)]
        step = (state ^ codes) * _PRIME_U32
        state = step if j < shortest else np.where(j < lengths, step, state)
    return state


def _fnv_update_text(state: np.ndarray, text: str) -> np.ndarray:
    """Continue FNV-1a for every value with the same text (a seed suffix)."""
    for unit in _utf16_units(text):
        state = (state ^ np.uint32(unit)) * _PRIME_U32
    return state


def _fnv_of_decimal(values: np.ndarray) -> np.ndarray:
    """``fnv1a32(str(v))`` for each uint32 ``v``: hashes the ASCII digits, most significant first.

    Every value is read as 10 digits; the leading zeros (which ``str`` omits) are skipped.
    """
    leading_zeros = 9 - np.searchsorted(_POW10[1:], values, side="right")
    state = np.full(len(values), _FNV_OFFSET, dtype=np.uint32)
    for j in range(10):
        digit = (values // np.uint32(10 ** (9 - j))) % np.uint32(10)
        step = (state ^ (digit + np.uint32(ord("0")))) * _PRIME_U32
        state = step if j == 9 else np.where(j >= leading_zeros, step, state)
    return state


def _hash_encoded(
    seed: str, encoded: tuple[np.ndarray, np.ndarray, np.ndarray], version: int
) -> np.ndarray:
    """:func:`gb_hash` of every encoded value (``version`` already checked: 1 or 2)."""
    units, starts, lengths = encoded
    if version == 1:
        start = np.full(len(starts), _FNV_OFFSET, dtype=np.uint32)
        state = _fnv_update_text(_fnv_update_many(start, units, starts, lengths), seed)
        return (state % 1000) / 1000
    start = np.full(len(starts), fnv1a32(seed), dtype=np.uint32)
    first = _fnv_update_many(start, units, starts, lengths)
    return (_fnv_of_decimal(first) % 10000) / 10000


def _check_version(version: int) -> None:
    if version not in (1, 2):
        raise CampaignError(f"hash version {version} is not supported: use 2 (or 1 for legacy)")


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for begin in range(0, len(values), _CHUNK):
        yield values[begin:begin + _CHUNK]


def hash_many(seed: str, values: pd.Series | Sequence[str], version: int = 2) -> np.ndarray:
    """``gb_hash(seed, v, version)`` for every value, as float64, in input order (vectorised)."""
    _check_version(version)
    ids = _as_str_list(values)
    parts = [_hash_encoded(seed, _encode(chunk), version) for chunk in _chunks(ids)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


def _choose_many(n: np.ndarray, ranges: Sequence[tuple[float, float]]) -> np.ndarray:
    """Vectorised :func:`choose_variation` (the first matching range wins)."""
    arms = np.full(len(n), -1, dtype=np.int64)
    for index, (start, end) in reversed(list(enumerate(ranges))):
        arms[(n >= start) & (n < end)] = index
    return arms


def assign_arms(
    customer_ids: pd.Series | Sequence[str],
    *,
    seed: str,
    weights: Sequence[float],
    holdout: float = 0.0,
    coverage: float = 1.0,
) -> np.ndarray:
    """Arm index per customer (input order); -1 for held-out customers and those not covered.

    ``weights`` has one entry per arm and must sum to 1; ``holdout`` is the share of customers
    who see no variant (see the module docstring for the rule); ``coverage`` is GrowthBook's
    share of the remaining customers who enter the experiment.
    """
    if not seed:
        raise CampaignError(
            "experiment seed is empty: give each experiment its own seed (e.g. the campaign "
            "key) so that different experiments split customers independently"
        )
    if not 0.0 <= holdout < 1.0:
        raise CampaignError(
            f"holdout {holdout} is outside [0, 1): it is the share of customers who see no "
            "variant, e.g. 0.05"
        )
    ranges = bucket_ranges(len(weights), coverage, weights)
    parts = []
    for offset, chunk in zip(count(0, _CHUNK), _chunks(_as_str_list(customer_ids)), strict=False):
        encoded = _encode(chunk)
        if not encoded[2].all():
            _raise_empty_id(customer_ids, offset + int(np.argmin(encoded[2])))
        arms = _choose_many(_hash_encoded(seed, encoded, 2), ranges)
        if holdout > 0:
            arms[_hash_encoded(seed + HOLDOUT_SUFFIX, encoded, 2) < holdout] = -1
        parts.append(arms)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _raise_empty_id(customer_ids: pd.Series | Sequence[str], position: int) -> None:
    where = (f"row {_row(customer_ids, position)}" if isinstance(customer_ids, pd.Series)
             else f"position {position}")
    raise AudienceError(
        f"customer id at {where} is empty: every customer needs an id (GrowthBook leaves "
        "customers without an id out of experiments)"
    )
