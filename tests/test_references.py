"""Reference rows (raw xO, mean xM, ridge xO→xM) against scikit-learn fitted directly on the same
splits; their expansion in suites (role, labels, ids that leave model runs alone) and resume."""

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.data import load_dataset
from mmbench.evaluate import evaluate
from mmbench.records import DownstreamSettings
from mmbench.references import MeanMissing, RawObserved, RidgeMissing
from mmbench.runner import execute_run, load_run_data
from mmbench.store import RunStore
from mmbench.suite import SuiteError, load_suite
from mmbench.views import DataSplits, Modality, Views

C_GRID = [0.01, 0.1, 1.0, 10.0]  # the downstream protocol's default grid
ALPHAS = [1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]  # ridge_xo_xm's penalties

SUITE = {
    "name": "refs",
    "seeds": [0, 1],
    "data": {"name": "digits_embedded", "options": {"seed": 3}},
    "train": {"epochs": 2, "batch_size": 100, "lr": 1.0e-3},
    "models": [{"name": "cca", "params": {"n_components": 4}}],
}


def write_suite(tmp_path, **changes):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**SUITE, **changes}, allow_unicode=True))
    return path


def chosen_on_validation(candidates, fit, validation_loss):
    """The fit of the first candidate with the lowest validation loss (the protocol's order)."""
    best = None
    for candidate in candidates:
        fitted = fit(candidate)
        loss = validation_loss(fitted)
        if best is None or loss < best[0]:
            best = (loss, candidate, fitted)
    return best[1], best[2]


def sklearn_error_on_standardised_x1(splits, seed):
    scaler = StandardScaler().fit(splits.train.data["x1"])
    x = {s: scaler.transform(getattr(splits, s).data["x1"]) for s in ("train", "valid", "test")}
    y = {s: getattr(splits, s).labels for s in ("train", "valid", "test")}
    _, svm = chosen_on_validation(
        C_GRID,
        lambda c: LinearSVC(C=c, dual="auto", max_iter=5000, random_state=seed).fit(
            x["train"], y["train"]
        ),
        lambda model: np.mean(model.predict(x["valid"]) != y["valid"]),
    )
    return 100 * np.mean(svm.predict(x["test"]) != y["test"])


def sklearn_ridge_rmse(splits):
    scaler = StandardScaler().fit(splits.train.data["x1"].astype(np.float64))
    x = {
        s: scaler.transform(getattr(splits, s).data["x1"].astype(np.float64))
        for s in ("train", "valid", "test")
    }
    y = {s: getattr(splits, s).data["x2"].astype(np.float64) for s in ("train", "valid", "test")}
    alpha, ridge = chosen_on_validation(
        ALPHAS,
        lambda a: Ridge(alpha=a).fit(x["train"], y["train"]),
        lambda model: np.mean((model.predict(x["valid"]) - y["valid"]) ** 2),
    )
    return alpha, np.sqrt(np.mean((ridge.predict(x["test"]) - y["test"]) ** 2))


@pytest.fixture(scope="module")
def reference_records(tmp_path_factory):
    """The reference runs of SUITE, executed as a suite executes them."""
    folder = tmp_path_factory.mktemp("references")
    runs = [r for r in load_suite(write_suite(folder)).runs() if r.role == "reference"]
    records = [execute_run(run, folder / "results") for run in runs]
    return runs, records


def on_test(record) -> dict[str, float]:
    """A record's test metrics (the validation ones are prefixed valid_)."""
    return {k: v for k, v in record.metrics.items() if not k.startswith("valid_")}


def test_reference_rows_equal_scikit_learn_fitted_on_the_same_splits(reference_records):
    runs, records = reference_records
    splits = load_run_data(runs[0].config)
    truth = splits.test.data["x2"].astype(np.float64)
    mean_rmse = np.sqrt(np.mean((truth - splits.train.data["x2"].mean(0, dtype=np.float64)) ** 2))
    alpha, ridge_rmse = sklearn_ridge_rmse(splits)
    assert all(record.ok for record in records), [r.error for r in records]
    for record in records:
        if record.label == "raw xO":
            expected = sklearn_error_on_standardised_x1(splits, record.config.train_seed)
            assert on_test(record) == {"error_pct": pytest.approx(expected, abs=1e-9)}
        elif record.label == "mean xM":
            assert on_test(record) == {"rmse": pytest.approx(mean_rmse, rel=1e-6)}
        else:
            assert record.label == "ridge xO→xM"
            assert record.diagnostics["alpha"] == alpha
            assert on_test(record) == {"rmse": pytest.approx(ridge_rmse, rel=1e-5)}
        assert record.fit.stopped_by == "closed_form"
    # The rows are informative: ridge beats the mean, raw pixels classify far above chance.
    assert ridge_rmse < mean_rmse
    assert max(r.metrics.get("error_pct", 0) for r in records) < 50


