"""Learning curves from hand-made fit histories: the drawn means and bands are the hand-computed
mean ± std over seeds per epoch; closed-form models are left out with a note."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from handmade_results import write_run
from matplotlib.collections import PolyCollection
from paper_figures import check_paper_ready, grid_shape, panel_titles
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.records import FitSummary
from mmbench.report.curves import closed_form, loss_curves, plot_curves
from mmbench.report.runs import ReportError, model_records, ok_records


def history(loss, valid, **parts):
    """Fit history rows: epoch from 1, the training loss, its named parts, the validation loss."""
    return [
        {
            "epoch": e + 1,
            "loss": loss[e],
            **{k: v[e] for k, v in parts.items()},
            "valid_loss": valid[e],
        }
        for e in range(len(loss))
    ]


def fit(rows, stopped_by="epochs"):
    return FitSummary(len(rows), 1, rows[0]["valid_loss"], stopped_by, rows)


@pytest.fixture
def results(tmp_path):
    """CMMD: seed 0 trains 3 epochs, seed 1 stops after 2. MVAE: 3 epochs. CCA: closed form."""
    write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=0,
        metrics={"error_pct": 1.0},
        fit=fit(history([3.0, 2.0, 1.0], [3.5, 2.5, 2.0], kl=[0.5, 0.4, 0.3])),
    )
    write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=1,
        metrics={"error_pct": 1.0},
        fit=fit(history([5.0, 4.0], [5.5, 4.5], kl=[0.7, 0.6]), "early_stopping"),
    )
    write_run(
        tmp_path,
        label="MVAE",
        model="mvae",
        seed=0,
        metrics={"error_pct": 2.0},
        fit=fit(history([9.0, 8.0, 7.0], [9.0, 8.5, 8.0])),
    )
    write_run(
        tmp_path,
        label="CCA",
        model="cca",
        seed=0,
        metrics={"error_pct": 3.0},
        fit=fit(history([-4.0], [-3.0]), "closed_form"),
    )
    return tmp_path


def test_curves_are_the_mean_and_std_over_seeds_per_epoch(results):
    records = ok_records(results)
    curves = loss_curves(records).set_index(["series", "part", "epoch"]).sort_index()
    loss = curves.loc["CMMD", "loss"]
    np.testing.assert_allclose(loss["mean"], [4.0, 3.0, 1.0])  # epoch 3: seed 0 only
    np.testing.assert_allclose(loss["std"], [np.sqrt(2), np.sqrt(2), 0.0])
    assert loss["runs"].tolist() == [2, 2, 1]
    np.testing.assert_allclose(curves.loc[("CMMD", "kl"), "mean"], [0.6, 0.5, 0.3])
    np.testing.assert_allclose(curves.loc[("CMMD", "valid_loss"), "mean"], [4.5, 3.5, 2.0])
    assert "CCA" not in set(curves.index.get_level_values("series"))
    assert closed_form(records) == {"CCA": "fitted in closed form (one step)"}


def test_one_panel_per_model_with_the_drawn_values(results):
    curves = loss_curves(ok_records(results))
    fig = plot_curves(curves)
    check_paper_ready(fig, 6.75)
    assert panel_titles(fig) == ["(a) MVAE (1 run)", "(b) CMMD (2 runs)"]  # paper order
    cmmd = fig.axes[1]
    lines = {line.get_label(): line for line in cmmd.lines}
    assert set(lines) == {"training loss", "validation loss", "kl"}
    np.testing.assert_allclose(lines["training loss"].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(lines["training loss"].get_ydata(), [4.0, 3.0, 1.0])
    assert lines["validation loss"].get_linestyle() == "--"
    band = next(c for c in cmmd.collections if isinstance(c, PolyCollection))
    y = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(y.max(), 4.0 + np.sqrt(2)) and np.isclose(y.min(), 1.0)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "training loss",
        "validation loss",
        "kl",
    ]


def test_panels_wrap_at_four_per_row_and_fit_one_column(tmp_path):
    for k, label in enumerate(["M-xO", "DCCA", "VCCA", "MVAE", "CMMD"]):
        write_run(
            tmp_path,
            label=label,
            model=label.lower(),
            seed=0,
            metrics={"error_pct": 1.0},
            fit=fit(
                history(
                    [3.0 + k, 2.0, 1.0],
                    [3.0, 2.5, 2.0],
                    reconstruction=[300.0, 200.0, 100.0],
                    kl=[0.5, 0.2, 0.1],
                )
            ),
        )
    curves = loss_curves(ok_records(tmp_path))
    assert grid_shape([ax for ax in plot_curves(curves).axes if ax.get_visible()]) == (2, 4)
    fig = plot_curves(curves, width=3.25)
    check_paper_ready(fig, 3.25)
    # parts 1000 times apart share a symmetric log axis, so that the small ones stay visible
    assert fig.axes[0].get_yscale() == "symlog"


def test_no_curve_at_all_is_an_error(tmp_path):
    write_run(
        tmp_path,
        label="CCA",
        model="cca",
        seed=0,
        metrics={"error_pct": 3.0},
        fit=fit(history([-4.0], [-3.0]), "closed_form"),
    )
    with pytest.raises(ReportError, match="no run has a history of more than one epoch"):
        loss_curves(ok_records(tmp_path))


def test_figure_curves_command_writes_values_and_notes_closed_form_models(results):
    outcome = CliRunner().invoke(app, ["figure", "curves", str(results)])
    assert outcome.exit_code == 0, outcome.output
    assert "note: CCA: fitted in closed form (one step), no learning curve" in outcome.output
    folder = results / "figures"
    assert (folder / "curves.pdf").is_file() and (folder / "curves.png").is_file()
    values = pd.read_csv(folder / "curves.csv")
    cmmd = values[(values["series"] == "CMMD") & (values["part"] == "loss")]
    np.testing.assert_allclose(cmmd["mean"], [4.0, 3.0, 1.0])


def test_figures_draw_the_models_reported_runs_only(results, tmp_path):
    # a tuning trial of CMMD (its label is CMMD's: it would shift CMMD's curve) and a reference
    # row (computed from the data alone: not a model) are never drawn
    write_run(
        results,
        label="CMMD",
        model="cmmd",
        seed=0,
        metrics={"error_pct": 9.0},
        role="trial",
        train={"lr": 0.5},
        fit=fit(history([90.0, 80.0, 70.0], [95.0, 85.0, 75.0], kl=[9.0, 8.0, 7.0])),
    )
    write_run(
        results,
        label="raw xO",
        model="raw",
        seed=0,
        metrics={"error_pct": 5.0},
        role="reference",
        fit=fit(history([1.0, 1.0], [1.0, 1.0])),
    )
    outcome = CliRunner().invoke(app, ["figure", "curves", str(results)])
    assert outcome.exit_code == 0, outcome.output
    values = pd.read_csv(results / "figures" / "curves.csv")
    assert set(values["series"]) == {"CMMD", "MVAE"}
    cmmd = values[(values["series"] == "CMMD") & (values["part"] == "loss")]
    np.testing.assert_allclose(cmmd["mean"], [4.0, 3.0, 1.0])
    assert {r.label for r in model_records(results)} == {"CMMD", "MVAE", "CCA"}
    write_run(
        tmp_path / "trials",
        label="CMMD",
        model="cmmd",
        seed=0,
        metrics={"error_pct": 9.0},
        role="trial",
    )
    with pytest.raises(ReportError, match="no finished model run"):
        model_records(tmp_path / "trials")


TORCH_FREE = """
import sys
import mmbench.report.curves, mmbench.tracking
from mmbench.cli import app
try:
    app(["figure", "curves", sys.argv[1], "--out", sys.argv[2]])
except SystemExit as end:
    assert end.code == 0, end.code
assert "torch" not in sys.modules, "curves or tracking imported torch"
print("torch-free")
"""


def test_curves_and_tracking_need_no_torch(results, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(results), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "torch-free" in done.stdout, done.stderr[-2000:]
