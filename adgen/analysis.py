"""Experiment analysis: read results, compare each variant with its control, say who wins.

Results come in one of two shapes (CSV or Parquet):

- **aggregated**: ``variant_id``, ``users`` (or ``impressions``), ``conversions`` (or
  ``clicks``), optional ``revenue``; one row per variant (``holdout`` for the holdout group);
- **per customer**: ``customer_id`` and ``converted`` (0/1, or ``conversions``), optional
  ``revenue``; joined to the run's ``assignments.csv`` to find each customer's variant.

Within each segment the control is the holdout when the results have one, else the segment's
first variant (first creative, index 0); overall, variants are pooled by their *arm*
(creative and index) across segments. Each variant gets rate, relative uplift, Welch test with a
delta-method interval, Holm or Benjamini-Hochberg adjusted p-value, optional sequential interval,
Bayesian chance to win and risk (all as GrowthBook's ``gbstats``), and a verdict. A
sample-ratio-mismatch test against the planned split warns when traffic is off.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from adgen import stats
from adgen.errors import ResultsError
from adgen.storage import join, open_output
from adgen.store import atomic_write_bytes, atomic_write_text, safe_csv

HOLDOUT = "holdout"
OVERALL = "all"
SRM_ALERT = 0.001
"""SRM p-values below this mean the traffic split is broken: do not trust the results."""

Rule = Literal["frequentist", "bayesian"]

ANALYSIS_COLUMNS = [
    "scope", "variant_id", "arm", "users", "conversions", "rate", "uplift", "ci_low", "ci_high",
    "p_value", "p_adjusted", "seq_ci_low", "seq_ci_high", "chance_to_win", "risk", "verdict",
]


@dataclass
class Analysis:
    """The analysis table (:data:`ANALYSIS_COLUMNS`, one row per variant and scope, the
    overall scope last) and the sample-ratio checks per scope."""

    table: pd.DataFrame
    srm: dict[str, float] = field(default_factory=dict)
    alpha: float = 0.05
    rule: Rule = "frequentist"

    @property
    def srm_warnings(self) -> list[str]:
        return [
            f"sample ratio mismatch in {scope}: p = {p:.2g} < {SRM_ALERT}; traffic does not follow "
            "the planned split, so these results are not trustworthy (check the assignment import)"
            for scope, p in self.srm.items()
            if p < SRM_ALERT
        ]

    def verdicts(self, scope: str | None = None) -> dict[str, str]:
        rows = self.table if scope is None else self.table[self.table["scope"] == scope]
        return dict(zip(rows["variant_id"], rows["verdict"], strict=True))


def _arm_of(variant_id: str) -> str:
    """``hero-s1a2b3c4d5-v0`` (or ``…-v0-g2``) → ``hero-v0``: the variant's slot across segments."""
    match = re.match(r"^(?P<creative>.+)-s[0-9a-f]{10}-(?P<index>v\d+)(?:-g\d+)?$", variant_id)
    return f"{match['creative']}-{match['index']}" if match else variant_id


def read_results(source: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Read a results file (CSV or Parquet) or DataFrame; returns it and its name for errors."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), "results"
    path = Path(source)
    if not path.exists():
        raise ResultsError(f"{path}: results file not found")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path), str(path)
        return pd.read_csv(path, dtype={"variant_id": "string", "customer_id": "string"}), str(path)
    except (ValueError, OSError) as exc:
        raise ResultsError(f"{path}: cannot read the results: {exc}") from None


def _pick(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in frame.columns), None)


def _line(where: str, position: int) -> str:
    return f"line {position + 2}" if where.endswith(".csv") else f"row {position}"