def test_raw_xo_on_multi_label_data_is_scikit_learns_one_vs_rest_logistic_map():
    rng = np.random.default_rng(0)
    n, d, labels = 300, 6, 4
    x = rng.normal(size=(n, d)).astype(np.float32) * rng.uniform(0.5, 20, size=d)
    indicators = x[:, :labels] / x[:, :labels].std(0) + rng.normal(size=(n, labels)) > 0.5
    views = Views(
        {"x": x, "t": indicators.astype(np.float32)},
        ("x",),
        ("t",),
        indicators.astype(np.float32),
        modalities={"t": Modality("bernoulli")},
    )
    train, valid, test = (
        views.subset(np.arange(a, b)) for a, b in ((0, 150), (150, 220), (220, 300))
    )
    splits = DataSplits("multi", train, valid, test, n_classes=labels)
    model = RawObserved()
    model.fit(train, valid)
    result = evaluate(model, splits, DownstreamSettings("logistic"))

    scaler = StandardScaler().fit(train.data["x"])
    _, chosen = chosen_on_validation(
        C_GRID,
        lambda c: OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000)).fit(
            scaler.transform(train.data["x"]), train.labels
        ),
        lambda m: (
            -average_precision_score(
                valid.labels,
                m.decision_function(scaler.transform(valid.data["x"])),
                average="micro",
            )
        ),
    )
    scores = chosen.decision_function(scaler.transform(test.data["x"]))
    expected = {
        f"map_{average}_pct": 100 * average_precision_score(test.labels, scores, average=average)
        for average in ("micro", "macro")
    }
    assert on_test(result) == pytest.approx(expected, rel=1e-6)


def test_several_observed_and_missing_modalities_are_pooled():
    splits = load_dataset("synthetic", seed=1, n_train=500, n_valid=200, n_test=200)

    def regrouped(views):
        x1, x2 = views.data["x1"], views.data["x2"]
        return Views(
            {"a": x1[:, :7], "b": x1[:, 7:], "c": x2[:, :4], "d": x2[:, 4:]},
            ("a", "b"),
            ("c", "d"),
            views.labels,
        )

    split = DataSplits(
        "four",
        *(regrouped(getattr(splits, s)) for s in ("train", "valid", "test")),
        n_classes=splits.n_classes,
    )
    for cls in (RawObserved, MeanMissing, RidgeMissing):
        whole, parts = cls(), cls()
        whole.fit(splits.train, splits.valid)
        parts.fit(split.train, split.valid)
        test_a = split.test.xO
        if cls is RawObserved:
            np.testing.assert_allclose(
                parts.represent(test_a), whole.represent(splits.test.xO), atol=1e-6
            )
        else:
            generated = parts.generate(test_a)
            assert {m: g.shape for m, g in generated.items()} == {"c": (200, 4), "d": (200, 11)}
            np.testing.assert_allclose(
                np.hstack([generated["c"], generated["d"]]),
                whole.generate(splits.test.xO)["x2"],
                atol=1e-5,
            )


def test_data_without_a_missing_modality_give_the_rmse_rows_no_metric():
    splits = load_dataset("synthetic", seed=1, n_train=300, n_valid=100, n_test=100)
    only_observed = DataSplits(
        "x1 only",
        *(getattr(splits, s).with_roles(("x1",), ()) for s in ("train", "valid", "test")),
        n_classes=splits.n_classes,
    )
    for cls in (MeanMissing, RidgeMissing):
        model = cls()
        model.fit(only_observed.train, only_observed.valid)
        assert on_test(evaluate(model, only_observed)) == {}
    raw = RawObserved()
    raw.fit(only_observed.train, only_observed.valid)
    assert list(on_test(evaluate(raw, only_observed))) == ["error_pct"]


