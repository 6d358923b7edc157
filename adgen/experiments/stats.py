"""Experiment results statistics, matching GrowthBook's stats engine (``gbstats``).

Each arm is summarised by :class:`ArmStats` (users, sum and, for revenue-like metrics, the sum of
squares). :func:`compare` computes, for a treatment against the control, what gbstats reports:

* relative uplift ``(m_b - m_a) / m_a`` with delta-method variance
  ``var_b / (m_a² n_b) + var_a m_b² / (m_a⁴ n_a)``;
* a two-sided Welch t-test (Welch–Satterthwaite degrees of freedom): p-value and confidence
  interval (``TwoSidedTTest``);
* an always-valid sequential interval and p-value (``SequentialTwoSidedTTest``, Waudby-Smith et
  al. 2023, tuning parameter 5000 by default);
* Bayesian chance to win and risk under the flat prior (``EffectBayesianABTest``).

When the control's mean is 0 or an arm has no variance, gbstats returns an uninformative result
(uplift 0, interval [0, 0], p-value 1, chance to win 0.5) with a message; so does :func:`compare`.

Also: Holm-Bonferroni / Benjamini-Hochberg adjusted p-values (:func:`adjust_pvalues`), the
sample-ratio-mismatch chi-square test (:func:`srm_pvalue`, gbstats' ``check_srm``) and
Thompson-sampling bandit weights (:func:`thompson_weights`, gbstats' ``Bandits``).

Only numpy and the standard library are used: Student-t, chi-square and normal distribution
functions are computed here (regularised incomplete beta and gamma functions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from adgen.errors import CampaignError, ResultsError

__all__ = [
    "ArmStats",
    "Comparison",
    "adjust_pvalues",
    "chi2_sf",
    "compare",
    "srm_pvalue",
    "t_quantile",
    "t_two_sided_pvalue",
    "thompson_weights",
]

BASELINE_ZERO = "ZERO_NEGATIVE_BASELINE_VARIATION"
ZERO_VARIANCE = "ZERO_NEGATIVE_VARIANCE"
_EPS = 1e-15
_TINY = 1e-300


# --- distribution functions -----------------------------------------------------------------


def _continued_fraction_beta(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, 100 + int(20 * math.sqrt(max(a, b)))):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            result *= d * c
        if abs(d * c - 1.0) < _EPS:
            return result
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def _stirling_tail(x: float) -> float:
    """``lgamma(x) - ((x - 0.5) log x - x + log(2 pi) / 2)`` for x >= 100."""
    x2 = x * x
    return (1 / 12 - (1 / 360 - (1 / 1260 - 1 / (1680 * x2)) / x2) / x2) / x


def _log_beta(a: float, b: float) -> float:
    """``log B(a, b)``, keeping precision when one argument is large (many users)."""
    small, large = min(a, b), max(a, b)
    if large < 100:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    # lgamma(large + small) - lgamma(large) by Stirling's series, without cancellation
    ratio = ((large - 0.5) * math.log1p(small / large) + small * math.log(large + small)
             - small + _stirling_tail(large + small) - _stirling_tail(large))
    return math.lgamma(small) - ratio


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)``; ``y = 1 - x`` is passed to keep precision."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_x = math.log(x) if x < 0.5 else math.log1p(-y)
    log_y = math.log(y) if y < 0.5 else math.log1p(-x)
    log_front = a * log_x + b * log_y - _log_beta(a, b)
    # The fraction converges fast below (a+1)/(a+b+2). For large a and x near 1 it loses
    # ~sqrt(a) ulps, while the complement is good to an ulp of 1: use it while I > 1/sqrt(a).
    complement = a > 100 and a * y < 0.5 * math.log(a)
    if x < (a + 1.0) / (a + b + 2.0) and not complement:
        return math.exp(log_front) * _continued_fraction_beta(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction_beta(b, a, y) / b


def t_two_sided_pvalue(t: float, dof: float) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``dof`` degrees of freedom."""
    t2 = t * t
    return _betainc(dof / 2.0, 0.5, dof / (dof + t2), t2 / (dof + t2))


def _t_pdf(t: float, dof: float) -> float:
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return math.exp(log_norm - (dof + 1) / 2 * math.log1p(t * t / dof))


