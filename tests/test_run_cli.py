"""``mmbench run`` as a researcher meets it, through real subprocess calls: the preflight (missing
data, no CUDA: exit 2, nothing recorded), failed runs (each distinct reason once, exit 1), plain
log lines when stdout is a pipe, overrides, --threads, --version, a user's file found from the
suite's folder whose content is part of the run ids."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import mmbench
from mmbench.store import RunStore
from mmbench.suite import load_suite

REPO = Path(__file__).resolve().parents[1]
TINY_MXO = {"hidden": [8], "latent_dim": 4, "classifier_hidden": [4]}
TINY = {
    "name": "tiny",
    "seeds": [0],
    "data": {"name": "synthetic", "options": {"n_train": 200, "n_valid": 100, "n_test": 100}},
    "train": {"epochs": 2, "batch_size": 50, "lr": 1.0e-3},
    "resources": {"cpus": 2},
    "models": [{"name": "mxo", "params": TINY_MXO}],
    "references": [],
}
STAMP = r"\d\d:\d\d:\d\d"


def mmbench_cli(*args, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python -m mmbench.cli ARGS`` with stdout and stderr to a pipe (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "mmbench.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )


def write_suite(folder: Path, content: dict, name: str = "suite.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(content))
    return path


def test_version_and_help_start_without_the_training_stack():
    version = mmbench_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"mmbench {mmbench.__version__}"
    from importlib.metadata import version as installed

    assert installed("mmbench") == mmbench.__version__  # one version, read from the package
    helped = mmbench_cli("run", "--help")
    assert helped.returncode == 0
    for status in (
        "0 every selected run is done",
        "1 some runs failed",
        "2 bad input",
        "130 interrupted",
    ):
        assert status in helped.stdout
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mmbench, mmbench.cli; print(sorted({'torch', "
            "'pandas', 'numpy', 'sklearn', 'matplotlib'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_missing_data_is_one_full_error_exit_2_and_nothing_recorded(tmp_path):
    suite = write_suite(
        tmp_path,
        {
            **TINY,
            "seeds": [0, 1],
            "data": {"name": "xrmb", "options": {"protocol": "folds"}, "grid": {"fold": [1, 2]}},
        },
    )
    empty, results = tmp_path / "no-data", tmp_path / "results"
    empty.mkdir()
    result = mmbench_cli("run", suite, "--smoke", "--results", results, "--data-dir", empty)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stdout
    message = lines[0]
    assert f"XRMBf2KALDI_window7_single1.mat not found in {empty / 'xrmb'}" in message
    assert "mmbench data fetch xrmb" in message and "--data-dir" in message  # how, and where
    assert "needed by 2 of the 4 pending run(s)" in message
    assert not results.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_preflight_error(tmp_path):
    suite = write_suite(tmp_path, TINY)
    result = mmbench_cli("run", suite, "--results", tmp_path / "results", "--device", "cuda")
    assert result.returncode == 2
    assert "--device cuda: torch" in result.stdout and "sees no CUDA device" in result.stdout
    assert "--device cpu" in result.stdout
    assert not (tmp_path / "results").exists()


def test_a_run_logs_plain_lines_takes_overrides_and_threads_and_exits_0(tmp_path):
    suite = write_suite(tmp_path, TINY)
    results = tmp_path / "results"
    result = mmbench_cli(
        "run",
        suite,
        "train.epochs=3",
        "models.mxo.params.latent_dim=3",
        "--threads",
        "1",
        "--results",
        results,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(rf"^{STAMP} suite  tiny: 1 runs, 0 already done, 1 to run", out, re.M)
    assert re.search(rf"^{STAMP} start  mxo seed 0 \([0-9a-f]{{12}}\)$", out, re.M), out
    assert re.search(rf"^{STAMP} end    mxo seed 0: ok in [0-9.]+ s, 3/3 epochs$", out, re.M)
    assert re.search(rf"^{STAMP} suite  tiny: 1 done, 0 pending; finished$", out, re.M)
    (record,) = RunStore(results).records()
    assert record.config.epochs == 3 and record.config.model.params["latent_dim"] == 3
    assert record.environment["threads"] == 1  # --threads wins over resources.cpus: 2
    # the overrides make the runs of the file edited the same way
    edited = {
        **TINY,
        "train": {**TINY["train"], "epochs": 3},
        "models": [{"name": "mxo", "params": {**TINY_MXO, "latent_dim": 3}}],
    }
    (run,) = load_suite(write_suite(tmp_path / "edited", edited)).runs()
    assert record.run_id == run.run_id
    assert record.run_id not in {r.run_id for r in load_suite(suite).runs()}
    written = json.loads((results / "suite.json").read_text())
    assert written["train"]["epochs"] == 3 and written["suite_file"] == str(suite)
    assert written["overrides"] == ["train.epochs=3", "models.mxo.params.latent_dim=3"]


def test_a_bad_override_names_its_key_and_exits_2(tmp_path):
    """(More cases of bad overrides: tests/test_api.py, in process.)"""
    suite = write_suite(tmp_path, TINY)
    result = mmbench_cli("run", suite, "train.epochz=3", "--dry-run")
    assert result.returncode == 2
    assert f"{suite}: train.epochz: unknown field" in result.stdout, result.stdout
    assert "(set by the override train.epochz=3)" in result.stdout


def test_failed_runs_print_each_reason_once_with_the_hint_and_exit_1(tmp_path):
    suite = write_suite(
        tmp_path,
        {
            **TINY,
            "seeds": [0, 1],
            "models": [
                {"name": "cca", "label": "CCA-30", "params": {"n_components": 30}},
                {"name": "cca", "label": "CCA-50", "params": {"n_components": 50}},
                {"name": "mxo", "params": TINY_MXO},
            ],
        },
    )
    results = tmp_path / "results"
    first = mmbench_cli("run", suite, "--results", results)
    assert first.returncode == 1, first.stdout + first.stderr
    reasons = [f"ValueError: n_components={k} must lie in 1..min(d1=20, d2=15)" for k in (30, 50)]
    for reason, label in zip(reasons, ("CCA-30", "CCA-50")):
        assert first.stdout.count(f"2 run(s) failed: {reason}\n") == 1
        assert f"  runs: {label} seed 0, {label} seed 1\n" in first.stdout
        # the log gives the reason in full once (then refers to that run), the summary once
        assert first.stdout.count(reason) == 2
        assert f"{label} seed 1: failed in " in first.stdout
        assert re.search(
            rf"{label} seed 1: failed in [0-9.]+ s, as {label} seed 0$", first.stdout, re.M
        )
    assert "4 of 6 run(s) failed or diverged" in first.stdout and "--retry-failed" in first.stdout
    assert {r.status for r in RunStore(results).records()} == {"ok", "failed"}

    again = mmbench_cli("run", suite, "--results", results)  # failed earlier: still not done
    assert again.returncode == 1
    assert "6 already done" in again.stdout and "4 of 6 run(s) failed" in again.stdout


def test_workers_print_epoch_lines_for_logs(tmp_path):
    """Under the process executor the epoch lines come from the worker (every 0 s here)."""
    suite = write_suite(tmp_path, TINY)
    script = (
        "import mmbench.api as api; from mmbench.progress import LogLines; "
        f"api.run_suite({str(suite)!r}, {str(tmp_path / 'out')!r}, executor='process', "
        "jobs=1, progress=LogLines(every=0.0))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert result.returncode == 0, result.stderr
    for epoch in (1, 2):
        assert re.search(
            rf"^{STAMP} epoch  mxo seed 0: {epoch}/2, loss [-0-9.e]+, valid loss",
            result.stdout,
            re.M,
        ), result.stdout


def write_user_file(path: Path, shift: float) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=120)
    np.savez(
        path,
        view_a=rng.normal(size=(120, 3)) + labels[:, None] + shift,
        view_b=rng.normal(size=(120, 2)),
        labels=labels,
    )


def test_own_data_is_found_beside_the_suite_and_its_content_is_in_the_run_ids(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    write_user_file(project / "mine.npz", shift=0.0)
    suite = write_suite(
        project,
        {**TINY, "data": {"name": "npz", "options": {"path": "mine.npz", "observed": ["a"]}}},
    )
    result = mmbench_cli("run", suite, "--results", tmp_path / "results", cwd=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = RunStore(tmp_path / "results").records()
    assert record.data_info["path"] == str(project / "mine.npz")
    before = record.config.data.digest
    assert before == "sha256:" + hashlib.sha256((project / "mine.npz").read_bytes()).hexdigest()

    write_user_file(project / "mine.npz", shift=1.0)  # edited in place: same path
    (run,) = load_suite(suite).runs()
    assert run.config.data.digest not in (None, before)
    assert run.run_id != record.run_id
    assert RunStore(tmp_path / "results").pending([run]) == [run]


def test_data_sets_without_a_user_file_keep_their_run_ids():
    (run,) = load_suite(
        REPO / "suites" / "quickstart.yaml",
        ["seeds=[0]", "models=[{name: mxo}]", "tune=null", "references=[]"],
    ).runs()
    assert run.config.data.digest is None
    assert set(run.config.to_json()["data"]) == {"name", "options"}  # hashed as before


def test_data_list_shows_embedded_sets_and_user_formats():
    result = mmbench_cli("data", "list")
    assert result.returncode == 0
    for name in (
        "mnist_embedded",
        "digits_embedded",
        "synthetic",
        "npz",
        "parquet",
        "view_<name>",
        "<view>__<i>",
    ):
        assert name in result.stdout
