"""Executors: the process pool and Ray write the same records as the local executor, and a
worker that dies loses only its own run, which a resumed suite then completes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.store import RunStore
from mmbench.suite import load_suite

TINY = {
    "name": "executors",
    "seeds": [0, 1],
    "data": {"name": "synthetic", "options": {"n_train": 300, "n_valid": 100, "n_test": 100}},
    "train": {"epochs": 2, "batch_size": 100, "lr": 1.0e-3},
    "resources": {"cpus": 1},
    "models": [
        {"name": "mxo", "params": {"hidden": [16], "latent_dim": 4, "classifier_hidden": [4]}},
        {
            "name": "cmmd",
            "params": {
                "latent_dim": 3,
                "encoder_hidden": [8],
                "prior_hidden": [8],
                "decoder_hidden": [8],
                "classifier_hidden": [4],
            },
        },
    ],
}


def run_suite(suite: Path, results: Path, *options: str):
    return CliRunner().invoke(app, ["run", str(suite), "--results", str(results), *options])


def outcomes(results: Path) -> dict[str, tuple]:
    """What a run computed, by run id: everything in its record but times and provenance."""
    return {
        r.run_id: (r.status, r.metrics, r.fit, r.environment["threads"])
        for r in RunStore(results).records()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny suite and the records of its local run, the reference."""
    folder = tmp_path_factory.mktemp("executors")
    suite = folder / "tiny.yaml"
    suite.write_text(yaml.safe_dump(TINY))
    threads = torch.get_num_threads()
    local = run_suite(suite, folder / "local")
    assert local.exit_code == 0, local.output
    assert torch.get_num_threads() == threads  # restored after each run
    reference = outcomes(folder / "local")
    assert set(reference) == {r.run_id for r in load_suite(suite).runs()}
    assert {status for status, *_ in reference.values()} == {"ok"}
    assert {threads for *_, threads in reference.values()} == {1}  # resources.cpus
    return suite, reference


def test_process_executor_writes_the_records_of_the_local_one(tiny, tmp_path):
    suite, reference = tiny
    result = run_suite(suite, tmp_path, "--executor", "process", "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert outcomes(tmp_path) == reference
    assert result.output.count(": ok") == len(reference)


def test_ray_executor_writes_the_records_of_the_local_one(tiny, tmp_path):
    import ray  # in the test extra: CI runs this test

    suite, reference = tiny
    result = run_suite(suite, tmp_path, "--executor", "ray", "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert outcomes(tmp_path) == reference
    assert not ray.is_initialized()  # the local cluster it started is shut down


def test_ray_executor_without_ray_says_how_to_install_it(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = run_suite(tiny[0], tmp_path, "--executor", "ray")
    assert result.exit_code == 2
    assert "pip install 'mmbench[ray]'" in result.output


@pytest.mark.parametrize(
    "options, message",
    [
        (["--jobs", "2"], "--jobs needs --executor process or ray"),
        (["--executor", "process", "--address", "auto"], "--address needs --executor ray"),
    ],
)
def test_executor_options_that_do_not_apply_are_refused(tiny, tmp_path, options, message):
    result = run_suite(tiny[0], tmp_path, *options)
    assert result.exit_code == 2 and message in result.output


# One run trains for seconds (a time budget), two others for two quick epochs
KILL_SUITE = {
    **TINY,
    "name": "kill",
    "seeds": [0],
    "references": [],  # three model runs only
    "models": [
        {
            "name": "mxo",
            "label": "long",
            "params": {"hidden": [16], "latent_dim": 4, "classifier_hidden": [4]},
            "train": {"epochs": 100000, "patience": None, "max_seconds": 8},
        },
        *(
            {
                "name": "mxo",
                "label": f"short{k}",
                "params": {"hidden": [8 * k], "latent_dim": 4, "classifier_hidden": [4]},
            }
            for k in (1, 2)
        ),
    ],
}


def spawned_workers(parent: int) -> list[int]:
    """The multiprocessing "spawn" children of process ``parent``."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            spawned = b"spawn_main" in (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if ppid == parent and spawned:
            workers.append(int(stat.parent.name))
    return workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds workers through /proc")
def test_a_killed_worker_loses_only_its_run_and_the_resumed_suite_completes_it(tmp_path):
    suite = tmp_path / "kill.yaml"
    suite.write_text(yaml.safe_dump(KILL_SUITE))
    runs = {r.label: r.run_id for r in load_suite(suite).runs()}
    results = tmp_path / "results"
    suite_process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmbench.cli",
            "run",
            str(suite),
            "--results",
            str(results),
            "--executor",
            "process",
            "--jobs",
            "2",
        ],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )
    # Workers start in suite order, two at a time: "long" and "short1" first. The third,
    # "short2", starts only once one of them has exited, and "long" is still training then, so
    # it is the one of the first two still alive.
    seen: list[int] = []
    deadline = time.monotonic() + 180  # each worker imports torch: slow on a busy machine
    while len(seen) < 3:
        assert suite_process.poll() is None and time.monotonic() < deadline
        seen += [pid for pid in spawned_workers(suite_process.pid) if pid not in seen]
        time.sleep(0.02)
    survivors = set(seen[:2]) & set(spawned_workers(suite_process.pid))
    assert len(survivors) == 1, "the long run ended before the kill"
    os.kill(survivors.pop(), signal.SIGKILL)
    output = suite_process.communicate(timeout=60)[0].decode()
    assert suite_process.returncode == 1, output
    assert "long seed 0: lost: worker killed by SIGKILL" in output
    assert "1 run(s) lost" in output
    finished = {r.run_id: r.finished for r in RunStore(results).records()}
    assert set(finished) == {runs["short1"], runs["short2"]}, output

    resumed = run_suite(suite, results)
    assert resumed.exit_code == 0, resumed.output
    assert "2 already done" in resumed.output
    records = RunStore(results).records()
    assert {r.run_id for r in records} == set(runs.values())
    assert {r.status for r in records} == {"ok"}
    assert {r.run_id: r.finished for r in records if r.run_id in finished} == finished
