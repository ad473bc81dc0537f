"""Paper tables from hand-made results: the expected text is written by hand, the layout is read
back from the generated markdown and LaTeX."""

import io
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from handmade_results import write_run, write_suite_json
from scipy import stats
from sklearn.metrics import accuracy_score, mean_squared_error
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.data import load_dataset
from mmbench.evaluate import evaluate
from mmbench.registry import make_model
from mmbench.report.params import TIMES, budget, chosen_params
from mmbench.report.runs import all_records, ok_records, per_group, reported, run_frame
from mmbench.report.suite_info import SuiteInfo
from mmbench.report.table_formats import render
from mmbench.report.tables import PaperReference, build_table, paper_split
from mmbench.suite import SuiteError, load_suite
from mmbench.trainer import TrainConfig

FOLDS = {"protocol": "folds"}
# error_pct by model -> fold -> seed; rmse of CMMD likewise (M-xO generates nothing)
ERRORS = {
    ("mxo", "M-xO"): {1: [40.0, 42.0], 2: [36.0, 38.0]},
    ("cmmd", "CMMD"): {1: [30.0, 34.0], 2: [31.0, 31.0]},
}
CMMD_RMSE = {1: [0.70, 0.80], 2: [0.76, 0.78]}
PAPER_NOTE = "(paper): the figure published in the CMMD paper, not a result of ours."
REFERENCE_NOTE = "Set apart: references without a model, computed from the data alone."
NOT_TUNED = "Budget: not tuned (fixed settings); epoch cap 1."


@pytest.fixture
def two_folds(tmp_path):
    results = tmp_path / "xrmb_folds"
    for (model, label), folds in ERRORS.items():
        for fold, values in folds.items():
            for seed, error in enumerate(values):
                metrics = {"error_pct": error}
                if model == "cmmd":
                    metrics["rmse"] = CMMD_RMSE[fold][seed]
                write_run(
                    results,
                    label=label,
                    model=model,
                    seed=seed,
                    metrics=metrics,
                    options=FOLDS,
                    data_grid={"fold": fold},
                )
            # the no-model reference: 45 + fold + seed
            write_run(
                results,
                label="raw xO",
                model="raw",
                seed=0 if model == "mxo" else 1,
                metrics={"error_pct": 45.0 + fold + (model == "cmmd")},
                options=FOLDS,
                data_grid={"fold": fold},
                role="reference",
            )
    # a model whose every run failed has no row
    write_run(
        results,
        label="VCCA",
        model="vcca",
        seed=0,
        metrics={},
        options=FOLDS,
        data_grid={"fold": 1},
        status="failed",
    )
    return results


def tables(results, metric, **kwargs):
    """The tables as ``mmbench table`` builds them."""
    records = all_records(results)
    frame = run_frame([r for r in reported(records) if r.ok])
    return build_table(
        frame,
        metric,
        PaperReference(),
        suite=SuiteInfo.read(results),
        budget=budget(records),
        **kwargs,
    )


def test_error_table_matches_the_hand_written_markdown(two_folds):
    # fold 1: M-xO 40, 42 -> 41 ± sqrt(2); CMMD 30, 34 -> 32 ± 2 sqrt(2)
    # average: each seed averaged over the folds, then mean ± std over seeds:
    #   M-xO (40+36)/2 = 38, (42+38)/2 = 40 -> 39 ± 1.41; CMMD 30.5, 32.5 -> 31.5 ± 1.41
    # marks: per fold 2 pairs (t-test) are not significant, so both models are tied and
    # nothing is marked; the average pairs 4 runs by (fold, seed): CMMD is significantly best
    assert stats.ttest_rel([40, 42], [30, 34]).pvalue > 0.05
    assert stats.ttest_rel([36, 38], [31, 31]).pvalue > 0.05
    assert stats.ttest_rel([40, 42, 36, 38], [30, 34, 31, 31]).pvalue < 0.05
    # the paper's average is over 4 folds, so it is not shown beside our 2-fold average
    expected = f"""\
**error (%) on XRMB: mean ± std over 2 seeds (0, 1) on the test split of each fold (average: \
each seed's mean over the folds); lower is better. {NOT_TUNED} Bold: the best model; underlined: \
not significantly worse than the best (p ≥ 0.05, two-sided paired t-test over 2 to 5 pairs; runs \
paired by fold and seed) or equal to it as shown. No mark in a column where no model is \
significantly worse than the best. {REFERENCE_NOTE} {PAPER_NOTE}**

| model | fold 1 | fold 2 | average |
|:--|--:|--:|--:|
| M-xO | 41.00 ± 1.41 | 37.00 ± 1.41 | 39.00 ± 1.41 |
| *M-xO (paper)* | *39.9* | *36.5* | — |
| CMMD | 32.00 ± 2.83 | 31.00 ± 0.00 | **31.50 ± 1.41** |
| *CMMD (paper)* | *32.4* | *31.2* | — |
| *no model* |  |  |  |
| raw xO | 46.50 ± 0.71 | 47.50 ± 0.71 | 47.00 ± 0.71 |
"""
    assert render(tables(two_folds, "error_pct"), "markdown") == expected


