"""Paper tables from hand-made results: the expected text is written by hand."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, mean_squared_error
from typer.testing import CliRunner

from handmade_results import write_run
from mmbench.cli import app
from mmbench.data import load_dataset
from mmbench.evaluate import evaluate
from mmbench.registry import make_model
from mmbench.report.runs import ok_records, per_group, run_frame
from mmbench.report.tables import PaperReference, build_table, paper_split, render
from mmbench.trainer import TrainConfig

FOLDS = {"protocol": "folds"}
# error_pct by model -> fold -> seed; rmse of CMMD likewise (M-xO generates nothing)
ERRORS = {("mxo", "M-xO"): {1: [40.0, 42.0], 2: [36.0, 38.0]},
          ("cmmd", "CMMD"): {1: [30.0, 34.0], 2: [31.0, 31.0]}}
CMMD_RMSE = {1: [0.70, 0.80], 2: [0.76, 0.78]}
# how every caption with the paper's figures ends
PAPER_NOTE = ("(lower is better; bold: best per row; (paper): the figure published in the CMMD "
              "paper, not a result of ours).")


@pytest.fixture
def two_folds(tmp_path):
    results = tmp_path / "xrmb_folds"
    for (model, label), folds in ERRORS.items():
        for fold, values in folds.items():
            for seed, error in enumerate(values):
                metrics = {"error_pct": error}
                if model == "cmmd":
                    metrics["rmse"] = CMMD_RMSE[fold][seed]
                write_run(results, label=label, model=model, seed=seed, metrics=metrics,
                          options=FOLDS, data_grid={"fold": fold})
    # a model whose every run failed has no column
    write_run(results, label="VCCA", model="vcca", seed=0, metrics={}, options=FOLDS,
              data_grid={"fold": 1}, status="failed")
    return results


def tables(results, metric, **kwargs):
    return build_table(run_frame(ok_records(results)), metric, PaperReference(), **kwargs)


def test_error_table_matches_the_hand_written_markdown(two_folds):
    # fold 1: M-xO 40, 42 -> 41 ± sqrt(2); CMMD 30, 34 -> 32 ± 2 sqrt(2)
    # average: each seed averaged over the folds, then mean ± std over seeds:
    #   M-xO (40+36)/2 = 38, (42+38)/2 = 40 -> 39 ± 1.41; CMMD 30.5, 32.5 -> 31.5 ± 1.41
    # the paper's average is over 4 folds, so it is not shown beside our 2-fold average
    expected = f"""\
**error (%) on xrmb: mean ± std over 2 seeds {PAPER_NOTE}**

| fold | M-xO | M-xO (paper) | CMMD | CMMD (paper) |
|:--|--:|--:|--:|--:|
| fold 1 | 41.00 ± 1.41 | 39.9 | **32.00 ± 2.83** | 32.4 |
| fold 2 | 37.00 ± 1.41 | 36.5 | **31.00 ± 0.00** | 31.2 |
| average | 39.00 ± 1.41 | — | **31.50 ± 1.41** | — |
"""
    assert render(tables(two_folds, "error_pct"), "markdown") == expected


def test_rmse_table_has_only_the_models_that_generate(two_folds):
    # CMMD fold 2: 0.76, 0.78 -> 0.770 ± 0.014; average: seeds 0.73, 0.79 -> 0.760 ± 0.042
    expected = f"""\
**rmse of the generated missing modalities on xrmb: mean ± std over 2 seeds {PAPER_NOTE}**

| fold | CMMD | CMMD (paper) |
|:--|--:|--:|
| fold 1 | **0.750 ± 0.071** | 0.74 |
| fold 2 | **0.770 ± 0.014** | 0.75 |
| average | **0.760 ± 0.042** | — |
"""
    assert render(tables(two_folds, "rmse"), "markdown") == expected


def test_all_four_folds_show_the_papers_average_and_one_seed_has_no_spread(tmp_path):
    for fold, error in zip((1, 2, 3, 4), (32.0, 31.0, 47.0, 38.0)):
        write_run(tmp_path, label="CMMD", model="cmmd", seed=0, metrics={"error_pct": error},
                  options=FOLDS, data_grid={"fold": fold})
    expected = f"""\
**error (%) on xrmb: mean ± std over 1 seed {PAPER_NOTE}**

| fold | CMMD | CMMD (paper) |
|:--|--:|--:|
| fold 1 | **32.00** | 32.4 |
| fold 2 | **31.00** | 31.2 |
| fold 3 | **47.00** | 47.4 |
| fold 4 | **38.00** | 38.2 |
| average | **37.00** | 37.3 |
"""
    assert render(tables(tmp_path, "error_pct"), "markdown") == expected


def test_latex_table_of_a_single_test_split(tmp_path):
    write_run(tmp_path, label="M-xO", model="mxo", seed=0, metrics={"error_pct": 12.5},
              dataset="mnist_noisy")
    write_run(tmp_path, label="CMMD", model="cmmd", seed=0, metrics={"error_pct": 2.25},
              dataset="mnist_noisy")
    caption = (r"\caption{error (\%) on mnist\_noisy: mean $\pm$ std over 1 seed "
               + PAPER_NOTE.replace("%", r"\%") + "}")
    expected = r"""\begin{table}[t]