def _counts(frame: pd.DataFrame, column: str, where: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | (values < 0) | (values != values.round())
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise ResultsError(
            f"{where}: {_line(where, position)}: {column} = {str(frame[column].iloc[position])!r}"
            " is not a whole number >= 0"
        )
    return values.astype("int64")


def aggregate_results(
    source: str | Path | pd.DataFrame, assignments: pd.DataFrame, variants: pd.DataFrame
) -> pd.DataFrame:
    """Per (segment_id, variant_id): users and conversions, validated.

    ``assignments`` is the run's assignment table; ``variants`` has ``variant_id`` and
    ``segment_id`` of every variant the run made."""
    frame, where = read_results(source)
    segment_of = dict(zip(variants["variant_id"], variants["segment_id"], strict=True))
    if "variant_id" in frame.columns and "customer_id" not in frame.columns:
        users_col = _pick(frame, ("users", "impressions"))
        conv_col = _pick(frame, ("conversions", "clicks"))
        if users_col is None or conv_col is None:
            raise ResultsError(
                f"{where}: aggregated results need columns variant_id, users (or impressions) and "
                f"conversions (or clicks); found {list(frame.columns)}"
            )
        users = _counts(frame, users_col, where)
        conversions = _counts(frame, conv_col, where)
        over = conversions > users
        if over.any():
            position = int(np.flatnonzero(over.to_numpy())[0])
            raise ResultsError(
                f"{where}: {_line(where, position)}: {conv_col} ({conversions.iloc[position]}) "
                f"> {users_col} ({users.iloc[position]}); conversions cannot exceed users"
            )
        ids = frame["variant_id"].astype("string")
        unknown = ~ids.isin(list(segment_of)) & (ids != HOLDOUT)
        if unknown.any():
            position = int(np.flatnonzero(unknown.to_numpy())[0])
            raise ResultsError(
                f"{where}: {_line(where, position)}: unknown variant_id {ids.iloc[position]!r}; "
                "use the ids of the run's manifest (or 'holdout')"
            )
        segments = frame["segment_id"] if "segment_id" in frame.columns else ids.map(
            lambda v: segment_of.get(v, OVERALL))
        rows = pd.DataFrame({"segment_id": segments, "variant_id": ids, "users": users,
                             "conversions": conversions})
        return rows.groupby(["segment_id", "variant_id"], as_index=False, sort=False).sum()
    if "customer_id" in frame.columns:
        conv_col = _pick(frame, ("converted", "conversions", "clicks"))
        if conv_col is None:
            raise ResultsError(
                f"{where}: per-customer results need columns customer_id and converted (0/1); "
                f"found {list(frame.columns)}"
            )
        converted = _counts(frame, conv_col, where)
        if (converted > 1).any():
            converted = (converted > 0).astype("int64")  # a customer converts or not
        joined = frame[["customer_id"]].astype("string").assign(converted=converted.to_numpy())
        known = assignments.assign(customer_id=assignments["customer_id"].astype("string"))
        merged = joined.merge(known, on="customer_id", how="left", indicator=True)
        missing = merged["_merge"] == "left_only"
        if missing.any():
            position = int(np.flatnonzero(missing.to_numpy())[0])
            raise ResultsError(
                f"{where}: {_line(where, position)}: customer_id "
                f"{merged['customer_id'].iloc[position]!r} is not in the run's assignments"
            )
        variant = merged["variant_id"].fillna("").replace("", HOLDOUT)
        rows = pd.DataFrame({"segment_id": merged["segment_id"], "variant_id": variant,
                             "users": 1, "conversions": merged["converted"]})
        return rows.groupby(["segment_id", "variant_id"], as_index=False, sort=False).sum()
    raise ResultsError(
        f"{where}: results need either variant_id + users + conversions (aggregated) or "
        f"customer_id + converted (per customer); found {list(frame.columns)}"
    )


def analyze_counts(
    counts: pd.DataFrame, variants: pd.DataFrame, *, weights: list[float] | None = None,
    holdout: float = 0.0, alpha: float = 0.05, correction: Literal["holm", "bh"] = "holm",
    sequential: bool = False, rule: Rule = "frequentist",
) -> Analysis:
    """Compare every variant with its control in each segment and overall (by arm)."""
    order = {vid: i for i, vid in enumerate(variants["variant_id"])}
    rows: list[dict[str, Any]] = []
    srm: dict[str, float] = {}
    scoped = [(str(seg), group) for seg, group in counts.groupby("segment_id", sort=False)]
    overall = counts.assign(variant_id=counts["variant_id"].map(
        lambda v: v if v == HOLDOUT else _arm_of(v)))
    overall = overall.groupby("variant_id", as_index=False, sort=False)[
        ["users", "conversions"]].sum()
    for scope, group in [*sorted(scoped, key=lambda item: item[0]), (OVERALL, overall)]:
        group = group.copy()
        group["_order"] = group["variant_id"].map(
            lambda v, scope=scope: -1 if v == HOLDOUT else order.get(v, _arm_rank(v, order)))
        group = group.sort_values("_order", kind="stable")
        rows.extend(_compare_scope(scope, group, alpha, correction, sequential, rule))
        srm_p = _srm(group, weights, holdout)
        if srm_p is not None:
            srm[scope] = srm_p
    table = pd.DataFrame(rows, columns=ANALYSIS_COLUMNS)
    return Analysis(table, srm, alpha, rule)


def _arm_rank(arm: str, order: dict[str, int]) -> int:
    ranks = [rank for vid, rank in order.items() if _arm_of(vid) == arm]
    return min(ranks) if ranks else len(order)


def _compare_scope(
    scope: str, group: pd.DataFrame, alpha: float, correction: Literal["holm", "bh"],
    sequential: bool, rule: Rule,
) -> list[dict[str, Any]]:
    records = [{str(k): v for k, v in r.items()} for r in group.to_dict("records")]
    control = records[0]
    base = stats.ArmStats(int(control["users"]), float(control["conversions"]))
    rows = [_row(scope, control, base.mean, verdict="control")]
    comparisons = []
    for record in records[1:]:
        arm = stats.ArmStats(int(record["users"]), float(record["conversions"]))
        result = stats.compare(base, arm, alpha=alpha,
                               sequential_tuning=5000.0 if sequential else None)
        comparisons.append((record, result))
    adjusted = stats.adjust_pvalues([c.p_value for _, c in comparisons], correction) \
        if comparisons else []
    for (record, result), p_adj in zip(comparisons, adjusted, strict=True):
        if rule == "bayesian":
            significant = result.chance_to_win > 1 - alpha or result.chance_to_win < alpha
        else:
            significant = p_adj < alpha
        verdict = "inconclusive"
        if significant:
            verdict = "winner" if result.uplift > 0 else "loser"
        rows.append(_row(scope, record, result.rate_b, verdict=verdict, result=result,
                         p_adjusted=p_adj))
    return rows


def _row(scope: str, record: dict[str, Any], rate: float, *, verdict: str,
         result: stats.Comparison | None = None, p_adjusted: float | None = None,
         ) -> dict[str, Any]:
    variant = str(record["variant_id"])
    return {
        "scope": scope, "variant_id": variant,
        "arm": variant if variant == HOLDOUT else _arm_of(variant),
        "users": int(record["users"]), "conversions": int(record["conversions"]), "rate": rate,
        "uplift": result.uplift if result else None,
        "ci_low": result.ci_low if result else None,
        "ci_high": result.ci_high if result else None,
        "p_value": result.p_value if result else None, "p_adjusted": p_adjusted,
        "seq_ci_low": result.seq_ci_low if result else None,
        "seq_ci_high": result.seq_ci_high if result else None,
        "chance_to_win": result.chance_to_win if result else None,
        "risk": result.risk if result else None, "verdict": verdict,
    }


def _srm(group: pd.DataFrame, weights: list[float] | None, holdout: float) -> float | None:
    """Chi-square p-value of the users per arm against the planned split (None if untestable)."""
    arms = group[group["variant_id"] != HOLDOUT]
    if len(arms) < 2 or arms["users"].sum() == 0:
        return None
    planned = list(weights) if weights is not None else [1.0] * len(arms)
    if len(planned) != len(arms):
        return None
    observed = list(arms["users"])
    if holdout > 0 and (group["variant_id"] == HOLDOUT).any():
        observed = [int(group.loc[group["variant_id"] == HOLDOUT, "users"].iloc[0]), *observed]
        total = sum(planned)
        planned = [holdout] + [(1 - holdout) * w / total for w in planned]
    total = sum(planned)
    return stats.srm_pvalue(observed, [w / total for w in planned])


def write_analysis(analysis: Analysis, out_dir: str | Path) -> list[str]:
    """Write ``analysis.csv``, ``analysis.json`` and ``analysis.png`` into ``out_dir`` (a folder
    or an object-store URL); returns where they are."""
    names = [f"analysis.{ext}" for ext in ("csv", "json", "png")]
    with open_output(out_dir) as folder:
        csv_path, json_path, png_path = (folder / name for name in names)
        atomic_write_text(csv_path, safe_csv(analysis.table))
        payload = {
            "alpha": analysis.alpha, "rule": analysis.rule, "srm": analysis.srm,
            "warnings": analysis.srm_warnings,
            "rows": json.loads(analysis.table.to_json(orient="records")),
        }
        atomic_write_text(json_path, json.dumps(payload, indent=2))
        atomic_write_bytes(png_path, plot(analysis))
    return [join(out_dir, name) for name in names]


def plot(analysis: Analysis) -> bytes:
    """A PNG of the relative uplift and its interval per variant (overall scope)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = analysis.table[(analysis.table["scope"] == OVERALL)
                          & analysis.table["uplift"].notna()]
    colors = {"winner": "#15803d", "loser": "#b91c1c", "inconclusive": "#6b7280"}
    fig, ax = plt.subplots(figsize=(7, 0.6 * max(len(rows), 1) + 1.4), dpi=120)
    records = rows.to_dict("records")
    for y, row in enumerate(records):
        color = colors.get(str(row["verdict"]), "#6b7280")
        low, high, uplift = (float(row[k]) * 100 for k in ("ci_low", "ci_high", "uplift"))
        ax.plot([low, high], [y, y], color=color, linewidth=3)
        ax.plot(uplift, y, "o", color=color, markersize=8)
    ax.axvline(0, color="#111827", linewidth=1)
    ax.set_yticks(range(len(records)), [f"{r['variant_id']} ({r['verdict']})" for r in records])
    ax.set_xlabel(f"relative uplift vs control, % ({int((1 - analysis.alpha) * 100)}% CI)")
    ax.set_title("adgen experiment: uplift per variant")
    ax.invert_yaxis()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
