"""Significance marks and rank analysis against independent answers: scipy's tests run here on
the hand-made values, closed forms (the exact Wilcoxon tail, the t statistic by hand), hand-ranked
Friedman examples, Demšar's worked example and his table of q_alpha."""

import io
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from handmade_results import write_run
from scipy import stats
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.report.cd_diagram import plot_cd
from mmbench.report.ranks import _iman_davenport, critical_difference, nemenyi_q, rank_models
from mmbench.report.runs import ok_records, run_frame
from mmbench.report.significance import mark_column, paired_test
from mmbench.report.table_formats import render
from mmbench.report.tables import build_table

SEEDS = range(6)


def series(values, index=None):
    return pd.Series(values, index=index if index is not None else range(len(values)), dtype=float)


def test_six_pairs_use_wilcoxon_whose_exact_tail_is_known():
    best = series([10, 11, 12, 13, 14, 15])
    worse = best + series([1, 2, 3, 4, 5, 6])
    comparison = paired_test(worse, best)
    # all 6 differences positive: the exact two-sided p is 2 / 2^6
    assert (comparison.test, comparison.n_pairs) == ("wilcoxon", 6)
    assert comparison.p_value == pytest.approx(2 / 64)
    assert comparison.worse


def test_five_pairs_use_the_paired_t_test_whose_statistic_is_computed_by_hand():
    best = series([20.0, 21.0, 19.0, 22.0, 20.5])
    other = series([21.0, 21.5, 20.5, 22.0, 22.0])
    difference = np.array([1.0, 0.5, 1.5, 0.0, 1.5])
    t = difference.mean() / (difference.std(ddof=1) / math.sqrt(5))
    comparison = paired_test(other, best)
    assert (comparison.test, comparison.n_pairs) == ("paired_t", 5)
    assert comparison.p_value == pytest.approx(2 * stats.t.sf(t, df=4))


def test_degenerate_pairs():
    assert paired_test(series([1.0, 2.0, 3.0]), series([1.0, 2.0, 3.0])).p_value == 1.0
    identical = paired_test(series([1.0, 2.0, 3.0]), series([1.0, 2.0, 3.0]))
    assert (identical.test, identical.worse) == ("identical", False)
    # one shared seed only (seed 1): no test, never "tied"
    lonely = paired_test(series([5.0, 6.0], [0, 1]), series([4.0, 4.5], [1, 2]))
    assert (lonely.test, lonely.n_pairs, lonely.p_value, lonely.tested) == ("none", 1, None, False)
    # the same non-zero difference in every pair: the t statistic is infinite
    shifted = paired_test(series([2.0, 3.0, 4.0]), series([1.0, 2.0, 3.0]))
    assert (shifted.test, shifted.p_value) == ("paired_t", 0.0)


def test_pairs_are_the_shared_index_labels():
    best = series(
        [1.0, 2.0, 3.0, 9.0], [("fold 1", 0), ("fold 1", 1), ("fold 2", 0), ("fold 2", 1)]
    )
    other = series([1.5, 2.0, 3.5], [("fold 1", 0), ("fold 1", 1), ("fold 2", 0)])
    expected = stats.ttest_rel([1.5, 2.0, 3.5], [1.0, 2.0, 3.0]).pvalue
    comparison = paired_test(other, best)
    assert (comparison.n_pairs, comparison.p_value) == (3, pytest.approx(expected))


# error_pct per seed (6 seeds, so the table uses Wilcoxon): A is best; B is consistently worse;
# C is worse by noise only; the reference row "raw xO" is never marked.
SIX_SEEDS = {
    "A": [10.0, 12.0, 11.0, 13.0, 12.5, 11.5],
    "B": [12.0, 13.5, 12.0, 14.5, 14.0, 13.0],
    "C": [11.0, 11.5, 12.0, 12.5, 13.5, 11.0],
    "raw xO": [20.0, 21.0, 19.5, 20.5, 22.0, 21.0],
}


@pytest.fixture
def six_seeds(tmp_path):
    for label, values in SIX_SEEDS.items():
        for seed, value in zip(SEEDS, values):
            write_run(
                tmp_path,
                label=label,
                model=label.lower(),
                seed=seed,
                dataset="mnist_noisy",
                metrics={"error_pct": value},
                role="reference" if label == "raw xO" else "model",
            )
    return tmp_path