def test_rmse_table_has_only_the_models_that_generate(two_folds):
    # CMMD fold 2: 0.76, 0.78 -> 0.770 ± 0.014; average: seeds 0.73, 0.79 -> 0.760 ± 0.042;
    # a single model is not compared with anything: no mark, no test named
    expected = f"""\
**rmse of the generated missing modalities on XRMB: mean ± std over 2 seeds (0, 1) on the test \
split of each fold (average: each seed's mean over the folds); lower is better. {NOT_TUNED} \
{PAPER_NOTE}**

| model | fold 1 | fold 2 | average |
|:--|--:|--:|--:|
| CMMD | 0.750 ± 0.071 | 0.770 ± 0.014 | 0.760 ± 0.042 |
| *CMMD (paper)* | *0.74* | *0.75* | — |
"""
    assert render(tables(two_folds, "rmse"), "markdown") == expected


def test_all_four_folds_show_the_papers_average_and_one_seed_has_no_spread(tmp_path):
    for fold, error in zip((1, 2, 3, 4), (32.0, 31.0, 47.0, 38.0)):
        write_run(
            tmp_path,
            label="CMMD",
            model="cmmd",
            seed=0,
            metrics={"error_pct": error},
            options=FOLDS,
            data_grid={"fold": fold},
        )
    text = render(tables(tmp_path, "error_pct"), "markdown")
    assert text.endswith("""\
| model | fold 1 | fold 2 | fold 3 | fold 4 | average |
|:--|--:|--:|--:|--:|--:|
| CMMD | 32.00 | 31.00 | 47.00 | 38.00 | 37.00 |
| *CMMD (paper)* | *32.4* | *31.2* | *47.4* | *38.2* | *37.3* |
""")
    assert "mean ± std over 1 seed (0)" in text


def test_latex_table_of_a_single_test_split(tmp_path):
    write_suite_json(tmp_path, name="noisy", seeds=[0])
    write_run(
        tmp_path,
        label="M-xO",
        model="mxo",
        seed=0,
        metrics={"error_pct": 12.5},
        dataset="mnist_noisy",
    )
    write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=0,
        metrics={"error_pct": 2.25},
        dataset="mnist_noisy",
    )
    # one seed: no test; bold is the best mean
    caption = (
        r"\caption{error (\%) on noisy MNIST: mean $\pm$ std over 1 seed (0) on the test "
        r"split; lower is better. Budget: not tuned (fixed settings); epoch cap 1. Bold: "
        r"the best model; underlined: not significantly worse than the best (p $\geq$ "
        r"0.05, two-sided test; runs paired by seed) or equal to it as shown. No test "
        r"where fewer than 2 runs pair up (bold is then the best mean). (paper): the "
        r"figure published in the CMMD paper, not a result of ours.}"
    )
    expected = (
        r"""\begin{table}[t]
\centering
"""
        + caption
        + r"""
\label{tab:noisy-error_pct}
\begin{tabular}{lr}
\toprule
model & noisy MNIST \\
\midrule
M-xO & 12.50 \\
\textit{M-xO (paper)} & \textit{13.1} \\
CMMD & \textbf{\boldmath 2.25} \\
\textit{CMMD (paper)} & \textit{2.4} \\
\bottomrule
\end{tabular}
\end{table}
"""
    )
    assert render(tables(tmp_path, "error_pct"), "latex") == expected


