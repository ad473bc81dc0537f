"""Which models are not significantly worse than the best one: paired tests over shared runs.

Two models' runs are paired by what they share: the replicate seed, and the data point (fold,
speaker) where a table cell averages over several. Each model is compared with the best one
(best mean) by a two-sided paired test on the pairs they share:

- the Wilcoxon signed-rank test with at least ``WILCOXON_MIN_PAIRS`` = 6 pairs (the fewest with
  which it can reach p < 0.05: with 6 pairs its smallest two-sided p is 2/64); zero differences
  are split between the two signs, as Demšar (2006) advises;
- the paired t-test with 2 to 5 pairs;
- no test with fewer than 2 pairs (reported as such, never as "tied");
- identical values in every pair are no difference (p = 1) and need no test; a difference that
  is the same non-zero amount in every pair has an infinite t statistic (p = 0).

Marks: the best model is bold, every model not significantly worse (p >= ``ALPHA``), or whose
mean shows the same as the best's at the table's precision, underlined; when every other model
is tied with the best nothing is marked (there is no best). Each comparison is made at ``ALPHA``
on its own (no correction for the number of models compared).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
WILCOXON_MIN_PAIRS = 6

TestName = Literal["wilcoxon", "paired_t", "identical", "none"]
TEST_NAMES: dict[str, str] = {
    "wilcoxon": "Wilcoxon signed-rank test",
    "paired_t": "paired t-test",
    "identical": "identical values",
    "none": "no test (fewer than 2 pairs)",
}

Mark = Literal["best", "tied", ""]
BEST: Mark = "best"
TIED: Mark = "tied"


@dataclass(frozen=True)
class Comparison:
    """A model against the best: the ``test`` used, the ``n_pairs`` it saw and its two-sided
    ``p_value`` (None where no test was possible)."""

    test: TestName
    n_pairs: int
    p_value: float | None

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    @property
    def worse(self) -> bool:
        """Significantly different from the best (hence worse: the best has the best mean)."""
        return self.p_value is not None and self.p_value < ALPHA


def paired_test(values: pd.Series, best: pd.Series) -> Comparison:
    """Compare ``values`` with ``best`` over the index labels they share (e.g. seeds, or
    (fold, seed) tuples); missing values are left out."""
    shared = values.dropna().index.intersection(best.dropna().index)
    a = values.loc[shared].to_numpy(dtype=float)
    b = best.loc[shared].to_numpy(dtype=float)
    n = len(shared)
    if n < 2:
        return Comparison("none", n, None)
    difference = a - b
    if np.all(difference == 0):
        return Comparison("identical", n, 1.0)
    if n >= WILCOXON_MIN_PAIRS:
        p = stats.wilcoxon(a, b, zero_method="zsplit").pvalue
        return Comparison("wilcoxon", n, float(p))
    if np.all(difference == difference[0]):
        return Comparison("paired_t", n, 0.0)
    return Comparison("paired_t", n, float(stats.ttest_rel(a, b).pvalue))


@dataclass(frozen=True)
class Significance:
    """The marks of one table column.

    best: the candidate with the best mean (None: no candidate).
    marks: candidate -> "best" (bold), "tied" (not significantly worse: underlined) or "".
    comparisons: every compared row (candidates and others, e.g. reference rows) -> its
        comparison with the best.
    all_tied: every other candidate is tied with the best: no marks.
    """

    best: str | None
    marks: dict[str, Mark] = field(default_factory=dict)
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    all_tied: bool = False


def mark_column(
    samples: Mapping[str, pd.Series],
    means: Mapping[str, float],
    higher_is_better: bool,
    candidates: Iterable[str],
    digits: int | None = None,
) -> Significance:
    """Marks for one column of a table.

    samples: row -> its values, indexed by what pairs them (seed, or (data point, seed)).
    means: row -> the mean shown in the table; the best candidate is the one with the best mean
        (the first listed among equals).
    candidates: the rows that may be best (models); other rows of ``samples`` (reference rows)
        are compared with the best but never marked.
    digits: the precision the table shows means at; a candidate whose mean shows the same as
        the best's is tied with it whatever the test says (the table shows no difference).
    """
    candidates = [c for c in candidates if c in means and np.isfinite(means[c])]
    if not candidates:
        return Significance(None)
    sign = -1.0 if higher_is_better else 1.0
    best = min(candidates, key=lambda c: (sign * means[c], candidates.index(c)))
    comparisons = {
        row: paired_test(values, samples[best]) for row, values in samples.items() if row != best
    }
    if len(candidates) == 1:
        return Significance(best, {best: ""}, comparisons)

    def shown(row: str) -> str:
        return f"{means[row]:.{digits}f}" if digits is not None else repr(means[row])

    tied = {
        c
        for c in candidates
        if c != best
        and (shown(c) == shown(best) or (comparisons[c].tested and not comparisons[c].worse))
    }
    if len(tied) == len(candidates) - 1:
        return Significance(best, dict.fromkeys(candidates, ""), comparisons, all_tied=True)
    marks: dict[str, Mark] = {c: TIED if c in tied else "" for c in candidates}
    marks[best] = BEST
    return Significance(best, marks, comparisons)