def t_quantile(q: float, dof: float) -> float:
    """Quantile ``q`` (in (0.5, 1)) of Student's t with ``dof`` degrees of freedom.

    Newton's method on the two-sided tail, which is convex for t > 0, started at the normal
    quantile (always below the t quantile), so the iterates rise monotonically to the root.
    """
    target = 2.0 * (1.0 - q)
    t, last_step = NormalDist().inv_cdf(q), math.inf
    for _ in range(200):
        step = (t_two_sided_pvalue(t, dof) - target) / (2.0 * _t_pdf(t, dof))
        # The iterates only rise; a step that falls or stops shrinking is rounding noise.
        if step <= 1e-15 * t or (step >= last_step and step < 1e-8 * t):
            return t + max(step, 0.0)
        t, last_step = t + step, step
    raise ArithmeticError(f"t quantile did not converge for q={q}, dof={dof}")


def _gamma_series(a: float, x: float) -> float:
    """Lower regularised incomplete gamma ``P(a, x)`` by its series (x < a + 1)."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(10_000):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_fraction(a: float, x: float) -> float:
    """Upper regularised incomplete gamma ``Q(a, x)`` by its continued fraction (x >= a + 1)."""
    b = x + 1.0 - a
    c, d = 1.0 / _TINY, 1.0 / b
    result = d
    for i in range(1, 10_000):
        numerator = -i * (i - a)
        b += 2.0
        d = numerator * d + b
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = b + numerator / c
        c = c if abs(c) > _TINY else _TINY
        result *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return result * math.exp(-x + a * math.log(x) - math.lgamma(a))


def chi2_sf(x: float, dof: int) -> float:
    """Survival function of the chi-square distribution with ``dof`` degrees of freedom."""
    if x <= 0.0:
        return 1.0
    a, half = dof / 2.0, x / 2.0
    return 1.0 - _gamma_series(a, half) if half < a + 1.0 else _gamma_fraction(a, half)


def _norm_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _norm_pdf(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


# --- arms and comparisons -------------------------------------------------------------------


def _check_number(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ResultsError(f"arm statistics: {name}={value!r} is not a finite number")


@dataclass(frozen=True)
class ArmStats:
    """One arm's aggregate: ``n`` users, ``sum`` of the metric and, for a mean metric such as
    revenue, ``sum_squares`` (sum of squared per-user values). With ``sum_squares=None`` the
    metric is a proportion: ``sum`` is the number of converting users (0..n)."""

    n: int
    sum: float
    sum_squares: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer) or self.n < 0:
            raise ResultsError(
                f"arm statistics: users n={self.n!r} must be a whole number >= 0"
            )
        _check_number("sum", self.sum)
        if self.sum_squares is None:
            if not 0 <= self.sum <= self.n:
                raise ResultsError(
                    f"arm statistics: conversions sum={self.sum!r} must be between 0 and the "
                    f"users n={self.n}; for a non-proportion metric also give sum_squares"
                )
            return
        _check_number("sum_squares", self.sum_squares)
        if self.sum_squares < 0:
            raise ResultsError(
                f"arm statistics: sum_squares={self.sum_squares!r} is negative: it is the sum "
                "of the squared per-user values"
            )

    @property
    def mean(self) -> float:
        """Conversion rate or mean per user (0 for an empty arm)."""
        return self.sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Per-user variance: ``p(1 - p)`` for a proportion, else the sample variance."""
        if self.sum_squares is None:
            return self.mean * (1.0 - self.mean)
        if self.n <= 1:
            return 0.0
        return (self.sum_squares - self.sum**2 / self.n) / (self.n - 1)


@dataclass(frozen=True)
class Comparison:
    """A treatment against the control; uplift and intervals are relative ((b - a) / a).

    ``risk`` is the expected relative loss if the treatment is chosen and it is worse;
    ``risk_control`` the same for keeping the control (gbstats' ``risk[1]`` and ``risk[0]``).
    The ``seq_*`` fields are None when no sequential tuning parameter was given. ``message``
    is gbstats' reason when the result is uninformative, else None.
    """

    rate_a: float
    rate_b: float
    uplift: float
    ci_low: float
    ci_high: float
    p_value: float
    seq_ci_low: float | None
    seq_ci_high: float | None
    seq_p_value: float | None
    chance_to_win: float
    risk: float
    risk_control: float
    message: str | None = None