# A suite with three seeds, a tuned budget, capped runs and reference rows: the layout is read
# back from the LaTeX. error_pct per seed: CMMD best; M-xO tied with it; VCCA worse.
SEED_ERRORS = {
    "M-xO": [14.0, 15.5, 14.5],
    "VCCA": [25.0, 26.0, 24.0],
    "CMMD": [13.5, 15.0, 13.0],
    "raw xO": [22.0, 22.5, 21.5],
}


@pytest.fixture
def tuned(tmp_path):
    results = tmp_path / "quickstart"
    write_suite_json(
        results,
        name="quickstart",
        seeds=[0, 1, 2, 3],
        display_names={"mnist_embedded": "2-view MNIST"},
    )
    for label, values in SEED_ERRORS.items():
        role = "reference" if label == "raw xO" else "model"
        for seed, value in enumerate(values):
            # VCCA's seed 1 hit the epoch cap, CMMD's seed 2 the time budget
            stop = {("VCCA", 1): "epochs", ("CMMD", 2): "time_budget"}.get(
                (label, seed), "early_stopping"
            )
            write_run(
                results,
                label=label,
                model=label.lower(),
                seed=seed,
                dataset="mnist_embedded",
                metrics={"error_pct": value},
                role=role,
                params={"lr_scale": 1.0},
                train={"epochs": 30, "lr": 1e-3},
                stopped_by=None if role == "reference" else stop,
            )
        if role == "model":  # 3 tuning trials per model, over lr; never reported
            for trial, lr in enumerate((1e-4, 1e-3, 1e-2)):
                write_run(
                    results,
                    label=label,
                    model=label.lower(),
                    seed=100 + trial,
                    dataset="mnist_embedded",
                    metrics={"error_pct": 99.0},
                    role="trial",
                    params={"lr_scale": 1.0},
                    train={"epochs": 30, "lr": lr},
                    status="ok" if trial < 2 else "failed",
                )
    return results


def test_latex_layout_models_as_rows_with_marks_rules_label_and_caption(tuned):
    (table,) = tables(tuned, "error_pct")
    assert stats.ttest_rel(SEED_ERRORS["M-xO"], SEED_ERRORS["CMMD"]).pvalue >= 0.05
    assert stats.ttest_rel(SEED_ERRORS["VCCA"], SEED_ERRORS["CMMD"]).pvalue < 0.05
    latex = render([table], "latex")
    lines = latex.splitlines()
    assert r"\label{tab:quickstart-error_pct}" in lines
    assert [line for line in lines if line.endswith("rule")] == [
        r"\toprule",
        r"\midrule",
        r"\midrule",
        r"\bottomrule",
    ]
    body = lines[lines.index(r"\toprule") + 1 : lines.index(r"\bottomrule")]
    assert body == [
        r"model & 2-view MNIST \\",
        r"\midrule",
        r"M-xO & \underline{14.67 $\pm$ 0.76} \\",
        r"VCCA & 25.00 $\pm$ 1.00$^\dagger$ \\",
        r"CMMD & \textbf{\boldmath 13.83 $\pm$ 1.04}$^\ddagger$ \\",
        r"\midrule",  # reference rows apart, never marked
        r"raw xO & 22.00 $\pm$ 0.50 \\",
    ]
    caption = next(line for line in lines if line.startswith(r"\caption"))
    for part in [
        "on 2-view MNIST",
        r"mean $\pm$ std over 3 seeds (0, 1, 2; the suite's seed 3 "
        "not run) on the test split",
        r"tuned on validation: 3 trials $\times$ 30-epoch cap per model",
        "paired t-test over 2 to 5 pairs; runs paired by seed",
        r"$^\dagger$: some of its runs stopped at the epoch cap",
        r"$^\ddagger$: some of its runs stopped at the time budget",
        "references without a model",
    ]:
        assert part in caption, part


def test_markdown_marks_span_mean_and_std_and_reference_rows_are_apart(tuned):
    text = render(tables(tuned, "error_pct"), "markdown")
    rows = text.splitlines()[2:]
    assert rows == [
        "| model | 2-view MNIST |",
        "|:--|--:|",
        "| M-xO | <u>14.67 ± 0.76</u> |",
        "| VCCA | 25.00 ± 1.00† |",
        "| CMMD | **13.83 ± 1.04**‡ |",
        "| *no model* |  |",
        "| raw xO | 22.00 ± 0.50 |",
    ]