\centering
""" + caption + r"""
\begin{tabular}{lrrrr}
\toprule
data & M-xO & M-xO (paper) & CMMD & CMMD (paper) \\
\midrule
test & 12.50 & 13.1 & \textbf{2.25} & 2.4 \\
\bottomrule
\end{tabular}
\end{table}
"""
    assert render(tables(tmp_path, "error_pct"), "latex") == expected


def test_missing_seeds_are_counted_and_higher_is_better_for_map(tmp_path):
    for seed, (vcca, cmmd) in enumerate([(60.0, 64.0), (62.0, 66.0)]):
        write_run(tmp_path, label="VCCA", model="vcca", seed=seed, dataset="flickr",
                  metrics={"map_micro_pct": vcca})
        write_run(tmp_path, label="CMMD", model="cmmd", seed=seed, dataset="flickr",
                  metrics={"map_micro_pct": cmmd}, status="ok" if seed == 0 else "failed")
    (table,) = tables(tmp_path, "map_micro_pct", digits=1)
    assert table.cells.loc["test"].tolist() == ["61.0 ± 1.4", "60.5", "64.0 (n=1)", "64.1"]
    assert table.best.loc["test"].tolist() == [False, False, True, False]
    assert "higher is better" in table.caption


def test_csv_output_carries_the_numbers(two_folds):
    text = render(tables(two_folds, "error_pct"), "csv")
    frame = pd.read_csv(pd.io.common.StringIO(text))
    cell = frame[(frame.row == "fold 1") & (frame.column == "CMMD")].iloc[0]
    assert (cell.source, cell["mean"], cell.n, cell.best) == ("ours", 32.0, 2, True)
    assert cell["std"] == pytest.approx(8 ** 0.5)
    paper = frame[(frame.row == "fold 2") & (frame.column == "M-xO (paper)")].iloc[0]
    assert (paper.source, paper["mean"], paper.n) == ("paper", 36.5, 0)


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
    result = CliRunner().invoke(app, ["table", str(two_folds), "--format", "latex",
                                      "--metric", "error_pct,rmse", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().count(r"\begin{table}") == 2
    assert r"\textbf{32.00 $\pm$ 2.83}" in result.output
    bad = CliRunner().invoke(app, ["table", str(two_folds), "--metric", "accuracy"])
    assert bad.exit_code == 2 and "no run has metric 'accuracy'" in bad.output


SPEAKER_ERRORS = {7: 15.0, 16: 20.0, 20: 16.0, 21: 25.0, 23: 26.0, 28: 22.0, 31: 20.0, 35: 20.0}


def test_by_group_table_has_a_row_per_speaker_as_table_6(tmp_path):
    write_run(tmp_path, label="CMMD", model="cmmd", seed=0, options={"protocol": "speakers"},
              metrics={"error_pct": 21.0},  # XRMB's groups are speakers
              metrics_by_group={str(s): {"error_pct": e} for s, e in SPEAKER_ERRORS.items()})
    records = ok_records(tmp_path)
    frame = run_frame(per_group(records))
    expected = f"""\
**error (%) on xrmb: mean ± std over 1 seed {PAPER_NOTE}**

| speaker | CMMD | CMMD (paper) |
|:--|--:|--:|
| speaker 7 | **15.00** | 15.829 |
| speaker 16 | **20.00** | 21.388 |
| speaker 20 | **16.00** | 16.213 |
| speaker 21 | **25.00** | 25.764 |
| speaker 23 | **26.00** | 26.762 |
| speaker 28 | **22.00** | 22.536 |
| speaker 31 | **20.00** | 20.587 |
| speaker 35 | **20.00** | 20.213 |
| average | **20.50** | 21.161 |
"""
    assert render(build_table(frame, "error_pct", PaperReference()), "markdown") == expected
    # without --by-group the same run is one row: the XRMB column of Table 2
    (overall,) = build_table(run_frame(records), "error_pct", PaperReference())
    assert overall.cells.loc["test"].tolist() == ["21.00", "21.1"]


def test_evaluation_keeps_metrics_per_test_group():
    splits = load_dataset("synthetic", n_train=300, n_valid=100, n_test=200, n_classes=3)
    groups = np.arange(200) % 3
    splits = replace(splits, test=replace(splits.test, groups=groups))
    model = make_model("cmmd", {"latent_dim": 2, "encoder_hidden": [8], "prior_hidden": [8],
                                "decoder_hidden": [8], "classifier_hidden": [4]})
    model.fit(splits.train, splits.valid, trainer=TrainConfig(epochs=2, batch_size=100),
              n_classes=3)
    result = evaluate(model, splits)
    predicted = model.predict_proba(splits.test.xO).argmax(axis=1)
    generated = model.generate(splits.test.xO)["x2"]
    for group in range(3):
        mask = groups == group
        metrics = result.metrics_by_group[str(group)]
        assert metrics["error_pct"] == pytest.approx(
            100 * (1 - accuracy_score(splits.test.labels[mask], predicted[mask])))
        assert metrics["rmse"] == pytest.approx(
            np.sqrt(mean_squared_error(splits.test.data["x2"][mask], generated[mask])), rel=1e-5)