def _welch_dof(a: ArmStats, b: ArmStats) -> float:
    """Welch–Satterthwaite degrees of freedom."""
    va, vb = a.variance / a.n, b.variance / b.n
    return (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))


def _sequential(
    uplift: float, variance: float, n_total: int, alpha: float, tuning: float
) -> tuple[float, float, float]:
    """Always-valid interval and p-value: eqs 9, 155 and 161 of Waudby-Smith et al. 2023."""
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning
    tr2p1 = n_total * rho2 + 1
    width = math.sqrt(variance * n_total) * math.sqrt(
        2 * tr2p1 * math.log(math.sqrt(tr2p1) / alpha) / (n_total**2 * rho2)
    )
    st2 = uplift**2 * n_total / variance
    log_evalue = rho2 * st2 / (2 * tr2p1) - 0.5 * math.log(tr2p1)
    return uplift - width, uplift + width, min(math.exp(-log_evalue), 1.0)


def _risks(mean: float, std: float) -> tuple[float, float]:
    """(risk of keeping control, risk of choosing treatment) for effect ~ N(mean, std²)."""
    z = mean / std
    density = std * _norm_pdf(z)
    return _norm_cdf(z) * mean + density, -_norm_cdf(-z) * mean + density


def _check_options(alpha: float, sequential_tuning: float | None) -> None:
    if not 0.0 < alpha < 1.0:
        raise CampaignError(f"alpha={alpha} must be between 0 and 1, e.g. 0.05")
    if sequential_tuning is not None and not sequential_tuning > 0:
        raise CampaignError(
            f"sequential_tuning={sequential_tuning} must be positive (GrowthBook's default is "
            "5000), or None to skip the sequential test"
        )


def _uninformative(control: ArmStats, treatment: ArmStats, sequential: bool,
                   message: str) -> Comparison:
    seq = 0.0 if sequential else None
    return Comparison(control.mean, treatment.mean, 0.0, 0.0, 0.0, 1.0, seq, seq,
                      1.0 if sequential else None, 0.5, 0.0, 0.0, message)


def compare(
    control: ArmStats,
    treatment: ArmStats,
    *,
    alpha: float = 0.05,
    sequential_tuning: float | None = 5000.0,
) -> Comparison:
    """Compare ``treatment`` with ``control`` as gbstats does (see the module docstring)."""
    # 1. check inputs; degenerate data gets gbstats' uninformative result
    _check_options(alpha, sequential_tuning)
    if (control.sum_squares is None) != (treatment.sum_squares is None):
        raise ResultsError(
            "cannot compare a proportion metric with a mean metric: give sum_squares for both "
            "arms or for neither"
        )
    sequential = sequential_tuning is not None
    if control.mean == 0:
        return _uninformative(control, treatment, sequential, BASELINE_ZERO)
    if control.variance <= 0 or treatment.variance <= 0:
        return _uninformative(control, treatment, sequential, ZERO_VARIANCE)
    # 2. relative uplift and its delta-method variance
    m_a, m_b = control.mean, treatment.mean
    uplift = (m_b - m_a) / m_a
    variance = (treatment.variance / (m_a**2 * treatment.n)
                + control.variance * m_b**2 / (m_a**4 * control.n))
    std = math.sqrt(variance)
    # 3. Welch t-test
    dof = _welch_dof(control, treatment)
    p_value = min(t_two_sided_pvalue(uplift / std, dof), 1.0)
    half_width = t_quantile(1 - alpha / 2, dof) * std
    # 4. sequential (always valid) interval
    seq: tuple[float | None, float | None, float | None] = (None, None, None)
    if sequential_tuning is not None:
        seq = _sequential(uplift, variance, control.n + treatment.n, alpha, sequential_tuning)
    # 5. Bayesian: flat prior, so the posterior of the effect is N(uplift, variance)
    risk_control, risk = _risks(uplift, std)
    return Comparison(
        rate_a=m_a, rate_b=m_b, uplift=uplift,
        ci_low=uplift - half_width, ci_high=uplift + half_width, p_value=p_value,
        seq_ci_low=seq[0], seq_ci_high=seq[1], seq_p_value=seq[2],
        chance_to_win=_norm_cdf(uplift / std), risk=risk, risk_control=risk_control,
    )