def test_rmse_rows_are_measured_per_test_group_too():
    splits = load_dataset("synthetic", seed=2, n_train=300, n_valid=100, n_test=100)
    groups = np.arange(100) % 3
    test = Views(
        splits.test.data,
        splits.test.observed,
        splits.test.missing,
        splits.test.labels,
        groups=groups,
    )
    grouped = DataSplits("grouped", splits.train, splits.valid, test, n_classes=splits.n_classes)
    model = MeanMissing()
    model.fit(grouped.train, grouped.valid)
    result = evaluate(model, grouped)
    mean = splits.train.data["x2"].mean(0, dtype=np.float64)
    for group in range(3):
        truth = test.data["x2"][groups == group].astype(np.float64)
        assert result.metrics_by_group[str(group)] == {
            "rmse": pytest.approx(np.sqrt(np.mean((truth - mean) ** 2)), rel=1e-6)
        }


def test_ridge_needs_a_validation_split_to_choose_its_penalty():
    splits = load_dataset("synthetic", seed=1, n_train=300, n_valid=100, n_test=100)
    with pytest.raises(
        ValueError,
        match=r"chooses its penalty among \[0.01, .* on the "
        r"validation split, and none was given",
    ):
        RidgeMissing().fit(splits.train)


def test_suites_expand_references_as_runs_apart_from_the_models(tmp_path):
    runs = load_suite(write_suite(tmp_path)).runs()
    models = [r for r in runs if r.role == "model"]
    references = [r for r in runs if r.role == "reference"]
    assert runs == models + references
    assert [(r.label, r.coordinates.seed) for r in references] == [
        (label, seed) for label in ("raw xO", "mean xM", "ridge xO→xM") for seed in (0, 1)
    ]
    # Model runs keep the ids they have without references.
    alone = load_suite(write_suite(tmp_path, references=[])).runs()
    assert [r.run_id for r in alone] == [r.run_id for r in models]
    # Reference ids do not depend on the training budget (closed form), but on the downstream
    # protocol and the data.
    budget = load_suite(write_suite(tmp_path, train={"epochs": 50, "lr": 0.1})).runs()
    assert [r.run_id for r in budget if r.role == "reference"] == [r.run_id for r in references]
    other = load_suite(write_suite(tmp_path, downstream={"classifier": "logistic"})).runs()
    assert {r.run_id for r in other if r.role == "reference"}.isdisjoint(
        {r.run_id for r in references}
    )
    some = load_suite(write_suite(tmp_path, references=["ridge_xo_xm"])).runs()
    assert [r.label for r in some if r.role == "reference"] == ["ridge xO→xM"] * 2


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"references": ["raw_xo", "lasso"]},
            r"references: .*unknown reference row\(s\) \['lasso'\]; "
            r"allowed: \['mean_xm', 'raw_xo', 'ridge_xo_xm'\]",
        ),
        ({"references": ["raw_xo", "raw_xo"]}, r"references: .*repeat a name"),
        (
            {"models": [{"name": "raw_xo"}]},
            r"models.0.name: .*'raw_xo' is a reference row, not a model: name it in the suite's "
            r"references",
        ),
        (
            {"models": [{"name": "cca", "label": "mean xM"}]},
            r"models: label\(s\) \['mean xM'\] are the names of reference rows",
        ),
    ],
)
def test_bad_reference_settings_are_named(tmp_path, changes, message):
    with pytest.raises(SuiteError, match=message):
        load_suite(write_suite(tmp_path, **changes))


def test_a_suite_run_again_skips_its_finished_reference_rows(tmp_path):
    suite = write_suite(tmp_path, seeds=[0])
    results = tmp_path / "results"
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(suite), "--results", str(results)])
    assert first.exit_code == 0, first.output
    records = RunStore(results).records()
    assert all(r.ok for r in records), [r.error for r in records]
    finished = {r.run_id: (r.label, r.finished) for r in records}
    assert sorted(label for label, _ in finished.values()) == [
        "cca",
        "mean xM",
        "raw xO",
        "ridge xO→xM",
    ]
    again = runner.invoke(app, ["run", str(suite), "--results", str(results)])
    assert again.exit_code == 0, again.output
    assert {r.run_id: (r.label, r.finished) for r in RunStore(results).records()} == finished
