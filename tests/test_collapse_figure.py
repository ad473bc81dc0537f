"""Collapse curves drawn from hand-made posterior statistics whose KLs are known exactly.

With unit variances, KL[N(m, 1) || N(0, 1)] = m^2 / 2 exactly in floating point for small
integers m. Over 100 test points and delta = 0.01 a dimension is collapsed at eps when its 99th
smallest KL is <= eps.
"""

import json

import numpy as np
import pandas as pd
import pytest
from handmade_results import write_run
from matplotlib.image import imread
from paper_figures import check_fonts_embedded, check_paper_ready, grid_shape, panel_titles
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.metrics import collapse_thresholds
from mmbench.report.collapse import PANELS, collapse_curves, eps_grid, mean_curves, plot_collapse
from mmbench.report.figures import data_name
from mmbench.report.runs import ReportError, ok_records
from mmbench.report.style import letter, model_style

N = 100
EPS = np.arange(7.0)  # 0, 1, ..., 6 nats
VARIANCE_EPS = np.linspace(0.0, 0.13, 14)  # 0, 0.01, ..., 0.13


def means_for_known_kls() -> np.ndarray:
    """(100, 4) means: KL 0 everywhere (dim 0); 0.5 (dim 1); 2 on 99 points and 12.5 on one
    (dim 2: 99th smallest 2); 2 on 98 points and 4.5 on two (dim 3: 99th smallest 4.5)."""
    mean = np.zeros((N, 4), dtype=np.float32)
    mean[:, 1] = 1.0
    mean[:, 2] = 2.0
    mean[0, 2] = 5.0
    mean[:, 3] = 2.0
    mean[:2, 3] = 3.0
    return mean


# collapsed at eps 0: dim 0; 1: +dim 1; 2: +dim 2; 5: +dim 3
SHARES_RUN_A = np.array([0.25, 0.5, 0.75, 0.75, 0.75, 1.0, 1.0])
SHARES_RUN_B = np.ones(7)  # all means 0: every dimension collapsed from eps = 0
# decoder variances 0.045 (feature 0) and 0.2 (feature 1): feature 0 collapsed from eps = 0.05
VARIANCE_SHARES = np.where(VARIANCE_EPS >= 0.045, 0.5, 0.0)


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results" / "xrmb_folds"
    zeros = np.zeros((N, 4), dtype=np.float32)
    logvar_decoder = np.log(np.tile(np.array([[0.045, 0.2]], dtype=np.float32), (N, 1)))
    for seed, mean in enumerate([means_for_known_kls(), zeros]):
        write_run(
            root,
            label="CMMD",
            model="cmmd",
            seed=seed,
            metrics={"error_pct": 30.0},
            arrays={
                "posteriors": {
                    "z_given_xO.mean": mean,
                    "z_given_xO.logvar": zeros,
                    "z_given_xM.mean": mean,
                    "z_given_xM.logvar": zeros,
                    "decoder_logvar": logvar_decoder,
                }
            },
        )
    # a model with z|xO only, and one without posteriors at all
    write_run(
        root,
        label="VCCA",
        model="vcca",
        seed=0,
        metrics={"error_pct": 40.0},
        arrays={
            "posteriors": {"z_given_xO.mean": means_for_known_kls(), "z_given_xO.logvar": zeros}
        },
    )
    write_run(root, label="M-xO", model="mxo", seed=0, metrics={"error_pct": 45.0})
    return root


def plotted(fig, panel_index: int) -> dict[str, np.ndarray]:
    return {line.get_label(): np.asarray(line.get_ydata()) for line in fig.axes[panel_index].lines}