def csv_cells(tables):
    return pd.read_csv(io.StringIO(render(tables, "csv"))).set_index(["row", "column"])


def test_marks_of_a_six_seed_table_follow_scipys_wilcoxon(six_seeds):
    (table,) = build_table(run_frame(ok_records(six_seeds)), "error_pct")
    best = SIX_SEEDS["A"]
    p = {
        name: stats.wilcoxon(values, best, zero_method="zsplit").pvalue
        for name, values in SIX_SEEDS.items()
        if name != "A"
    }
    assert p["B"] < 0.05 <= p["C"]  # the hand-made values do what they are meant to
    marks = {row.name: row.cells["test"].mark for row in table.rows}
    assert marks == {"A": "best", "B": "", "C": "tied", "raw xO": ""}
    cells = csv_cells([table])
    for name, expected in p.items():
        cell = cells.loc[(name, "test")]
        assert (cell.test, cell.pairs) == ("Wilcoxon signed-rank test", 6)
        assert cell.p_value == pytest.approx(expected)
    assert "Wilcoxon signed-rank test over 6 or more pairs" in table.caption
    assert "paired t-test" not in table.caption
    text = render([table], "markdown")
    assert "| A | **11.67 ± 1.08** |" in text and "| C | <u>11.92 ± 0.97</u> |" in text
    assert "| B | 13.17 ± 1.03 |" in text and "| raw xO | 20.67 ± 0.88 |" in text


def test_marks_with_three_seeds_follow_scipys_paired_t_test(tmp_path):
    values = {"A": [10.0, 12.0, 11.0], "B": [12.0, 14.5, 13.0], "C": [11.0, 11.5, 13.0]}
    for label, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            write_run(
                tmp_path,
                label=label,
                model=label.lower(),
                seed=seed,
                dataset="mnist_noisy",
                metrics={"error_pct": value},
            )
    (table,) = build_table(run_frame(ok_records(tmp_path)), "error_pct")
    p_b = stats.ttest_rel(values["B"], values["A"]).pvalue
    p_c = stats.ttest_rel(values["C"], values["A"]).pvalue
    assert p_b < 0.05 <= p_c
    assert [r.cells["test"].mark for r in table.rows] == ["best", "", "tied"]
    cells = csv_cells([table])
    assert cells.loc[("B", "test")].p_value == pytest.approx(p_b)
    assert cells.loc[("C", "test")].test == "paired t-test"
    assert "paired t-test over 2 to 5 pairs" in table.caption


def test_nothing_is_bold_when_every_model_is_tied(tmp_path):
    # the rmse of three models that all predict about the training mean: no model is worse
    values = {
        "VCCA": [0.298, 0.301, 0.299],
        "MVAE": [0.301, 0.298, 0.300],
        "CMMD": [0.299, 0.300, 0.302],
    }
    for label, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            write_run(
                tmp_path,
                label=label,
                model=label.lower(),
                seed=seed,
                dataset="mnist_noisy",
                metrics={"rmse": value},
            )
    (table,) = build_table(run_frame(ok_records(tmp_path)), "rmse")
    best = min(values, key=lambda name: np.mean(values[name]))
    for name in values:
        if name != best:
            assert stats.ttest_rel(values[name], values[best]).pvalue >= 0.05
    assert all(cell.mark == "" for cell in table.cells())
    text = render([table], "markdown") + render([table], "latex")
    assert "**0." not in text and r"\textbf" not in text and "<u>" not in text
    assert "No mark in a column where no model is significantly worse" in table.caption


def test_equal_means_as_shown_are_tied_whatever_the_test():
    # B is worse in every seed by 0.0002: significant, but both show 0.298 at 3 digits
    samples = {
        "A": series([0.2980, 0.2981, 0.2979]),
        "B": series([0.2982, 0.2983, 0.2981]),
        "C": series([0.310, 0.311, 0.312]),
    }
    means = {name: float(values.mean()) for name, values in samples.items()}
    assert stats.ttest_rel(samples["B"], samples["A"]).pvalue < 0.05
    marks = mark_column(samples, means, False, ["A", "B", "C"], digits=3).marks
    assert marks == {"A": "best", "B": "tied", "C": ""}
    assert mark_column(samples, means, False, ["A", "B", "C"], digits=5).marks["B"] == ""


