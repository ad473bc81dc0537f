"""Runs are never computed twice: a suite killed mid-way (SIGKILL or Ctrl-C) and run again ends
with exactly one record per run; a failed run keeps its error and the suite goes on; every
record carries its provenance."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from baselines.mxo import MxO
from mmbench.cli import app
from mmbench.records import Record
from mmbench.store import RunStore
from mmbench.suite import load_suite

# six runs of about half a second each (a time budget, not epochs, bounds every fit)
SLOW_SUITE = {
    "name": "resume",
    "seeds": [0, 1, 2],
    "data": {"name": "synthetic", "options": {"n_train": 1000, "n_valid": 200, "n_test": 200}},
    "train": {
        "epochs": 100000,
        "batch_size": 100,
        "lr": 1.0e-3,
        "patience": None,
        "max_seconds": 0.3,
    },
    "models": [
        {
            "name": "mxo",
            "label": "small",
            "params": {"hidden": [16], "latent_dim": 4, "classifier_hidden": [4]},
        },
        {
            "name": "mxo",
            "label": "wider",
            "params": {"hidden": [32], "latent_dim": 4, "classifier_hidden": [4]},
        },
    ],
}


def records_of(results: Path) -> list[Record]:
    return RunStore(results).records()


def start_suite(suite: Path, results: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mmbench.cli", "run", str(suite), "--results", str(results)],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


@pytest.mark.parametrize("kill_signal", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_suite_resumes_with_exactly_one_record_per_run(tmp_path, kill_signal):
    suite = tmp_path / "resume.yaml"
    suite.write_text(yaml.safe_dump(SLOW_SUITE))
    expected = {r.run_id for r in load_suite(suite).runs()}
    results = tmp_path / "results"
    process = start_suite(suite, results)
    deadline = time.monotonic() + 60
    while len(records_of(results)) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.05)
    process.send_signal(kill_signal)
    process.wait(timeout=30)
    before = {r.run_id: r.finished for r in records_of(results)}
    assert 2 <= len(before) < len(expected), "the suite was not stopped mid-way"

    resumed = CliRunner().invoke(app, ["run", str(suite), "--results", str(results)])
    assert resumed.exit_code == 0, resumed.output
    assert f"{len(before)} already done" in resumed.output
    after = records_of(results)
    assert sorted(r.run_id for r in after) == sorted(expected)  # one record per run
    assert all(r.ok for r in after)
    # the runs finished before the kill were not computed again
    assert {r.run_id: r.finished for r in after if r.run_id in before} == before
    run_dirs = [p for p in (results / "runs").iterdir() if not p.name.startswith(".")]
    assert len(run_dirs) == len(expected)


class FailingModel(MxO):
    """M-xO whose training always raises: stands for a run that fails."""

    def fit(self, *args, **kwargs):
        raise RuntimeError("out of memory on purpose")


def test_failed_run_keeps_its_error_and_is_redone_only_when_asked(tmp_path, register_model):
    # registered for this test only, so that no other test sees the model
    register_model("failing", f"{__name__}:FailingModel")
    suite = dict(
        SLOW_SUITE,
        seeds=[0],
        train={"epochs": 2, "batch_size": 100, "lr": 1e-3},
        models=[
            {"name": "failing", "params": {"hidden": [8]}},
            {"name": "mxo", "params": {"hidden": [8]}},
        ],
        references=[],
    )
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(suite))
    results = tmp_path / "results"
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(path), "--results", str(results)])
    assert first.exit_code == 1, first.output  # a run failed
    records = {r.label: r for r in records_of(results)}
    assert records["failing"].status == "failed"
    assert records["failing"].error == "RuntimeError: out of memory on purpose"
    assert "fit" in records["failing"].traceback
    assert records["mxo"].ok  # the suite went on

    again = runner.invoke(app, ["run", str(path), "--results", str(results)])
    assert "2 already done" in again.output
    assert records_of(results) == sorted(records.values(), key=lambda r: r.run_id)
    retried = runner.invoke(app, ["run", str(path), "--results", str(results), "--retry-failed"])
    assert "1 already done" in retried.output
    redone = {r.label: r for r in records_of(results)}
    assert redone["failing"].started > records["failing"].finished
    assert redone["mxo"] == records["mxo"]


def test_records_keep_provenance_and_posterior_statistics(tmp_path):
    suite = {
        "name": "provenance",
        "seeds": [0],
        "data": {"name": "synthetic", "options": {"n_train": 200, "n_valid": 100, "n_test": 100}},
        "train": {"epochs": 2, "batch_size": 100, "lr": 1e-3},
        "models": [
            {
                "name": "cmmd",
                "params": {
                    "latent_dim": 3,
                    "encoder_hidden": [8],
                    "prior_hidden": [8],
                    "decoder_hidden": [8],
                    "classifier_hidden": [4],
                },
            }
        ],
        "references": [],
    }
    path = tmp_path / "provenance.yaml"
    path.write_text(yaml.safe_dump(suite))
    results = tmp_path / "results"
    assert CliRunner().invoke(app, ["run", str(path), "--results", str(results)]).exit_code == 0
    (record,) = records_of(results)
    env = record.environment
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert {"numpy", "scikit-learn", "python", "mmbench", "platform"} <= set(env)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parents[1]
    ).stdout.strip()
    assert env["git_commit"] == (head or None)
    assert record.timings.train_seconds > 0 and record.timings.eval_seconds > 0
    assert record.modalities["x2"].likelihood == "gaussian"
    assert set(record.artifacts) == {
        "posteriors.npz",
        "generated.npz",
        "representation.npz",
        "checkpoint.pt",
    }
    # what the collapse analysis reads, so that a new eps grid or delta never retrains
    with np.load(RunStore(results).path(record.run_id) / "posteriors.npz") as stored:
        assert sorted(stored.files) == [
            "decoder_logvar",
            "z_given_xM.logvar",
            "z_given_xM.mean",
            "z_given_xO.logvar",
            "z_given_xO.mean",
        ]
        assert stored["z_given_xO.mean"].shape == (100, 3)


def test_numpy_arrays_of_the_data_info_are_kept_as_an_artifact():
    from mmbench.runner import _arrays_in

    info = {
        "seed": 0,
        "pairs": {"train": {"mnist": np.arange(3), "svhn": np.arange(2)}},
        "pairs_sha256": "abc",
    }
    kept = _arrays_in(info)
    assert sorted(kept) == ["pairs.train.mnist", "pairs.train.svhn"]
    assert kept["pairs.train.svhn"].tolist() == [0, 1]
