"""The omega, generation and t-SNE figures from hand-made results: the plotted data is checked
against hand-computed values (and, for t-SNE, against scikit-learn called directly), and every
figure against the page: its width in inches, fonts of at least 8 pt, panel letters, a legend
clear of the data."""

import numpy as np
import pandas as pd
import pytest
from handmade_results import write_run
from matplotlib.collections import PolyCollection
from matplotlib.image import AxesImage, imread
from paper_figures import check_fonts_embedded, check_paper_ready, grid_shape, panel_titles
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.evaluate import kept_generations
from mmbench.report.figures import (
    generation_figures,
    omega_curves,
    plot_omega,
    plot_omega_by_group,
    plot_tsne,
    tsne,
    tsne_embeddings,
)
from mmbench.report.runs import ReportError, ok_records
from mmbench.stats import spread_over_classes
from mmbench.views import Views

SPEAKERS = {7: 0.0, 16: 4.0}  # speaker -> offset of its error


@pytest.fixture
def omega_results(tmp_path):
    """CMMD over omega 0, 0.5, 1 on two speakers and two seeds: error = 20 + 10 omega + offset
    + 2 seed; rmse = 0.5 + 0.1 omega. The fixed-variance variant only at omega 0.7; M-xO has no
    omega."""
    options = {"protocol": "per_speaker"}
    for speaker, offset in SPEAKERS.items():
        for seed in (0, 1):
            for omega in (0.0, 0.5, 1.0):
                write_run(
                    tmp_path,
                    label="CMMD",
                    model="cmmd",
                    seed=seed,
                    options=options,
                    data_grid={"speaker": speaker},
                    grid={"omega": omega},
                    metrics={
                        "error_pct": 20 + 10 * omega + offset + 2 * seed,
                        "rmse": 0.5 + 0.1 * omega,
                    },
                )
            write_run(
                tmp_path,
                label="CMMD (σ²=0.01)",
                model="cmmd",
                seed=seed,
                options=options,
                data_grid={"speaker": speaker},
                params={"omega": 0.7, "decoder_variance": 0.01},
                metrics={"error_pct": 30.0, "rmse": 0.9},
            )
            write_run(
                tmp_path,
                label="M-xO",
                model="mxo",
                seed=seed,
                options=options,
                data_grid={"speaker": speaker},
                metrics={"error_pct": 40.0},
            )
    return tmp_path


def test_omega_curves_average_speakers_within_seed_then_over_seeds(omega_results):
    curves = omega_curves(ok_records(omega_results))
    average = curves[curves["group"] == "average"].set_index(["series", "metric", "omega"])
    # per seed, the speakers' average is 22 + 10 omega (seed 0) and 24 + 10 omega (seed 1)
    for omega in (0.0, 0.5, 1.0):
        cell = average.loc[("CMMD", "error_pct", omega)]
        assert (cell["mean"], cell["seeds"]) == (pytest.approx(23 + 10 * omega), 2)
        assert cell["std"] == pytest.approx(np.sqrt(2))
        assert average.loc[("CMMD", "rmse", omega), "mean"] == pytest.approx(0.5 + 0.1 * omega)
    assert average.loc[("CMMD (σ²=0.01)", "error_pct", 0.7), "mean"] == 30.0


