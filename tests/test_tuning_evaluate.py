"""A trial's objective comes from the validation split only: the validation metrics equal what
scikit-learn and numpy compute directly on that split, a trial never looks at the test split,
and its record keeps its validation metrics and nothing it does not need."""

from dataclasses import replace

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from baselines.cca import CCA
from baselines.mxo import MxO
from mmbench.data import load_dataset
from mmbench.evaluate import evaluate
from mmbench.records import Coordinates, DataChoice, DownstreamSettings, ModelChoice, Run, RunConfig
from mmbench.runner import execute_run
from mmbench.trainer import TrainConfig


@pytest.fixture(scope="module")
def splits():
    return load_dataset("synthetic", n_train=400, n_valid=150, n_test=150, seed=3)


def poisoned(splits):
    """The same splits with a test split of NaNs: anything computed from it is NaN."""
    test = splits.test
    nan_test = replace(test, data={m: np.full_like(a, np.nan) for m, a in test.data.items()})
    return replace(splits, test=nan_test)


def test_validation_metrics_of_a_downstream_model_match_sklearn_on_the_validation_split(splits):
    model = CCA(n_components=3)
    model.fit(splits.train, splits.valid)
    result = evaluate(model, splits, DownstreamSettings(grid={"C": [0.01, 1.0]}), seed=0)
    # independently: standardise with training statistics, keep the C best on validation
    z_train, z_valid = model.represent(splits.train.xO), model.represent(splits.valid.xO)
    scaler = StandardScaler().fit(z_train)
    errors = []
    for c in (0.01, 1.0):
        svm = LinearSVC(C=c, dual="auto", max_iter=5000, random_state=0)
        svm.fit(scaler.transform(z_train), splits.train.labels)
        errors.append(100 * np.mean(svm.predict(scaler.transform(z_valid)) != splits.valid.labels))
    assert result.metrics["valid_error_pct"] == pytest.approx(min(errors))
    generated = model.generate(splits.valid.xO)["x2"]
    assert result.metrics["valid_rmse"] == pytest.approx(
        np.sqrt(np.mean((splits.valid.data["x2"].astype(np.float64) - generated) ** 2))
    )
    assert {"error_pct", "rmse"} <= set(result.metrics)  # the test metrics too


def test_a_trial_never_looks_at_the_test_split(splits):
    model = MxO(hidden=[16], latent_dim=4, classifier_hidden=[4])
    model.fit(splits.train, splits.valid, trainer=TrainConfig(epochs=3, batch_size=100))
    clean = evaluate(model, splits, test=False)
    trial = evaluate(model, poisoned(splits), test=False)
    assert (
        trial.metrics
        == clean.metrics
        == {
            "valid_error_pct": pytest.approx(
                100 * np.mean(model.predict_proba(splits.valid.xO).argmax(1) != splits.valid.labels)
            )
        }
    )
    assert trial.representation is None and trial.posteriors is None
    assert trial.generations is None and trial.metrics_by_group == {}
    # the downstream protocol too: no test features reach the classifier
    cca = CCA(n_components=3)
    cca.fit(splits.train, splits.valid)
    assert (
        evaluate(cca, poisoned(splits), test=False).metrics
        == evaluate(cca, splits, test=False).metrics
    )


def test_a_trial_record_keeps_its_validation_metrics_only(tmp_path):
    config = RunConfig(
        DataChoice("synthetic", {"n_train": 200, "n_valid": 100, "n_test": 100}),
        ModelChoice("mxo", {"hidden": [8], "latent_dim": 2, "classifier_hidden": [4]}),
        {"epochs": 2, "batch_size": 100, "lr": 1e-3, "seed": 0},
        DownstreamSettings(),
        seed=0,
    )
    trial = execute_run(Run(config, "M-xO", Coordinates({}, "mxo", {}, 0), role="trial"), tmp_path)
    model = execute_run(Run(config, "M-xO", Coordinates({}, "mxo", {}, 0)), tmp_path)
    assert trial.ok and set(trial.metrics) == {"valid_error_pct"}
    assert trial.artifacts == ()  # no checkpoint, no test representation
    assert set(model.metrics) == {"error_pct", "valid_error_pct"}
    assert model.metrics["valid_error_pct"] == trial.metrics["valid_error_pct"]  # one fit
    assert "checkpoint.pt" in model.artifacts
