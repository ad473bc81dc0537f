"""Trials are ordinary runs: the process executor runs a study's independent trials side by side
and writes the records a local run writes, and a study killed mid-trial (SIGKILL) resumes by
redoing only what it lost."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.store import RunStore

# Four trials (two independent startup trials, then two asked from them) and two final runs of
# M-xO; every fit runs a fixed number of epochs, so results do not depend on timing.
STUDY = {
    "name": "tuned-executors",
    "seeds": [0, 1],
    "references": [],
    "data": {"name": "synthetic", "options": {"n_train": 1000, "n_valid": 200, "n_test": 200}},
    "train": {"batch_size": 100, "patience": None},
    "resources": {"cpus": 1},
    "tune": {"objective": "error_pct", "trials": 4, "epochs": 15, "startup": 2, "parallel": 2},
    "models": [
        {
            "name": "mxo",
            "label": "M-xO",
            "params": {"hidden": [32], "classifier_hidden": [8]},
            "search": {"lr": {"loguniform": [1.0e-3, 3.0e-2]}, "latent_dim": {"choice": [2, 4]}},
        }
    ],
}


def outcomes(results: Path) -> dict[str, tuple]:
    """What each run computed, by run id: role, trial, values, status and metrics."""
    return {
        r.run_id: (r.role, r.tuning.trial, r.tuning.params, r.status, r.metrics)
        for r in RunStore(results).records()
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study's suite file and the outcomes of its local run, the reference."""
    folder = tmp_path_factory.mktemp("tuned-executors")
    suite = folder / "study.yaml"
    suite.write_text(yaml.safe_dump(STUDY))
    local = CliRunner().invoke(app, ["run", str(suite), "--results", str(folder / "local")])
    assert local.exit_code == 0, local.output
    reference = outcomes(folder / "local")
    assert sorted(role for role, *_ in reference.values()) == ["model"] * 2 + ["trial"] * 4
    return suite, reference


def test_the_process_executor_runs_trials_and_writes_the_records_of_a_local_run(study, tmp_path):
    suite, reference = study
    result = CliRunner().invoke(
        app, ["run", str(suite), "--results", str(tmp_path), "--executor", "process", "--jobs", "2"]
    )
    assert result.exit_code == 0, result.output
    assert outcomes(tmp_path) == reference
    # the two startup trials went together, then the two asked from them, then the final runs
    rounds = [line for line in result.output.splitlines() if "to run now" in line]
    assert [line.split(": ")[1].split(" other")[0] for line in rounds] == [
        "2 trial(s) and 0",
        "2 trial(s) and 0",
        "0 trial(s) and 2",
    ]


def test_a_study_killed_mid_trial_resumes_and_redoes_only_what_it_lost(study, tmp_path):
    suite, reference = study
    results = tmp_path / "results"
    process = subprocess.Popen(
        [sys.executable, "-m", "mmbench.cli", "run", str(suite), "--results", str(results)],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    store = RunStore(results)
    deadline = time.monotonic() + 120
    while len(store.records()) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    before = {r.run_id: r.finished for r in store.records()}
    assert 2 <= len(before) < len(reference), "the study was not stopped mid-way"

    resumed = CliRunner().invoke(app, ["run", str(suite), "--results", str(results)])
    assert resumed.exit_code == 0, resumed.output
    assert outcomes(results) == reference  # the same trials, asked from the same results
    after = {r.run_id: r.finished for r in store.records()}
    assert {run_id: after[run_id] for run_id in before} == before  # nothing redone twice