def test_omega_figure_plots_those_values(omega_results):
    fig = plot_omega(omega_curves(ok_records(omega_results)))
    check_paper_ready(fig, 6.75)
    error_ax, rmse_ax = fig.axes[:2]
    drawn = {line.get_label(): line for line in error_ax.lines}
    np.testing.assert_allclose(drawn["CMMD"].get_xdata(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(drawn["CMMD"].get_ydata(), [23.0, 28.0, 33.0])
    np.testing.assert_allclose(drawn["CMMD (σ²=0.01)"].get_xdata(), [0.7])
    level = drawn["M-xO"]
    np.testing.assert_allclose(level.get_ydata(), [40.0, 40.0])  # a dashed level: no omega
    assert level.get_linestyle() == "--"
    rmse = {line.get_label(): line for line in rmse_ax.lines}
    np.testing.assert_allclose(rmse["CMMD"].get_ydata(), [0.5, 0.55, 0.6])
    assert "M-xO" not in rmse  # M-xO generates nothing
    assert (error_ax.get_ylabel(), rmse_ax.get_ylabel()) == ("error (%)", "rmse of generated $x_M$")
    assert error_ax.get_xlabel() == "ω (ω = 1: the ELBO)"
    assert [t[:3] for t in panel_titles(fig)] == ["(a)", "(b)"]


def test_omega_figure_is_drawn_per_speaker_beside_the_average(omega_results):
    curves = omega_curves(ok_records(omega_results))
    assert list(dict.fromkeys(curves["group"])) == ["average", "speaker 7", "speaker 16"]
    by_speaker = curves.set_index(["group", "series", "metric", "omega"])
    for speaker, offset in SPEAKERS.items():
        cell = by_speaker.loc[(f"speaker {speaker}", "CMMD", "error_pct", 0.5)]
        # seeds 0 and 1: 25 + offset and 27 + offset
        assert cell["mean"] == pytest.approx(26 + offset)
        assert cell["std"] == pytest.approx(np.sqrt(2))
    for width in (6.75, 3.25):
        fig = plot_omega_by_group(curves, "error_pct", width=width)
        check_paper_ready(fig, width)
        assert panel_titles(fig) == ["(a) speaker 7", "(b) speaker 16", "(c) average"]
        speaker_16 = {line.get_label(): line for line in fig.axes[1].lines}
        np.testing.assert_allclose(speaker_16["CMMD"].get_ydata(), [25.0, 30.0, 35.0])


def test_test_groups_of_a_run_are_speakers_too(tmp_path):
    """Speakers as test groups of each run (metrics_by_group), not as data points."""
    for seed in (0, 1):
        for omega in (0.0, 0.5, 1.0):
            write_run(
                tmp_path,
                label="CMMD",
                model="cmmd",
                seed=seed,
                grid={"omega": omega},
                metrics={"error_pct": 10.0 + omega},
                metrics_by_group={
                    "3": {"error_pct": 5.0 + omega},
                    "12": {"error_pct": 15.0 + omega + seed},
                },
            )
    curves = omega_curves(ok_records(tmp_path)).set_index(["group", "omega"])
    assert curves.loc[("speaker 3", 1.0), "mean"] == pytest.approx(6.0)
    assert curves.loc[("speaker 12", 1.0), "mean"] == pytest.approx(16.5)
    assert curves.loc[("average", 1.0), "mean"] == pytest.approx(11.0)  # the runs' own metric


def test_omega_figure_refuses_fewer_than_three_omegas(tmp_path):
    for omega in (0.5, 0.7):
        write_run(
            tmp_path,
            label="CMMD",
            model="cmmd",
            seed=0,
            grid={"omega": omega},
            metrics={"error_pct": 20.0},
        )
    # a third value in another model (a fixed omega) draws no curve either
    write_run(
        tmp_path,
        label="CMMD (σ²=0.01)",
        model="cmmd",
        seed=0,
        params={"omega": 0.9, "decoder_variance": 0.01},
        metrics={"error_pct": 30.0},
    )
    with pytest.raises(ReportError, match=r"3 or more values of omega.*CMMD: omega = \[0.5, 0.7\]"):
        omega_curves(ok_records(tmp_path))
    outcome = CliRunner().invoke(app, ["figure", "omega", str(tmp_path)])
    assert outcome.exit_code == 2
    assert "CMMD: omega = [0.5, 0.7]; CMMD (σ²=0.01): omega = [0.9]" in " ".join(
        outcome.output.split()
    )
    assert not (tmp_path / "figures").exists()


def test_error_bands_are_clipped_to_the_metric_range(tmp_path):
    # error 1 % and 99 % with std 2.8 (seeds at ±2): unclipped bands would pass 0 and 100 %
    for seed, spread in enumerate((-2.0, 2.0)):
        for omega, error in ((0.0, 1.0), (0.5, 50.0), (1.0, 99.0)):
            write_run(
                tmp_path,
                label="CMMD",
                model="cmmd",
                seed=seed,
                grid={"omega": omega},
                metrics={"error_pct": error + spread, "rmse": 0.01 + spread / 100},
            )
    curves = omega_curves(ok_records(tmp_path))
    fig = plot_omega(curves)
    for ax, (low, high) in zip(fig.axes[:2], ((0.0, 100.0), (0.0, np.inf))):
        (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
        y = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
        assert low <= y.min() and y.max() <= high
    errors = curves[(curves["metric"] == "error_pct") & (curves["group"] == "average")]
    assert (errors["mean"] - errors["std"]).min() < 0  # the unclipped band would go below 0


def test_every_class_is_a_column_beside_the_truth(tmp_path):
    """Images (the loader's recorded 2 x 3 shape) of 4 classes; the kept points hold two of
    class 2 and none ordered by class."""
    rng = np.random.default_rng(0)
    labels = np.array([2, 0, 3, 2, 1])
    observed, truth = rng.random((5, 6)), rng.random((5, 6))
    generated = {"MVAE": rng.random((5, 6)), "CMMD": rng.random((5, 6))}
    images = {"likelihood": "bernoulli", "image_shape": [2, 3]}  # 6 features: not a square
    for label, made in generated.items():
        write_run(
            tmp_path,
            label=label,
            model=label.lower(),
            seed=0,
            dataset="mnist_svhn",
            metrics={"error_pct": 1.0},
            modalities={"x1": images, "x2": images},
            data_info={"classes": ["zero", "one", "two", "three"]},
            arrays={
                "generated": {
                    "index": np.arange(10, 15),
                    "labels": labels,
                    "observed.x1": observed,
                    "truth.x2": truth,
                    "generated.x2": made,
                }
            },
        )
    drawn = generation_figures(tmp_path, ok_records(tmp_path), width=3.25)["x2"]
    fig = drawn.figure
    check_paper_ready(fig, 3.25)
    rows = [
        ("observed x1", observed),
        ("true x2", truth),
        ("MVAE", generated["MVAE"]),
        ("CMMD", generated["CMMD"]),
    ]  # MVAE before CMMD: the paper's model order
    columns = 4
    points = [1, 4, 0, 2]  # the first kept point of class 0, 1, 2, 3
    titles = [fig.axes[c].get_title() for c in range(columns)]
    assert titles == ["zero", "one", "two", "three"]
    for r, (name, arrays) in enumerate(rows):
        assert fig.axes[r * columns].get_ylabel() == name
        for c, point in enumerate(points):
            (image,) = [
                a for a in fig.axes[r * columns + c].get_children() if isinstance(a, AxesImage)
            ]
            np.testing.assert_allclose(image.get_array(), arrays[point].reshape(2, 3))
    values = drawn.values
    assert values.shape == (3 * 4, 5 + 6)  # truth and 2 series, 4 points, 6 features
    cmmd = values[values["series"] == "CMMD"]
    assert cmmd["point"].tolist() == [11, 14, 10, 12]  # test-split indices
    np.testing.assert_allclose(cmmd[[f"x{j}" for j in range(6)]], generated["CMMD"][points])


def test_a_view_not_recorded_as_an_image_is_never_drawn_as_one(tmp_path):
    """64 z-scored features (a perfect square) without an image shape: heat-map strips of the
    values as they are, one column per class, on a colour scale symmetric around 0."""
    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 2])
    truth, made = rng.normal(size=(3, 64)), rng.normal(size=(3, 64))
    write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=0,
        dataset="npz",
        metrics={"error_pct": 1.0},
        modalities={"coefficients": {"likelihood": "gaussian", "image_shape": None}},
        arrays={
            "generated": {
                "index": np.arange(3),
                "labels": labels,
                "observed.audio": rng.normal(size=(3, 64)),
                "truth.coefficients": truth,
                "generated.coefficients": made,
            }
        },
    )
    fig = generation_figures(tmp_path, ok_records(tmp_path))["coefficients"].figure
    check_paper_ready(fig, 6.75)
    strips = [a for ax in fig.axes for a in ax.get_images()]
    assert [image.get_array().shape for image in strips] == [(64, 3), (64, 3)]
    np.testing.assert_allclose(strips[0].get_array(), truth.T)  # not clipped to [0, 1]
    np.testing.assert_allclose(strips[1].get_array(), made.T)
    low, high = strips[0].get_clim()
    assert low == -high == -np.abs(truth).max()
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["0", "1", "2"]