def test_one_seed_has_no_test_and_bold_is_the_best_mean(tmp_path):
    for label, value in (("A", 3.0), ("B", 4.0)):
        write_run(
            tmp_path,
            label=label,
            model=label.lower(),
            seed=0,
            dataset="mnist_noisy",
            metrics={"map_micro_pct": value},
        )
    (table,) = build_table(run_frame(ok_records(tmp_path)), "map_micro_pct")
    assert [r.cells["test"].mark for r in table.rows] == ["", "best"]  # higher is better
    assert "No test where fewer than 2 runs pair up" in table.caption
    assert csv_cells([table]).loc[("A", "test")].test == "no test (fewer than 2 pairs)"


def test_the_average_column_pairs_runs_by_fold_and_seed(tmp_path):
    # 2 folds x 3 seeds: each fold column has 3 pairs (t-test), the average 6 (Wilcoxon)
    values = {
        "A": {1: [10.0, 11.0, 12.0], 2: [20.0, 21.0, 22.0]},
        "B": {1: [10.5, 11.0, 13.0], 2: [21.0, 21.5, 22.5]},
    }
    for label, folds in values.items():
        for fold, per_seed in folds.items():
            for seed, value in enumerate(per_seed):
                write_run(
                    tmp_path,
                    label=label,
                    model=label.lower(),
                    seed=seed,
                    metrics={"error_pct": value},
                    options={"protocol": "folds"},
                    data_grid={"fold": fold},
                )
    (table,) = build_table(run_frame(ok_records(tmp_path)), "error_pct")
    cells = csv_cells([table])
    a = values["A"][1] + values["A"][2]
    b = values["B"][1] + values["B"][2]
    assert cells.loc[("B", "average")].p_value == pytest.approx(
        stats.wilcoxon(b, a, zero_method="zsplit").pvalue
    )
    assert cells.loc[("B", "average")].pairs == 6
    assert cells.loc[("B", "fold 2")].p_value == pytest.approx(
        stats.ttest_rel(values["B"][2], values["A"][2]).pvalue
    )
    assert "runs paired by fold and seed" in table.caption


# Ranks -------------------------------------------------------------------------------------

# 4 blocks x 3 models, lower is better, no ties. Ranks by hand:
#   block 1: A 1, B 2, C 3;  block 2: A 1, B 3, C 2;  block 3: A 2, B 1, C 3;  block 4: A 1, B 2,
#   C 3.  Rank sums: A 5, B 8, C 11; average ranks 1.25, 2.0, 2.75.
#   Friedman chi2 = 12 N / (k (k + 1)) * sum(R_j^2) - 3 N (k + 1) with R_j the average ranks:
#   12 * 4 / 12 * (1.5625 + 4 + 7.5625) - 3 * 4 * 4 = 4 * 13.125 - 48 = 4.5
HAND = pd.DataFrame(
    {"A": [1.0, 2.0, 5.0, 0.1], "B": [2.0, 9.0, 4.0, 0.2], "C": [3.0, 8.0, 6.0, 0.3]},
    index=["d1", "d2", "d3", "d4"],
)


def test_friedman_statistic_and_average_ranks_by_hand():
    result = rank_models(HAND, "error_pct", higher_is_better=False)
    assert result.average_ranks.to_dict() == {"A": 1.25, "B": 2.0, "C": 2.75}
    assert result.chi2 == pytest.approx(4.5)
    assert result.p_value == pytest.approx(math.exp(-4.5 / 2))  # chi2 with 2 df: exp(-x/2)
    # higher is better reverses every block's ranks
    reverse = rank_models(HAND, "map_micro_pct", higher_is_better=True)
    assert reverse.average_ranks.to_dict() == {"C": 1.25, "B": 2.0, "A": 2.75}
    # Iman-Davenport: (N - 1) chi2 / (N (k - 1) - chi2) = 3 * 4.5 / (8 - 4.5)
    assert result.f_statistic == pytest.approx(13.5 / 3.5)


def test_demsar_worked_example():
    # Demšar (2006), Sec. 3.2.2: 4 classifiers on 14 data sets, chi2_F = 9.28, F_F = 3.69,
    # Nemenyi CD = 2.569 sqrt(4 * 5 / (6 * 14)) = 1.25
    f, _ = _iman_davenport(9.28, 14, 4)
    assert f == pytest.approx(3.69, abs=0.005)
    assert critical_difference(4, 14) == pytest.approx(1.25, abs=0.005)