# --- across arms ----------------------------------------------------------------------------


def adjust_pvalues(p: Sequence[float], method: Literal["holm", "bh"]) -> list[float]:
    """Holm-Bonferroni (``"holm"``) or Benjamini-Hochberg (``"bh"``) adjusted p-values, in the
    order given (as R's ``p.adjust``)."""
    values = np.asarray(p, dtype=np.float64)
    if values.ndim != 1 or not np.all((values >= 0) & (values <= 1)):
        raise ResultsError(f"p-values {list(p)} must all be numbers between 0 and 1")
    m = len(values)
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum((m - np.arange(m)) * ranked, 1.0))
    elif method == "bh":
        scaled = ranked * m / np.arange(1, m + 1)
        adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    else:
        raise CampaignError(f"unknown p-value correction {method!r}: use 'holm' or 'bh'")
    result = np.empty(m)
    result[order] = adjusted
    return result.tolist()


def srm_pvalue(observed: Sequence[int], weights: Sequence[float]) -> float:
    """Sample-ratio-mismatch p-value: chi-square test of the users per arm against the planned
    weights (gbstats' ``check_srm``; arms with weight 0 add no term). Small means the split is
    broken (GrowthBook warns below 0.001)."""
    if len(observed) != len(weights) or len(observed) < 2:
        raise ResultsError(
            f"sample ratio check needs one planned weight per arm and at least 2 arms; got "
            f"{len(observed)} user counts and {len(weights)} weights"
        )
    if any(o < 0 for o in observed) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ResultsError(
            f"sample ratio check: user counts {list(observed)} and weights {list(weights)} "
            "must be non-negative, with some positive weight"
        )
    total = sum(observed)
    if not total:
        return 1.0
    total_weight = math.fsum(weights)
    statistic = 0.0
    for users, weight in zip(observed, weights, strict=True):
        if weight > 0:
            expected = weight / total_weight * total
            statistic += (users - expected) ** 2 / expected
    return chi2_sf(statistic, len(observed) - 1)


def thompson_weights(
    arms: Sequence[ArmStats],
    *,
    draws: int = 10_000,
    floor: float = 0.01,
    top_two: bool = False,
    seed: int = 0,
) -> list[float]:
    """Traffic weights for the next period by Thompson sampling, as GrowthBook's bandits.

    Each arm's mean has a Gaussian posterior N(mean, variance / n) (flat prior); ``draws``
    samples are taken with ``numpy.random.default_rng(seed)``. The weight of an arm is the share
    of draws in which it is best (or, with ``top_two``, best or second best, halved), floored
    at ``floor`` and normalised. GrowthBook publishes weights only once there are at least 100
    users per arm in total; before that, and while an arm has no variance (e.g. no conversion
    yet), this raises ResultsError and the current weights should be kept.
    """
    k = len(arms)
    if k < 2 or draws < 1 or not 0 <= floor <= 1 / k:
        raise CampaignError(
            f"thompson_weights needs at least 2 arms, draws >= 1 and 0 <= floor <= 1/arms; got "
            f"{k} arms, draws={draws}, floor={floor}"
        )
    users = sum(arm.n for arm in arms)
    if users < 100 * k:
        raise ResultsError(
            f"only {users} users across {k} arms: bandit weights need at least {100 * k} "
            "(100 per arm); keep the current weights until then"
        )
    flat = [i for i, arm in enumerate(arms) if arm.n == 0 or arm.variance <= 0]
    if flat:
        raise ResultsError(
            f"arm {flat[0]} has no variation in its metric yet (n={arms[flat[0]].n}, "
            f"sum={arms[flat[0]].sum}): keep the current weights until every arm has some"
        )
    means = np.array([arm.mean for arm in arms])
    variances = np.array([arm.variance / arm.n for arm in arms])
    rng = np.random.default_rng(seed)
    samples = rng.multivariate_normal(means, np.diag(variances), size=draws)
    ranking = np.argsort(samples, axis=1)
    winners = ranking[:, -2:] if top_two else ranking[:, -1:]
    shares = np.bincount(winners.ravel(), minlength=k) / winners.size
    shares = np.maximum(shares, floor)
    return [float(w) for w in shares / shares.sum()]