def test_curves_are_the_hand_computed_shares(results):
    curves = collapse_curves(results, ok_records(results), EPS, VARIANCE_EPS, delta=0.01)
    assert set(curves["series"]) == {"CMMD", "VCCA"}  # M-xO has no posteriors
    assert set(curves.loc[curves["series"] == "VCCA", "panel"]) == {"kl_xO_prior"}
    fig = plot_collapse(mean_curves(curves), delta=0.01)
    kl_xO, kl_xM, kl_between, variance = (plotted(fig, k) for k in range(4))
    np.testing.assert_allclose(kl_xO["CMMD"], (SHARES_RUN_A + SHARES_RUN_B) / 2)  # mean over seeds
    np.testing.assert_allclose(kl_xO["VCCA"], SHARES_RUN_A)
    np.testing.assert_allclose(kl_xM["CMMD"], (SHARES_RUN_A + SHARES_RUN_B) / 2)
    assert set(kl_xM) == {"CMMD"}
    np.testing.assert_allclose(kl_between["CMMD"], np.ones(7))  # z|xO equals z|xM: KL 0
    np.testing.assert_allclose(variance["CMMD"], VARIANCE_SHARES)
    np.testing.assert_allclose(fig.axes[3].lines[0].get_xdata(), VARIANCE_EPS)
    assert panel_titles(fig) == [f"({k}) {p.title}" for k, p in zip("abcd", PANELS)]
    assert fig.axes[0].get_xlabel() == "ε (nats)"
    # the same model keeps its colour in every panel
    colours = [{line.get_label(): line.get_color() for line in ax.lines} for ax in fig.axes[:4]]
    assert colours[0]["CMMD"] == colours[3]["CMMD"] != colours[0]["VCCA"]