def test_records_without_kept_labels_take_them_from_the_stored_representation(tmp_path):
    truth = np.arange(12.0).reshape(4, 3)
    test_labels = np.array([5, 5, 1, 1, 0, 0, 9, 9])
    write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=0,
        metrics={"error_pct": 1.0},
        arrays={
            "generated": {
                "index": np.array([0, 3, 4, 6]),
                "observed.acoustic": np.zeros((4, 7)),
                "truth.articulation": truth,
                "generated.articulation": -truth,
            },
            "representation": {"z": np.zeros((8, 2)), "labels": test_labels},
        },
    )
    drawn = generation_figures(tmp_path, ok_records(tmp_path))["articulation"]
    true = drawn.values[drawn.values["series"] == "true articulation"]
    assert true["class"].tolist() == [0, 1, 5, 9] and true["point"].tolist() == [4, 3, 0, 6]
    np.testing.assert_allclose(true[["x0", "x1", "x2"]], truth[[2, 1, 0, 3]])
    assert drawn.note is None  # every class of the test split is shown


def test_classes_missing_from_the_kept_points_are_named(tmp_path):
    test_labels = np.array([0, 1, 2, 3, 1, 0])
    write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=0,
        metrics={"error_pct": 1.0},
        arrays={
            "generated": {
                "index": np.array([0, 1]),
                "observed.acoustic": np.zeros((2, 3)),
                "truth.articulation": np.ones((2, 4)),
                "generated.articulation": np.ones((2, 4)),
            },
            "representation": {"z": np.zeros((6, 2)), "labels": test_labels},
        },
    )
    drawn = generation_figures(tmp_path, ok_records(tmp_path))["articulation"]
    assert drawn.note.startswith("classes 2, 3 are not among the kept generations")
    outcome = CliRunner().invoke(app, ["figure", "generations", str(tmp_path)])
    assert outcome.exit_code == 0 and "note: classes 2, 3 are not among" in outcome.output