def test_transpose_puts_models_in_columns(two_folds):
    latex = render(tables(two_folds, "error_pct"), "latex", transpose=True).splitlines()
    # the reference column is set apart by a gap, the average row by a rule
    assert r"\begin{tabular}{lrrrr@{\qquad}r}" in latex
    assert (
        r"fold & M-xO & \textit{M-xO (paper)} & CMMD & \textit{CMMD (paper)} & raw xO \\" in latex
    )
    average = latex.index(
        r"average & 39.00 $\pm$ 1.41 & --- & \textbf{\boldmath 31.50 $\pm$ "
        r"1.41} & --- & 47.00 $\pm$ 0.71 \\"
    )
    assert latex[average - 1] == r"\midrule"
    markdown = render(tables(two_folds, "error_pct"), "markdown", transpose=True)
    assert "| fold | M-xO | *M-xO (paper)* | CMMD | *CMMD (paper)* |  | raw xO |" in markdown
    assert (
        "| fold 2 | 37.00 ± 1.41 | *36.5* | 31.00 ± 0.00 | *31.2* |  | 47.50 ± 0.71 |" in markdown
    )


def test_trials_are_not_reported_and_set_the_budget(tuned):
    (table,) = tables(tuned, "error_pct")
    assert [row.name for row in table.rows] == ["M-xO", "VCCA", "CMMD", "raw xO"]
    assert all(cell.n == 3 for cell in table.cells())  # the trials' 99 % is in no cell
    facts = budget(all_records(tuned))
    assert facts.trials == {"M-xO": 3, "VCCA": 3, "CMMD": 3}  # a failed trial counts
    assert facts.describe() == f"tuned on validation: 3 trials {TIMES} 30-epoch cap per model"


def test_params_show_the_tuned_settings_and_what_the_trials_tried(tuned):
    chosen = chosen_params(all_records(tuned))
    # the failed trial tried lr = 0.01 too
    assert [(p.label, p.name, p.value, p.tried) for p in chosen] == [
        (label, "train.lr", 1e-3, (1e-4, 1e-3, 1e-2)) for label in ("M-xO", "VCCA", "CMMD")
    ]
    everything = chosen_params(all_records(tuned), include_fixed=True)
    assert {(p.name, p.tuned) for p in everything if p.label == "CMMD"} == {
        ("lr_scale", False),
        ("train.lr", True),
        ("train.epochs", False),
    }
    result = CliRunner().invoke(app, ["table", str(tuned), "--params"])
    assert result.exit_code == 0, result.output
    assert "| model | hyper-parameter | chosen | tried |" in result.output
    assert "| CMMD | train.lr | 0.001 | 0.0001, 0.001, 0.01 |" in result.output
    latex = (
        CliRunner()
        .invoke(app, ["table", str(tuned), "--params", "--all-params", "--format", "latex"])
        .output
    )
    assert r"\label{tab:quickstart-params}" in latex and r"lr\_scale & 1" in latex


def test_the_suite_field_display_names_is_validated_and_saved(tmp_path):
    path = tmp_path / "suite.yaml"
    suite = {
        "name": "s",
        "data": {"name": "synthetic"},
        "models": [{"name": "cca"}],
        "display_names": {"synthetic": "toy data"},
    }
    path.write_text(yaml.safe_dump(suite))
    assert load_suite(path).model_dump(mode="json")["display_names"] == {"synthetic": "toy data"}
    path.write_text(yaml.safe_dump({**suite, "display_names": ["toy data"]}))
    with pytest.raises(SuiteError, match="display_names: Input should be a valid dictionary"):
        load_suite(path)