# Demšar (2006), Table 5(a): q_0.05 of the two-tailed Nemenyi test for k = 2..10
Q_005 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


@pytest.mark.parametrize("k", sorted(Q_005))
def test_critical_difference_uses_the_tabulated_q(k):
    assert nemenyi_q(k) == pytest.approx(Q_005[k], abs=0.0015)
    assert critical_difference(k, 10) == pytest.approx(
        Q_005[k] * math.sqrt(k * (k + 1) / 60), abs=0.002
    )


def test_groups_join_models_closer_than_the_critical_difference():
    # k = 4, N = 14: CD = 1.25 (above). A is 1st and D 4th everywhere; B and C share 2nd and
    # 3rd: average ranks 1, 2.5, 2.5, 4. Only B and C are within CD of each other.
    ranks = {"A": [1] * 14, "B": [2] * 14, "C": [3] * 7 + [2] * 7, "D": [4] * 14}
    values = pd.DataFrame(ranks, dtype=float)
    values.loc[7:, "B"] = 3.0  # blocks 8-14: C 2nd, B 3rd
    result = rank_models(values, "error_pct", higher_is_better=False)
    assert result.average_ranks.to_dict() == {"A": 1.0, "B": 2.5, "C": 2.5, "D": 4.0}
    assert result.cd == pytest.approx(critical_difference(4, 14))
    assert result.groups() == [["B", "C"]]


def test_ranks_refuse_too_few_models_or_blocks():
    with pytest.raises(ValueError, match="at least 3 models in at least 2 blocks"):
        rank_models(HAND[["A", "B"]], "error_pct", False)
    with pytest.raises(ValueError, match="has 3 models in 1 blocks"):
        rank_models(HAND.iloc[:1], "error_pct", False)


def test_table_ranks_command_across_folds_writes_the_diagram(tmp_path):
    results = tmp_path / "xrmb_folds"
    for model, block_values in HAND.items():
        for fold, value in enumerate(block_values, start=1):
            for seed in (0, 1):
                write_run(
                    results,
                    label=model,
                    model=model.lower(),
                    seed=seed,
                    metrics={"error_pct": value + 0.01 * seed},
                    options={"protocol": "folds"},
                    data_grid={"fold": fold},
                )
    # a reference row is not ranked
    write_run(
        results,
        label="raw xO",
        model="raw",
        seed=0,
        metrics={"error_pct": 0.0},
        options={"protocol": "folds"},
        data_grid={"fold": 1},
        role="reference",
    )
    figures = tmp_path / "figures"
    result = CliRunner().invoke(app, ["table", str(results), "--ranks", "--figures", str(figures)])
    assert result.exit_code == 0, result.output
    assert "| model | fold 1 | fold 2 | fold 3 | fold 4 | average rank |" in result.output
    assert "| A | 1 | 1 | 2 | 1 | 1.25 |" in result.output
    assert "Friedman χ² = 4.50" in result.output
    for suffix in ("pdf", "png", "csv"):
        assert (figures / f"cd_error_pct.{suffix}").is_file()
    saved = pd.read_csv(figures / "cd_error_pct.csv")
    assert saved["model"].tolist() == ["A", "B", "C"]
    assert saved["average_rank"].tolist() == [1.25, 2.0, 2.75]
    assert saved["cd"].iloc[0] == pytest.approx(critical_difference(3, 4))


@pytest.mark.parametrize("width", [6.75, 3.25])
def test_cd_diagram_has_the_asked_width_and_readable_fonts(width):
    ten = pd.DataFrame(
        np.arange(60, dtype=float).reshape(6, 10) % 7, columns=[f"model {i}" for i in range(10)]
    )
    figure = plot_cd(rank_models(ten, "error_pct", higher_is_better=False), width)
    assert figure.get_size_inches()[0] == pytest.approx(width)
    texts = figure.axes[0].texts
    assert len(texts) >= 10 + 10 + 1  # tick labels, model names, "CD = ..."
    assert min(text.get_fontsize() for text in texts) >= 8


def test_rank_reports_start_without_torch():
    code = (
        "import sys, mmbench.report.ranks, mmbench.report.cd_diagram, "
        "mmbench.report.significance, mmbench.report.table_formats; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