def test_another_delta_is_computed_from_the_stored_statistics(results):
    # delta = 0.05: the 95th smallest KL decides; dim 3 has 98 points at 2, so it collapses at 2
    curves = collapse_curves(results, ok_records(results), EPS, VARIANCE_EPS, delta=0.05)
    vcca = curves[(curves["series"] == "VCCA") & (curves["panel"] == "kl_xO_prior")]
    np.testing.assert_allclose(vcca["share"], [0.25, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_collapse_command_defaults_to_the_latest_results(results, tmp_path, monkeypatch):
    older = tmp_path / "results" / "older"
    write_run(older, label="CMMD", model="cmmd", seed=0, metrics={"error_pct": 1.0})
    (results / "runs").touch()  # results/xrmb_folds changed last
    monkeypatch.chdir(tmp_path)
    outcome = CliRunner().invoke(
        app,
        [
            "collapse",
            "--eps",
            "0:6",
            "--points",
            "7",
            "--variance-eps",
            "0:0.13",
            "--where",
            "seed=0",
            "--width",
            "3.25",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "results/xrmb_folds (the most recently modified" in outcome.output.replace("\n", "")
    folder = tmp_path / "results" / "xrmb_folds" / "figures"
    assert (folder / "collapse.pdf").read_bytes().startswith(b"%PDF")
    assert (folder / "collapse.png").stat().st_size > 0
    table = pd.read_csv(folder / "collapse.csv")
    cmmd = table[(table["series"] == "CMMD") & (table["panel"] == "kl_xO_prior")]
    np.testing.assert_allclose(cmmd["share"], SHARES_RUN_A)  # --where seed=0: the first run only
    np.testing.assert_allclose(cmmd["eps"], EPS)
    check_fonts_embedded(folder / "collapse.pdf")
    # printed 3.25 inches wide at 300 dpi, not cropped
    assert imread(folder / "collapse.png").shape[1] == round(3.25 * 300)


def test_eps_grid_and_bad_options():
    np.testing.assert_allclose(eps_grid("0:6", 40), np.linspace(0, 6, 40))
    runner = CliRunner()
    for args, message in (
        (["--eps", "6"], "expected START:STOP"),
        (["--delta", "1.5"], "--delta 1.5: must lie in (0, 1)"),
        (["--layout", "3x1"], "--layout '3x1'; allowed: row, 2x2"),
        (["--width", "0.5"], "--width 0.5: a figure's width in inches"),
    ):
        outcome = runner.invoke(app, ["collapse", "nowhere", *args])
        assert outcome.exit_code == 2 and message in outcome.output.replace("\n", "")


@pytest.mark.parametrize(
    ("width", "layout", "shape"),
    [(6.75, "row", (1, 4)), (6.75, None, (1, 4)), (6.75, "2x2", (2, 2)), (3.25, None, (2, 2))],
)
def test_figure_is_sized_for_the_page_in_the_layout_asked_for(results, width, layout, shape):
    curves = mean_curves(collapse_curves(results, ok_records(results), EPS, VARIANCE_EPS))
    fig = plot_collapse(curves, width=width, layout=layout)
    check_paper_ready(fig, width)  # width in inches, fonts >= 8 pt, legend clear of the data
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert grid_shape(panels) == shape
    assert [t[:3] for t in panel_titles(fig)] == ["(a)", "(b)", "(c)", "(d)"]
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"CMMD", "VCCA"}


def test_a_row_too_narrow_for_four_panels_is_refused(results):
    curves = mean_curves(collapse_curves(results, ok_records(results), EPS, VARIANCE_EPS))
    with pytest.raises(ReportError, match=r"--layout row at --width 3.25: .* use --layout 2x2"):
        plot_collapse(curves, width=3.25, layout="row")


def test_models_that_coincide_differ_in_colour_line_and_marker():
    styles = [model_style(label) for label in ("VCCA", "VCCA-private")]
    assert len({s.colour for s in styles}) == len({str(s.linestyle) for s in styles}) == 2
    assert styles[0].marker != styles[1].marker
    paper = (
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
    assert len({model_style(label).colour for label in paper}) == len(paper)
    assert model_style("my model") == model_style("my model")  # stable for other labels
    assert [letter(k) for k in (0, 3, 25, 26, 27)] == ["(a)", "(d)", "(z)", "(aa)", "(ab)"]


def test_variance_axis_follows_the_data_unless_given(tmp_path):
    """z-scored features: decoder variances 0.4 to 1.1, not MNIST's 0 to 0.13."""
    rng = np.random.default_rng(0)
    zeros = np.zeros((N, 2), dtype=np.float32)
    variances = {0: rng.uniform(0.4, 0.9, (N, 3)), 1: rng.uniform(0.5, 1.1, (N, 3))}
    for seed, variance in variances.items():
        write_run(
            tmp_path,
            label="CMMD",
            model="cmmd",
            seed=seed,
            metrics={"error_pct": 1.0},
            arrays={
                "posteriors": {
                    "z_given_xO.mean": zeros,
                    "z_given_xO.logvar": zeros,
                    "decoder_logvar": np.log(variance),
                }
            },
        )
    records = ok_records(tmp_path)
    # the largest variance that decides a curve: the top per-feature threshold over the runs
    top = max(collapse_thresholds(np.exp(np.log(v)), 0.01).max() for v in variances.values())
    assert 1.0 < top <= 1.1
    curves = collapse_curves(tmp_path, records, EPS, None, delta=0.01, points=5)
    grid = curves.loc[curves["panel"] == "decoder_variance", "eps"].unique()
    np.testing.assert_allclose(grid, np.linspace(0, top, 5), rtol=1e-6)
    variance = curves[curves["panel"] == "decoder_variance"]
    assert variance.groupby("run_id")["share"].last().eq(1.0).all()  # every curve reaches 1
    assert variance.groupby("run_id")["share"].first().eq(0.0).all()
    given = collapse_curves(tmp_path, records, EPS, VARIANCE_EPS)
    np.testing.assert_allclose(
        given.loc[given["panel"] == "decoder_variance", "eps"].unique(), VARIANCE_EPS
    )


def test_own_data_is_named_by_its_suite(tmp_path):
    for name in ("mydata", "otherdata"):
        folder = tmp_path / name
        zeros = np.zeros((N, 2), dtype=np.float32)
        write_run(
            folder,
            label="CMMD",
            model="cmmd",
            seed=0,
            dataset="npz",
            options={"path": "data.npz"},
            metrics={"error_pct": 1.0},
            arrays={"posteriors": {"z_given_xO.mean": zeros, "z_given_xO.logvar": zeros}},
        )
    (tmp_path / "mydata" / "suite.json").write_text(json.dumps({"name": "my data"}))
    assert data_name(tmp_path / "mydata", ok_records(tmp_path / "mydata")) == "my data"
    # without suite.json (older results), the results folder's name
    assert data_name(tmp_path / "otherdata", ok_records(tmp_path / "otherdata")) == "otherdata"
    outcome = CliRunner().invoke(app, ["collapse", str(tmp_path / "mydata"), "--points", "3"])
    assert outcome.exit_code == 0, outcome.output
    table = pd.read_csv(tmp_path / "mydata" / "figures" / "collapse.csv")
    assert set(table["data"]) == {"my data"}
    assert (
        b"my data: posterior collapse"
        in (tmp_path / "mydata" / "figures" / "collapse.pdf").read_bytes()
    )