def test_display_names_from_the_suite_and_own_data_named_by_the_suite(tmp_path):
    write_suite_json(
        tmp_path,
        name="my_sensors",
        seeds=[0],
        display_names={
            "error_pct": "phone error (%)",
            "fold": "speaker pair",
            "CMMD": "CMMD (ours)",
        },
    )
    for fold in (1, 2):
        write_run(
            tmp_path,
            label="CMMD",
            model="cmmd",
            seed=0,
            dataset="npz",
            metrics={"error_pct": 10.0 + fold},
            data_grid={"fold": fold},
        )
    (table,) = tables(tmp_path, "error_pct")
    text = render([table], "markdown")
    assert text.startswith(
        "**phone error (%) on my_sensors: mean ± std over 1 seed (0) on the "
        "test split of each speaker pair"
    )
    assert "| model | speaker pair 1 | speaker pair 2 | average |" in text
    assert "| CMMD (ours) | 11.00 | 12.00 | 11.50 |" in text
    assert table.label == "tab:my_sensors-error_pct"


def test_missing_seeds_are_counted_and_higher_is_better_for_map(tmp_path):
    for seed, (vcca, cmmd) in enumerate([(60.0, 64.0), (62.0, 66.0)]):
        write_run(
            tmp_path,
            label="VCCA",
            model="vcca",
            seed=seed,
            dataset="flickr",
            metrics={"map_micro_pct": vcca},
        )
        write_run(
            tmp_path,
            label="CMMD",
            model="cmmd",
            seed=seed,
            dataset="flickr",
            metrics={"map_micro_pct": cmmd},
            status="ok" if seed == 0 else "failed",
        )
    (table,) = tables(tmp_path, "map_micro_pct", digits=1)
    text = render([table], "markdown")
    # one shared seed: no test, CMMD (higher) is the best mean
    assert text.endswith("""\
| VCCA | 61.0 ± 1.4 |
| *VCCA (paper)* | *60.5* |
| CMMD | **64.0** (n=1) |
| *CMMD (paper)* | *64.1* |
""")
    assert "higher is better" in table.caption


def test_csv_output_carries_the_numbers_and_p_values(two_folds):
    text = render(tables(two_folds, "error_pct"), "csv")
    frame = pd.read_csv(io.StringIO(text))
    cell = frame[(frame.row == "CMMD") & (frame.column == "average")].iloc[0]
    assert (cell.kind, cell["mean"], cell.n, cell.mark) == ("model", 31.5, 2, "best")
    assert cell["std"] == pytest.approx(2**0.5)
    other = frame[(frame.row == "M-xO") & (frame.column == "average")].iloc[0]
    assert (other.test, other.pairs) == ("paired t-test", 4)
    assert other.p_value == pytest.approx(
        stats.ttest_rel([40, 42, 36, 38], [30, 34, 31, 31]).pvalue
    )
    paper = frame[(frame.row == "M-xO (paper)") & (frame.column == "fold 2")].iloc[0]
    assert (paper.kind, paper["mean"], paper.n) == ("paper", 36.5, 0)
    reference = frame[(frame.row == "raw xO") & (frame.column == "fold 1")].iloc[0]
    assert reference.kind == "reference" and pd.isna(reference.mark)
    assert reference.p_value == pytest.approx(stats.ttest_rel([46, 47], [30, 34]).pvalue)


def test_paper_figures_in_our_units():
    reference = PaperReference()
    # Table 3 gives accuracy: 100 - 97.6
    assert reference.value("mnist_svhn", "test", "CMMD", "error_pct") == pytest.approx(2.4)
    assert reference.value("mnist_svhn", "test", "MMVAE-IWAE", "error_pct") == pytest.approx(8.7)
    # Table 6 gives a fraction: 0.15829
    assert reference.value("xrmb", "speaker7", "CMMD", "error_pct") == pytest.approx(15.829)
    assert reference.value("xrmb", "test_speakers", "CMMD", "error_pct") == 21.1
    assert reference.value("flickr", "test", "CMMD", "map_macro_pct") == 64.1
    # not the paper's data
    assert reference.value("mnist_embedded", "test", "CMMD", "error_pct") is None
    # "average" is in Table 1 (over folds) and Table 6 (over speakers): the rows decide which
    folds = {f"fold {k}": f"fold{k}" for k in (1, 2, 3, 4)} | {"average": "average"}
    speakers = {f"speaker {k}": f"speaker{k}" for k in (7, 16, 20, 21, 23, 28, 31, 35)}
    speakers["average"] = "average"
    assert reference.column("xrmb", folds, "CMMD", "error_pct")["average"] == 37.3
    speaker_average = reference.column("xrmb", speakers, "CMMD", "error_pct")["average"]
    assert speaker_average == pytest.approx(21.161)
    assert reference.column("xrmb", speakers, "CMMD", "rmse")["average"] == pytest.approx(0.74773)
    # Table 4's two settings, from the mnist3 loader's ``observed`` option
    two_missing = paper_split("mnist3", {"observed": ["mnist"]})
    one_missing = paper_split("mnist3", {"observed": ["mnist", "mnist_rotated"]})
    assert (two_missing, one_missing) == ("missing_x2_x3", "missing_x3")
    assert reference.value("mnist3", one_missing, "CMMD", "error_pct") == pytest.approx(1.1)