def test_tag_generations_list_the_most_probable_words(tmp_path):
    vocabulary = np.array(["sky", "dog", "sea", "car", "tree"])
    truth = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32)
    made = np.array([[0.1, 0.9, 0.2, 0.8, 0.0], [0.5, 0.0, 0.0, 0.0, 0.7]], dtype=np.float32)
    write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=0,
        dataset="flickr",
        metrics={"map_micro_pct": 50.0},
        modalities={"tags": {"likelihood": "bernoulli", "image_shape": None}},
        arrays={
            "generated": {
                "observed.image": np.zeros((2, 7)),
                "truth.tags": truth,
                "generated.tags": made,
                "vocabulary.tags": vocabulary,
            }
        },
    )
    fig = generation_figures(tmp_path, ok_records(tmp_path), tags=2)["tags"].figure
    check_paper_ready(fig, 6.75)
    table = fig.axes[0].tables[0]
    text = [[table[r, c].get_text().get_text() for c in range(2)] for r in range(3)]
    assert text == [["true tags", "CMMD"], ["sky, sea", "dog, car"], ["(none)", "tree, sky"]]


def test_kept_generations_cover_every_class():
    labels = np.repeat(np.arange(10), [100, 3, 50, 50, 50, 1, 50, 50, 50, 50])  # sorted by class
    kept = spread_over_classes(labels, 64)
    assert set(labels[kept]) == set(range(10))
    counts = np.bincount(labels[kept])
    assert counts.tolist() == [6, 3, 6, 6, 6, 1, 6, 6, 6, 6]  # 64 // 10 = 6, or all the class has
    assert np.all(np.diff(kept) > 0)
    phones = np.arange(400) % 40  # 40 classes, 64 points: one of each
    assert sorted(phones[spread_over_classes(phones, 64)]) == list(range(40))
    many = np.arange(100)  # more classes than points: 64 classes spread over them
    assert len(spread_over_classes(many, 64)) == 64
    rng = np.random.default_rng(0)
    views = Views(
        {"x1": rng.random((300, 2)), "x2": rng.random((300, 3))},
        ("x1",),
        ("x2",),
        labels=rng.permutation(np.arange(300) % 10),
    )
    generations = kept_generations(views, {"x2": views.data["x2"] * 2})
    assert set(generations.labels) == set(range(10))
    np.testing.assert_array_equal(generations.labels, views.labels[generations.index])
    np.testing.assert_allclose(generations.generated["x2"], 2 * generations.truth["x2"])


