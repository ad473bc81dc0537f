"""Tracking to MLflow: a run's record logged into a temporary file store and read back with
MLflow's own client (skipped where mlflow is not installed); a missing MLflow is a clear error."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from handmade_results import write_run
from test_quickstart import QUICKSTART
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.records import FitSummary
from mmbench.store import RunStore
from mmbench.tracking import MlflowTracker, TrackingError, open_tracker


def untuned_quickstart(folder: Path) -> Path:
    """The quickstart without its tuning (each run then has test metrics), as a suite file."""
    suite = yaml.safe_load(QUICKSTART.read_text())
    suite.pop("tune")
    for block in suite["models"]:
        block.pop("search", None)
    path = folder / "quickstart.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_a_record_is_logged_and_read_back_with_mlflows_client(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    rows = [
        {"epoch": 1, "loss": 3.0, "kl": 0.5, "valid_loss": 3.5},
        {"epoch": 2, "loss": 2.0, "kl": 0.4, "valid_loss": float("nan")},
    ]
    run_id = write_run(
        tmp_path / "results",
        label="CMMD",
        model="cmmd",
        seed=1,
        params={"latent_dim": 20, "encoder_hidden": [512, 512]},
        grid={"omega": 0.5},
        data_grid={"fold": 2},
        metrics={"error_pct": 12.5, "rmse": 0.25},
        metrics_by_group={"7": {"error_pct": 10.0}},
        fit=FitSummary(2, 1, 3.5, "epochs", rows),
    )
    store = RunStore(tmp_path / "results")
    tracker = MlflowTracker("my suite", str(tmp_path / "mlruns"))
    tracker.log(store.record(run_id), store.path(run_id))

    client = MlflowClient(tracking_uri=str(tmp_path / "mlruns"))
    experiment = client.get_experiment_by_name("my suite")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "CMMD seed 1 fold=2" and run.info.status == "FINISHED"
    assert run.data.tags["mmbench.run_id"] == run_id
    assert run.data.tags["mmbench.status"] == "ok"
    params = run.data.params
    assert (params["model.name"], params["model.omega"], params["model.latent_dim"]) == (
        "cmmd",
        "0.5",
        "20",
    )
    assert params["model.encoder_hidden"] == "[512, 512]" and params["data.fold"] == "2"
    assert params["seed"] == "1" and params["train.epochs"] == "1"
    metrics = run.data.metrics
    assert metrics["test/error_pct"] == 12.5 and metrics["test/rmse"] == 0.25
    assert metrics["test/group_7/error_pct"] == 10.0 and metrics["time/train_seconds"] == 1.0
    loss = client.get_metric_history(run.info.run_id, "history/loss")
    assert sorted((m.step, m.value) for m in loss) == [(1, 3.0), (2, 2.0)]
    kl = client.get_metric_history(run.info.run_id, "history/kl")
    assert sorted((m.step, m.value) for m in kl) == [(1, 0.5), (2, 0.4)]
    valid = client.get_metric_history(run.info.run_id, "history/valid_loss")
    assert [(m.step, m.value) for m in valid] == [(1, 3.5)]  # a nan is not logged
    (artifact,) = client.list_artifacts(run.info.run_id)
    assert artifact.path == "record.json"
    local = client.download_artifacts(run.info.run_id, "record.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["run_id"] == run_id


def test_run_track_mlflow_logs_each_run_of_a_smoke_suite(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    outcome = CliRunner().invoke(
        app,
        [
            "run",
            str(untuned_quickstart(tmp_path)),
            "--smoke",
            "--models",
            "cca,mxo",
            "--seeds",
            "0",
            "--results",
            str(tmp_path / "results"),
            "--track",
            "mlflow",
            "--track-uri",
            str(tmp_path / "mlruns"),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    client = MlflowClient(tracking_uri=str(tmp_path / "mlruns"))
    experiment = client.get_experiment_by_name("quickstart")
    runs = {r.data.tags["mmbench.label"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"CCA", "M-xO"}
    for record in RunStore(tmp_path / "results").records():
        run = runs[record.label]
        assert run.data.tags["mmbench.run_id"] == record.run_id
        assert run.data.metrics["test/error_pct"] == pytest.approx(record.metrics["error_pct"])
        losses = client.get_metric_history(run.info.run_id, "history/loss")
        assert [m.value for m in sorted(losses, key=lambda m: m.step)] == pytest.approx(
            [row["loss"] for row in record.fit.history]
        )
    assert run.data.tags["mmbench.stopped_by"] in ("epochs", "early_stopping")


def test_tracking_without_mlflow_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(TrackingError, match=r"pip install 'mmbench\[mlflow\]'"):
        open_tracker("mlflow", str(tmp_path / "mlruns"), "quickstart")
    outcome = CliRunner().invoke(
        app,
        [
            "run",
            str(QUICKSTART),
            "--smoke",
            "--models",
            "cca",
            "--results",
            str(tmp_path / "results"),
            "--track",
            "mlflow",
        ],
    )
    assert outcome.exit_code == 2 and "mmbench[mlflow]" in outcome.output
    assert not (tmp_path / "results").exists()  # refused before any run
    no_tracker = CliRunner().invoke(app, ["run", str(QUICKSTART), "--track-uri", "x"])
    assert no_tracker.exit_code == 2 and "--track-uri needs --track mlflow" in no_tracker.output
    other = CliRunner().invoke(app, ["run", str(QUICKSTART), "--track", "wandb"])
    assert other.exit_code == 2 and "--track 'wandb'; allowed: mlflow" in other.output


def test_a_tracking_failure_does_not_stop_the_suite(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")

    def broken(self, record, folder=None):
        raise TrackingError("could not log: the store is full")

    monkeypatch.setattr(MlflowTracker, "log", broken)
    outcome = CliRunner().invoke(
        app,
        [
            "run",
            str(untuned_quickstart(tmp_path)),
            "--smoke",
            "--models",
            "cca",
            "--seeds",
            "0",
            "--results",
            str(tmp_path / "results"),
            "--track",
            "mlflow",
            "--track-uri",
            str(tmp_path / "mlruns"),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "the store is full" in outcome.output
    assert len(RunStore(tmp_path / "results").records()) == 1
    assert np.isfinite(RunStore(tmp_path / "results").records()[0].metrics["error_pct"])


def test_run_suite_tracks_from_python_and_refuses_an_unknown_tracker_first(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    import mmbench

    with pytest.raises(TrackingError, match="--track 'wandb'; allowed: mlflow"):
        mmbench.run_suite(QUICKSTART, tmp_path / "refused", track="wandb", progress=False)
    assert not (tmp_path / "refused").exists()  # refused before any run
    (record,) = mmbench.run_suite(
        untuned_quickstart(tmp_path),
        tmp_path / "results",
        models=["cca"],
        seeds=[0],
        smoke=True,
        progress=False,
        track="mlflow",
        track_uri=str(tmp_path / "mlruns"),
    )
    client = MlflowClient(tracking_uri=str(tmp_path / "mlruns"))
    experiment = client.get_experiment_by_name("quickstart")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["mmbench.run_id"] == record.run_id
    assert run.data.metrics["test/error_pct"] == pytest.approx(record.metrics["error_pct"])
