"""Experiment analysis: read results, compare each variant with its control, say who wins.

Results come from a file (CSV or Parquet), a DataFrame or a SQL query (:class:`SqlSpec`) in one
of two shapes, or from an ad platform's report; all are checked, not trusted:

- **aggregated**: ``variant_id``, ``users`` (or ``impressions``), ``conversions`` (or
  ``clicks``), optional ``segment_id``; one row per variant. ``holdout`` rows are the holdout
  group: with a ``segment_id``, that segment's; without, all segments' together. Unknown
  variants or segments, a variant under another segment's id, and repeated rows are errors.
- **per customer**: ``customer_id`` and ``converted`` (0/1, or ``conversions``); joined to the
  assignment ledger to find each customer's variant, segment and holdout membership. A customer
  on two lines, or one never assigned, is an error naming the lines.
- **a platform's report** (a Meta Ads Manager export, CSV or XLSX; a Google Ads ad report):
  rows matched to variants by the names adgen's exports gave the ads
  (:mod:`adgen.experiments.platforms`); totals rows and rows of other ads are reported in
  :attr:`Analysis.notes` and not counted. Users are impressions, which follow the platform's
  delivery rather than adgen's split, so no sample-ratio test is made.

Within each segment the control is the segment's holdout when the results have one, else the
segment's first variant (first creative, index 0); overall, variants are pooled by their *arm*
(creative and index, read from their own columns) across segments, against the whole holdout.
Each variant gets rate, relative uplift, Welch test with a delta-method interval, Holm or
Benjamini-Hochberg adjusted p-value, optional sequential interval, Bayesian chance to win and
risk (all as GrowthBook's ``gbstats``), and a verdict. A sample-ratio-mismatch test against the
planned split warns when traffic is off. Every scope (segment, then ``all``) appears once.

:func:`analyze` reads the results against an output (its ledger, manifest and settings);
:func:`analyze_counts` is the analysis itself, on counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from adgen.errors import ResultsError
from adgen.experiments import stats
from adgen.experiments.assignment import RefreshState
from adgen.experiments.platforms import match_report
from adgen.output.files import atomic_write_bytes, atomic_write_text, safe_csv
from adgen.output.lock import output_lock
from adgen.output.mirror import open_output
from adgen.sources.reports import read_report
from adgen.sources.sql import SqlError, read_frame
from adgen.spec import CampaignSpec, SqlSpec

HOLDOUT = "holdout"
OVERALL = "all"
SRM_ALERT = 0.001
"""SRM p-values below this mean the traffic split is broken: do not trust the results."""

Rule = Literal["frequentist", "bayesian"]
ResultsSource = str | Path | pd.DataFrame | SqlSpec
"""Results: a file (CSV, Parquet, a platform's report), a DataFrame or a SQL query."""

ANALYSIS_COLUMNS = [
    "scope", "variant_id", "arm", "creative_id", "variant_index", "generation", "users",
    "conversions", "rate", "uplift", "ci_low", "ci_high",
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
    notes: list[str] = field(default_factory=list)
    """What reading the results left out and why (a platform report's totals rows, rows of
    ads that are no variant of the output), one line each."""

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


def arm_label(creative_id: str, variant_index: int) -> str:
    """``hero-v0``: the display name of an arm (a creative and variant index across segments)."""
    return f"{creative_id}-v{variant_index}"


TEXT_COLUMNS = ["variant_id", "customer_id", "segment_id"]


def read_results(source: ResultsSource) -> tuple[pd.DataFrame, str]:
    """Read a results file (CSV or Parquet), DataFrame or query; returns it and its name for
    errors."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), "results"
    if isinstance(source, SqlSpec):
        where = f"results {source.where}"
        try:
            return read_frame(source.url, source.sql, text=TEXT_COLUMNS), where
        except SqlError as exc:
            raise ResultsError(f"{where}: {exc.reason}") from None
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
    values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    bad = (values.isna() | (values < 0) | (values != values.round())
           | ~np.isfinite(values) | (values >= 2.0**62))
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise ResultsError(
            f"{where}: {_line(where, position)}: {column} = {str(frame[column].iloc[position])!r}"
            " is not a whole number >= 0 and below 2**62"
        )
    return values.astype("int64")


CATALOG_COLUMNS = ["variant_id", "segment_id", "creative_id", "variant_index", "generation"]


@dataclass
class Counts:
    """Users and conversions per ``segment_id, variant_id`` (``segment_id`` None for a
    holdout row given for all segments), and what reading them left out (``notes``).
    ``split`` is False when the users are not adgen's assignment (a platform's impressions):
    a sample-ratio test against the planned split means nothing then."""

    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    split: bool = True


def aggregate_results(
    source: ResultsSource, customers: pd.DataFrame, catalog: pd.DataFrame
) -> Counts:
    """Per (segment_id, variant_id): users and conversions, validated.

    ``customers`` has each customer's current assignment (the ledger: ``customer_id,
    segment_id, variant_id, holdout``); ``catalog`` (:data:`CATALOG_COLUMNS`) every variant."""
    if isinstance(source, str | Path) and Path(source).is_file():
        report = read_report(Path(source))
        if report is not None:
            return Counts(*match_report(report, catalog), split=False)
    frame, where = read_results(source)
    if frame.empty:
        raise ResultsError(f"{where}: the results have a header but no rows; export them again "
                           "with one row per variant or customer")
    if "variant_id" in frame.columns and "customer_id" not in frame.columns:
        return Counts(_aggregated(frame, where, catalog))
    if "customer_id" in frame.columns:
        return Counts(_per_customer(frame, where, customers))
    raise ResultsError(
        f"{where}: results need either variant_id + users + conversions (aggregated) or "
        f"customer_id + converted (per customer); found {list(frame.columns)}"
    )


def _lines(where: str, positions: list[int]) -> str:
    text = ", ".join(str(p + 2) if where.endswith(".csv") else str(p) for p in positions)
    return f"{'lines' if where.endswith('.csv') else 'rows'} {text}"


def _aggregated(frame: pd.DataFrame, where: str, catalog: pd.DataFrame) -> pd.DataFrame:
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
    segment_of = dict(zip(catalog["variant_id"], catalog["segment_id"], strict=True))
    ids = frame["variant_id"].astype("string").fillna("")
    unknown = ~ids.isin(list(segment_of)) & (ids != HOLDOUT)
    if unknown.any():
        position = int(np.flatnonzero(unknown.to_numpy())[0])
        raise ResultsError(
            f"{where}: {_line(where, position)}: unknown variant_id {ids.iloc[position]!r}; "
            "use the ids of the run's manifest (or 'holdout')"
        )
    own = ids.map(lambda v: segment_of.get(v))
    segments: list[str | None] = list(own)
    if "segment_id" in frame.columns:
        given = frame["segment_id"].astype("string").fillna("").str.strip()
        known = set(catalog["segment_id"])
        for position, (variant, segment, expected) in enumerate(zip(ids, given, own,
                                                                   strict=True)):
            if segment and segment not in known:
                raise ResultsError(
                    f"{where}: {_line(where, position)}: unknown segment_id {segment!r}; use the "
                    "segment ids of the run's manifest"
                )
            if variant != HOLDOUT and segment and segment != expected:
                raise ResultsError(
                    f"{where}: {_line(where, position)}: variant {variant!r} belongs to segment "
                    f"{expected!r}, not {segment!r}; fix the segment_id or leave it empty"
                )
            if variant == HOLDOUT:
                segments[position] = segment or None
    rows = pd.DataFrame({"segment_id": segments, "variant_id": ids, "users": users,
                         "conversions": conversions})
    key = rows["segment_id"].fillna("\0") + "\0" + rows["variant_id"]
    repeated = key.duplicated(keep=False)
    if repeated.any():
        first = key[repeated].iloc[0]
        positions = [int(p) for p in np.flatnonzero((key == first).to_numpy())]
        variant, its = str(ids.iloc[positions[0]]), segments[positions[0]]
        scope = f" for segment {its!r}" if its and variant == HOLDOUT else ""
        raise ResultsError(
            f"{where}: {_lines(where, positions)} all give {variant!r}{scope}; give one row per "
            "variant (sum the counts first)"
        )
    holdout = rows[rows["variant_id"] == HOLDOUT]
    if holdout["segment_id"].isna().any() and holdout["segment_id"].notna().any():
        raise ResultsError(
            f"{where}: holdout rows are given both for all segments (no segment_id) and per "
            "segment; give one or the other"
        )
    return rows


def _per_customer(frame: pd.DataFrame, where: str, customers: pd.DataFrame) -> pd.DataFrame:
    conv_col = _pick(frame, ("converted", "conversions", "clicks"))
    if conv_col is None:
        raise ResultsError(
            f"{where}: per-customer results need columns customer_id and converted (0/1); "
            f"found {list(frame.columns)}"
        )
    ids = frame["customer_id"].astype("string")
    repeated = ids.duplicated(keep=False).to_numpy()
    if repeated.any():
        groups = pd.Series(np.flatnonzero(repeated)).groupby(
            ids[repeated].to_numpy(), sort=False).agg(list)
        shown = "; ".join(f"customer_id {cid!r} on {_lines(where, list(pos))}"
                          for cid, pos in list(groups.items())[:3])
        more = f" (and {len(groups) - 3} more customers)" if len(groups) > 3 else ""
        raise ResultsError(
            f"{where}: {shown}{more}: each customer must appear once (a repeated customer "
            "would be counted twice)"
        )
    converted = _counts(frame, conv_col, where)
    if (converted > 1).any():
        converted = (converted > 0).astype("int64")  # a customer converts or not
    joined = pd.DataFrame({"customer_id": ids, "converted": converted.to_numpy()})
    known = customers[["customer_id", "segment_id", "variant_id", "holdout"]].astype(
        {"customer_id": "string"})
    merged = joined.merge(known, on="customer_id", how="left", indicator=True)
    missing = merged["_merge"] == "left_only"
    if missing.any():
        position = int(np.flatnonzero(missing.to_numpy())[0])
        raise ResultsError(
            f"{where}: {_line(where, position)}: customer_id "
            f"{merged['customer_id'].iloc[position]!r} was never assigned (not in the "
            "assignment ledger)"
        )
    variant = merged["variant_id"].where(~merged["holdout"].astype(bool), HOLDOUT)
    rows = pd.DataFrame({"segment_id": merged["segment_id"], "variant_id": variant,
                         "users": 1, "conversions": merged["converted"]})
    return rows.groupby(["segment_id", "variant_id"], as_index=False, sort=False).sum()


def analyze_counts(
    counts: pd.DataFrame, catalog: pd.DataFrame, *, weights: list[float] | None = None,
    holdout: float = 0.0, alpha: float = 0.05, correction: Literal["holm", "bh"] = "holm",
    sequential: bool = False, rule: Rule = "frequentist", split: bool = True,
) -> Analysis:
    """Compare every variant with its control in each segment and overall (by arm).

    Per segment the control is the segment's holdout when the results give one, else its first
    variant; overall, variants are pooled by arm and the control is the holdout (all holdout
    rows together) when there is one. Every scope appears once. ``split``: the users follow
    the planned split (adgen's assignment), so the sample ratio is tested."""
    info = catalog.drop_duplicates("variant_id").set_index("variant_id")
    rank = pd.Series(np.arange(len(info)), index=info.index)
    rows: list[dict[str, Any]] = []
    srm: dict[str, float] = {}
    counts = counts.merge(info.drop(columns="segment_id"), left_on="variant_id",
                          right_index=True, how="left")
    counts["_order"] = counts["variant_id"].map(rank).fillna(-1)  # the holdout first
    counts["arm"] = [HOLDOUT if v == HOLDOUT else arm_label(c, int(i)) for v, c, i in zip(
        counts["variant_id"], counts["creative_id"], counts["variant_index"].fillna(0),
        strict=True)]
    scoped = counts[counts["segment_id"].notna()]
    for scope, group in sorted(scoped.groupby("segment_id", sort=False), key=lambda g: str(g[0])):
        group = group.sort_values("_order", kind="stable")
        rows.extend(_compare_scope(str(scope), group, alpha, correction, sequential, rule))
        srm_p = _srm(group, weights, holdout) if split else None
        if srm_p is not None:
            srm[str(scope)] = srm_p
    arms = counts[counts["variant_id"] != HOLDOUT]
    overall = arms.groupby(["creative_id", "variant_index"], as_index=False, sort=False).agg(
        users=("users", "sum"), conversions=("conversions", "sum"), _order=("_order", "min"))
    overall["variant_id"] = [arm_label(c, int(i)) for c, i in zip(
        overall["creative_id"], overall["variant_index"], strict=True)]
    overall["arm"] = overall["variant_id"]
    overall["generation"] = None
    held = counts[counts["variant_id"] == HOLDOUT]
    if len(held):
        overall = pd.concat([pd.DataFrame([{
            "variant_id": HOLDOUT, "arm": HOLDOUT, "users": int(held["users"].sum()),
            "conversions": int(held["conversions"].sum()), "_order": -1}]), overall],
            ignore_index=True)
    if len(overall):
        overall = overall.sort_values("_order", kind="stable")
        rows.extend(_compare_scope(OVERALL, overall, alpha, correction, sequential, rule))
        srm_p = _srm(overall, weights, holdout) if split else None
        if srm_p is not None:
            srm[OVERALL] = srm_p
    table = pd.DataFrame(rows, columns=ANALYSIS_COLUMNS)
    return Analysis(table, srm, alpha, rule)


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
    holdout = variant == HOLDOUT
    return {
        "scope": scope, "variant_id": variant, "arm": str(record["arm"]),
        "creative_id": None if holdout else record.get("creative_id"),
        "variant_index": None if holdout else _int_or_none(record.get("variant_index")),
        "generation": None if holdout else _int_or_none(record.get("generation")),
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


def _int_or_none(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


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


def analyze(target: CampaignSpec | str | Path, results: ResultsSource) -> Analysis:
    """Analyse experiment results against a campaign's last run: ``target`` is the campaign
    or its output folder or URL (whose ``run.json`` holds the experiment settings of that
    run); ``results`` a file (adgen's CSV or Parquet, a Meta or Google Ads report), a
    DataFrame or a query (:class:`~adgen.spec.SqlSpec`)."""
    location = target.output_location if isinstance(target, CampaignSpec) else target
    with (output_lock(location, "analyze", create=False, writes=False),
          open_output(location, push=False) as out_dir):
        return _analyze(target, out_dir, results)


def _analyze(
    target: CampaignSpec | str | Path, out_dir: Path, results: ResultsSource,
) -> Analysis:
    if isinstance(target, CampaignSpec):
        state = RefreshState.load(out_dir)
        settings = {"weights": state.weights or target.experiment.weights,
                    "holdout": target.experiment.holdout, **target.refresh.model_dump()}
    else:
        state = RefreshState.load(out_dir)
        settings = _run_settings(out_dir)
    if state.unfinished:
        raise ResultsError(
            f"{out_dir}: refresh {state.refreshes} did not finish; run `adgen refresh` again "
            "(or `adgen run`) to finish it, then analyse")
    customers = state.ledger.current()
    catalog = variant_catalog(out_dir, customers)
    counts = aggregate_results(results, customers, catalog)
    analysis = analyze_counts(
        counts.rows, catalog, weights=settings["weights"],
        holdout=settings["holdout"], alpha=settings["alpha"],
        correction=settings["correction"], sequential=settings["sequential"],
        rule=settings["rule"], split=counts.split,
    )
    analysis.notes = counts.notes
    return analysis


def variant_catalog(out_dir: Path, customers: pd.DataFrame) -> pd.DataFrame:
    """Every variant results may name (:data:`CATALOG_COLUMNS`): the last run's
    manifest, then any variant a customer of the ledger still holds."""
    path = out_dir / "manifest.parquet"
    if not path.exists():
        raise ResultsError(f"{out_dir}: no manifest here; run the campaign first (adgen run) "
                           "or give its output folder")
    manifest = pd.read_parquet(path)
    missing = [c for c in CATALOG_COLUMNS if c not in manifest.columns]
    if missing:
        raise ResultsError(f"{path}: no {', '.join(missing)} column (written by an older adgen); "
                           "run the campaign again")
    frames = [manifest[CATALOG_COLUMNS]]
    if len(customers):
        frames.append(customers.loc[~customers["holdout"].astype(bool), CATALOG_COLUMNS])
    catalog = pd.concat(frames, ignore_index=True).astype(
        {"variant_index": "int64", "generation": "int64"})
    return catalog.drop_duplicates("variant_id").reset_index(drop=True)


def _run_settings(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "run.json"
    if not path.exists():
        raise ResultsError(f"{out_dir}: no run.json; give the output folder of an `adgen run`")
    summary = json.loads(path.read_text(encoding="utf-8"))
    return {**summary["experiment"], **summary["refresh"]}


def write_analysis(analysis: Analysis, out_dir: str | Path) -> list[Path]:
    """Write ``analysis.csv``, ``analysis.json`` and ``analysis.png`` into ``out_dir`` (a folder,
    or an object-store URL: then the paths returned are in its local mirror), under the
    output's lock."""
    with output_lock(out_dir, "analyze"), open_output(out_dir) as folder:
        return _write_analysis(analysis, folder)


def _write_analysis(analysis: Analysis, out_dir: Path) -> list[Path]:
    csv_path, json_path, png_path = (out_dir / f"analysis.{ext}" for ext in ("csv", "json", "png"))
    atomic_write_text(csv_path, safe_csv(analysis.table))
    payload = {
        "alpha": analysis.alpha, "rule": analysis.rule, "srm": analysis.srm,
        "warnings": analysis.srm_warnings, "notes": analysis.notes,
        "rows": json.loads(analysis.table.to_json(orient="records")),
    }
    atomic_write_text(json_path, json.dumps(payload, indent=2))
    atomic_write_bytes(png_path, plot(analysis))
    return [csv_path, json_path, png_path]


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