@pytest.fixture
def tsne_results(tmp_path):
    """Six series on three well separated classes named by the user's file."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    for k, label in enumerate(["M-xO", "CCA", "DCCA", "VCCA", "MVAE", "CMMD"]):
        z = (rng.normal(size=(60, 5)) + 20.0 * np.eye(5)[labels]).astype(np.float32)
        write_run(
            tmp_path,
            label=label,
            model=label.lower(),
            seed=0,
            dataset="npz",
            metrics={"error_pct": 1.0 + k},
            data_info={"classes": ["cat", "dog", "eel"]},
            arrays={"representation": {"z": z, "labels": labels}},
        )
    return tmp_path


def test_tsne_points_are_scikit_learns_coloured_and_named_by_class(tsne_results):
    records = ok_records(tsne_results)
    embeddings = tsne_embeddings(tsne_results, records, perplexity=10.0)
    fig = plot_tsne(embeddings)
    check_paper_ready(fig, 6.75)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert grid_shape(panels) == (2, 4)  # six panels wrap after four
    assert panel_titles(fig) == [
        "(a) M-xO",
        "(b) CCA",
        "(c) DCCA",
        "(d) VCCA",
        "(e) MVAE",
        "(f) CMMD",
    ]
    from mmbench.store import RunStore

    z = RunStore(tsne_results).arrays(records[0].run_id, "representation")["z"]
    first = next(r for r in records if r.label == "M-xO")
    z = RunStore(tsne_results).arrays(first.run_id, "representation")["z"]
    points = panels[0].collections[0]
    np.testing.assert_allclose(points.get_offsets(), tsne(z, perplexity=10.0), rtol=1e-5)
    colours = points.get_facecolors()
    labels = np.repeat([0, 1, 2], 20)
    for cls in (0, 1, 2):
        assert len(np.unique(colours[labels == cls], axis=0)) == 1
    assert len(np.unique(colours, axis=0)) == 3
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["cat", "dog", "eel"]
    assert legend.get_title().get_text() == "class"


def test_tsne_names_digits_and_fits_one_column(tmp_path):
    labels = np.arange(40) % 10
    write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=0,
        dataset="mnist_embedded",
        metrics={"error_pct": 1.0},
        arrays={"representation": {"z": np.eye(40)[:, :8] + labels[:, None], "labels": labels}},
    )
    fig = plot_tsne(tsne_embeddings(tmp_path, ok_records(tmp_path), perplexity=5.0), width=3.25)
    check_paper_ready(fig, 3.25)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [str(d) for d in range(10)]
    assert legend.get_title().get_text() == "digit"


def test_figure_command_writes_pdf_png_and_values(omega_results):
    outcome = CliRunner().invoke(app, ["figure", "omega", str(omega_results), "--width", "3.25"])
    assert outcome.exit_code == 0, outcome.output
    folder = omega_results / "figures"
    for stem in ("omega", "omega_error_pct_by_group", "omega_rmse_by_group"):
        check_fonts_embedded(folder / f"{stem}.pdf")
        assert imread(folder / f"{stem}.png").shape[1] == round(3.25 * 300)
    values = pd.read_csv(folder / "omega.csv")
    assert {"group", "series", "metric", "omega", "mean", "std", "data"} <= set(values.columns)
    bad = CliRunner().invoke(app, ["figure", "histogram", str(omega_results)])
    assert bad.exit_code == 2 and "allowed: omega, generations, tsne, curves" in bad.output