def test_table_command_prints_and_writes(two_folds, tmp_path):
    out = tmp_path / "table.tex"
    result = CliRunner().invoke(
        app,
        [
            "table",
            str(two_folds),
            "--format",
            "latex",
            "--metric",
            "error_pct,rmse",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().count(r"\begin{table}") == 2
    assert r"\textbf{\boldmath 31.50 $\pm$ 1.41}" in result.output
    assert r"\label{tab:xrmb_folds-rmse}" in result.output
    bad = CliRunner().invoke(app, ["table", str(two_folds), "--metric", "accuracy"])
    assert bad.exit_code == 2 and "no run has metric 'accuracy'" in bad.output
    standalone = CliRunner().invoke(app, ["table", str(two_folds), "--standalone"])
    assert standalone.exit_code == 2 and "use it with --format latex" in standalone.output
    both = CliRunner().invoke(app, ["table", str(two_folds), "--params", "--ranks"])
    assert both.exit_code == 2 and "separate tables" in both.output


SPEAKER_ERRORS = {7: 15.0, 16: 20.0, 20: 16.0, 21: 25.0, 23: 26.0, 28: 22.0, 31: 20.0, 35: 20.0}


def test_by_group_table_has_a_column_per_speaker_as_table_6(tmp_path):
    write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=0,
        options={"protocol": "speakers"},
        metrics={"error_pct": 21.0},  # XRMB's groups are speakers
        metrics_by_group={str(s): {"error_pct": e} for s, e in SPEAKER_ERRORS.items()},
    )
    records = ok_records(tmp_path)
    (table,) = build_table(
        run_frame(per_group(records)), "error_pct", PaperReference(), by_group=True
    )
    assert table.label == "tab:results-error_pct-by-speaker"
    assert "on each test speaker of the test split" in table.caption
    lines = render([table], "markdown").splitlines()
    assert lines[2:] == [
        "| model | speaker 7 | speaker 16 | speaker 20 | speaker 21 | speaker 23 | speaker 28 "
        "| speaker 31 | speaker 35 | average |",
        "|:--" + "|--:" * 9 + "|",
        "| CMMD | 15.00 | 20.00 | 16.00 | 25.00 | 26.00 | 22.00 | 20.00 | 20.00 | 20.50 |",
        "| *CMMD (paper)* | *15.829* | *21.388* | *16.213* | *25.764* | *26.762* | *22.536* "
        "| *20.587* | *20.213* | *21.161* |",
    ]
    # without --by-group the same run is one column: the XRMB column of Table 2
    (overall,) = build_table(run_frame(records), "error_pct", PaperReference())
    assert [(row.name, row.cells["test"].mean) for row in overall.rows] == [
        ("CMMD", 21.0),
        ("CMMD (paper)", 21.1),
    ]


# The quickstart's ten models, each with three seeds, and the reference row.
QUICKSTART = (
    "M-xO",
    "CCA",
    "DCCA",
    "DCCAE",
    "VCCA",
    "VCCA-private",
    "MVAE",
    "MMVAE-ELBO",
    "MMVAE-IWAE",
    "CMMD",
)


@pytest.fixture
def ten_models(tmp_path):
    results = tmp_path / "quickstart"
    write_suite_json(results, name="quickstart", seeds=[0, 1, 2])
    rng = np.random.default_rng(0)
    for position, label in enumerate((*QUICKSTART, "raw xO")):
        for seed in range(3):
            write_run(
                results,
                label=label,
                model=label.lower(),
                seed=seed,
                dataset="mnist_noisy",
                role="reference" if label == "raw xO" else "model",
                metrics={
                    "error_pct": 10.0 + 2 * position + rng.uniform(-1, 1),
                    "rmse": 0.3 + rng.uniform(-0.01, 0.01),
                },
                stopped_by="epochs",
            )
    return results


# Computer Modern at 10 pt, generously: at most 10 pt per letter of a model's name (M, W), 6 pt
# per character of a number (digits are 5 pt, bold ones 5.75), \tabcolsep (6 pt) on both sides.
TEXT_BLOCK_PT = 7 * 72.27


def test_the_ten_model_table_fits_a_seven_inch_text_block(ten_models):
    for metric in ("error_pct", "rmse"):
        markdown = render(tables(ten_models, metric), "markdown").splitlines()[2:]
        rows = [
            [cell.strip() for cell in re.sub(r"\*|</?u>", "", line).split("|")[1:-1]]
            for line in markdown
            if not line.startswith("|:--")
        ]
        widths = [10.0 * max(len(row[0]) for row in rows)] + [
            6.0 * max(len(row[i]) for row in rows) for i in range(1, len(rows[0]))
        ]
        assert {row[0] for row in rows} >= {*QUICKSTART, "raw xO"}
        assert sum(widths) + 12.0 * len(widths) < TEXT_BLOCK_PT


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_standalone_latex_compiles_and_fits_the_text_block(ten_models, tmp_path):
    out = tmp_path / "tables.tex"
    result = CliRunner().invoke(
        app, ["table", str(ten_models), "--format", "latex", "--standalone", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    compiled = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", out.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compiled.returncode == 0, compiled.stdout[-2000:]
    assert (tmp_path / "tables.pdf").is_file()
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert not re.search(r"Overfull \\hbox", log), "a table is wider than 7 inches"


def test_evaluation_keeps_metrics_per_test_group():
    splits = load_dataset("synthetic", n_train=300, n_valid=100, n_test=200, n_classes=3)
    groups = np.arange(200) % 3
    splits = replace(splits, test=replace(splits.test, groups=groups))
    model = make_model(
        "cmmd",
        {
            "latent_dim": 2,
            "encoder_hidden": [8],
            "prior_hidden": [8],
            "decoder_hidden": [8],
            "classifier_hidden": [4],
        },
    )
    model.fit(
        splits.train, splits.valid, trainer=TrainConfig(epochs=2, batch_size=100), n_classes=3
    )
    result = evaluate(model, splits)
    predicted = model.predict_proba(splits.test.xO).argmax(axis=1)
    generated = model.generate(splits.test.xO)["x2"]
    for group in range(3):
        mask = groups == group
        metrics = result.metrics_by_group[str(group)]
        assert metrics["error_pct"] == pytest.approx(
            100 * (1 - accuracy_score(splits.test.labels[mask], predicted[mask]))
        )
        assert metrics["rmse"] == pytest.approx(
            np.sqrt(mean_squared_error(splits.test.data["x2"][mask], generated[mask])), rel=1e-5
        )


def test_the_readme_example_table_is_what_mmbench_prints(tmp_path):
    # the README's example: SEED_ERRORS on noisy MNIST, VCCA's seed 1 at the epoch cap, four
    # tuning trials per model
    write_suite_json(tmp_path, name="quickstart", seeds=[0, 1, 2])
    for label, values in SEED_ERRORS.items():
        role = "reference" if label == "raw xO" else "model"
        for seed, value in enumerate(values):
            write_run(
                tmp_path,
                label=label,
                model=label.lower(),
                seed=seed,
                dataset="mnist_noisy",
                metrics={"error_pct": value},
                role=role,
                stopped_by="epochs" if (label, seed) == ("VCCA", 1) else None,
            )
        for trial in range(4 if role == "model" else 0):
            write_run(
                tmp_path,
                label=label,
                model=label.lower(),
                seed=50 + trial,
                role="trial",
                dataset="mnist_noisy",
                metrics={"error_pct": 50.0},
                train={"lr": 10.0**-trial},
            )
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = readme.split("Example (hand-made results")[1].split("```")[1].strip()
    table = render(tables(tmp_path, "error_pct"), "markdown").split("\n\n")[1].strip()
    assert table == example
