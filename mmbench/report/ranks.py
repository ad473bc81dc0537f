"""Average ranks of models across several data sets, folds or speakers (*blocks*), the Friedman
test and the Nemenyi critical difference (Demšar 2006, "Statistical comparisons of classifiers
over multiple data sets", JMLR 7).

In every block the models are ranked by their mean over seeds (1 = best; ties share the mean of
their ranks). The Friedman test asks whether the average ranks differ more than chance allows
(chi-square statistic, and Iman and Davenport's F, which Demšar recommends as less
conservative). Two models differ significantly by the Nemenyi post-hoc test when their average
ranks differ by at least the critical difference CD = q_alpha sqrt(k (k + 1) / (6 N)) for k
models and N blocks, q_alpha being the studentized range quantile over sqrt(2).

Everything is computed with scipy (friedmanchisquare, rankdata, studentized_range), which
mmbench already depends on; autorank would add statsmodels and more for these few formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from mmbench.records import REFERENCE_ROLE, TRIAL_ROLE
from mmbench.report.runs import ReportError

ALPHA = 0.05
MIN_MODELS = 3  # the Friedman test compares at least 3 (for 2, the table's paired test does)
MIN_BLOCKS = 2


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """q_alpha of the Nemenyi test for ``k`` models: the studentized range quantile (infinite
    degrees of freedom) over sqrt(2); Demšar's Table 5a gives 2.343 for k = 3 at 0.05."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n_blocks: int, alpha: float = ALPHA) -> float:
    """The smallest difference of average ranks that the Nemenyi test calls significant."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_blocks))


@dataclass(frozen=True)
class RankResult:
    """The rank analysis of one metric.

    values: blocks x models, each block's mean over seeds.
    ranks: blocks x models, 1 = best in the block.
    chi2, p_value: the Friedman statistic (ties corrected, as scipy does) and its p-value.
    f_statistic, f_p_value: Iman and Davenport's F = (N - 1) chi2 / (N (k - 1) - chi2) with
        (k - 1, (k - 1)(N - 1)) degrees of freedom, and its p-value.
    cd: the Nemenyi critical difference at ``alpha``.
    left_out: models left out because some blocks lack them -> those blocks.
    """

    metric: str
    values: pd.DataFrame
    ranks: pd.DataFrame
    chi2: float
    p_value: float
    f_statistic: float
    f_p_value: float
    cd: float
    alpha: float = ALPHA
    left_out: dict[str, list[str]] = field(default_factory=dict)

    @property
    def average_ranks(self) -> pd.Series:
        """Models by average rank, best first."""
        return self.ranks.mean(axis=0).sort_values(kind="stable")

    def groups(self) -> list[list[str]]:
        """The maximal runs of models (by average rank) whose average ranks differ by less
        than CD: no two models of a run differ significantly (the bars of the CD diagram)."""
        ranked = self.average_ranks
        names, values = list(ranked.index), ranked.to_numpy()
        groups: list[list[str]] = []
        reach_before = -1
        for first in range(len(names)):
            last = max(j for j in range(len(names)) if values[j] - values[first] < self.cd)
            if last > first and last > reach_before:
                groups.append(names[first : last + 1])
            reach_before = max(reach_before, last)
        return groups

    def to_frame(self) -> pd.DataFrame:
        """The figure's values: model, average_rank, and the test's numbers on every line."""
        ranked = self.average_ranks
        return pd.DataFrame(
            {
                "model": ranked.index,
                "average_rank": ranked.to_numpy(),
                "metric": self.metric,
                "blocks": len(self.ranks),
                "friedman_chi2": self.chi2,
                "friedman_p": self.p_value,
                "iman_davenport_f": self.f_statistic,
                "iman_davenport_p": self.f_p_value,
                "cd": self.cd,
                "alpha": self.alpha,
            }
        )


def rank_models(
    values: pd.DataFrame, metric: str, higher_is_better: bool, alpha: float = ALPHA
) -> RankResult:
    """Ranks, Friedman test and CD of ``values`` (blocks x models; a model missing from a block
    is left out, and said so)."""
    missing = values.isna()
    left_out = {
        str(m): [str(b) for b in values.index[missing[m]]]
        for m in values.columns
        if missing[m].any()
    }
    complete = values.drop(columns=list(left_out))
    n, k = complete.shape
    if k < MIN_MODELS or n < MIN_BLOCKS:
        dropped = f" (left out, missing from some blocks: {sorted(left_out)})" if left_out else ""
        raise ReportError(
            f"--ranks needs at least {MIN_MODELS} models in at least {MIN_BLOCKS} blocks (data "
            f"sets, folds or speakers; --by-group for speakers); {metric} has {k} models in "
            f"{n} blocks{dropped}"
        )
    sign = -1.0 if higher_is_better else 1.0
    ranks = complete.apply(
        lambda block: pd.Series(stats.rankdata(sign * block.to_numpy()), index=block.index), axis=1
    )
    if (ranks == (k + 1) / 2).all().all():  # every block a complete tie: nothing to test
        chi2, p_value = 0.0, 1.0
    else:
        test = stats.friedmanchisquare(*(complete[m].to_numpy() for m in complete.columns))
        chi2, p_value = float(test.statistic), float(test.pvalue)
    f_statistic, f_p_value = _iman_davenport(chi2, n, k)
    return RankResult(
        metric,
        complete,
        ranks,
        chi2,
        p_value,
        f_statistic,
        f_p_value,
        critical_difference(k, n, alpha),
        alpha,
        left_out,
    )


def _iman_davenport(chi2: float, n: int, k: int) -> tuple[float, float]:
    denominator = n * (k - 1) - chi2
    if denominator <= 0:  # the same order in every block: chi2 at its maximum
        return math.inf, 0.0
    f = (n - 1) * chi2 / denominator
    return f, float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))


def block_values(frame: pd.DataFrame, metric: str, name: str = "") -> pd.DataFrame:
    """Blocks x models for ``metric`` from a run frame (mmbench.report.runs.run_frame): each
    model's mean over seeds per data set and data point. A block is named by ``name`` (e.g. the
    suite, to tell several results directories apart), the data set where the frame has
    several, and the data point ("fold 1"); at least by its data set. Tuning trials and
    reference rows are not ranked."""
    data = frame[
        (frame["status"] == "ok")
        & (frame["metric"] == metric)
        & ~frame["role"].isin([TRIAL_ROLE, REFERENCE_ROLE])
    ]
    if data.empty:
        return pd.DataFrame()
    axes = [c for c in data.columns if c.startswith("data.") and data[c].notna().any()]
    several = data["dataset"].nunique() > 1

    def block(run: pd.Series) -> str:
        parts = [name] if name else []
        parts += [str(run["dataset"])] if several or not (name or axes) else []
        parts += [f"{a.removeprefix('data.')} {_plain(run[a])}" for a in axes]
        return " ".join(parts)

    data = data.sort_values(["dataset", *axes]).assign(block=lambda d: d.apply(block, axis=1))
    return data.pivot_table(
        index="block", columns="series", values="value", aggfunc="mean", sort=False
    )


def _plain(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
