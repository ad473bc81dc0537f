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


# --runs-per-device: the device of each worker slot, tested without a GPU


def test_cuda_spreads_over_every_visible_gpu_and_a_named_device_stays_alone():
    from mmbench.executors import ExecutorError, spread_devices

    assert spread_devices("cuda", 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert spread_devices("cuda:1", 3) == ["cuda:1"]
    assert spread_devices("cpu", 0) == ["cpu"]
    with pytest.raises(ExecutorError, match="no CUDA device"):
        spread_devices("cuda", 0)


def test_free_device_never_puts_more_than_n_runs_on_a_device():
    """Replay the executor's loop on two fake GPUs, N=2, with runs that end in a random order:
    every run gets a device, no device ever holds more than 2, and both are used."""
    import random

    from mmbench.executors import free_device

    devices, per_device = ["cuda:0", "cuda:1"], 2
    rng = random.Random(0)
    waiting, alive, placed = list(range(11)), [], {}
    most = {d: 0 for d in devices}
    while waiting or alive:
        while waiting:
            slot = free_device([d for _, d in alive], devices, per_device)
            if slot is None:
                break
            run = waiting.pop(0)
            alive.append((run, slot))
            placed[run] = slot
            for d in devices:
                most[d] = max(most[d], sum(s == d for _, s in alive))
        alive.pop(rng.randrange(len(alive)))  # some run ends
    assert sorted(placed) == list(range(11))
    assert most == {"cuda:0": 2, "cuda:1": 2}
    # the first runs alternate: a new run goes to the least busy device
    assert [placed[r] for r in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert free_device(["cuda:0", "cuda:0", "cuda:1"], devices, 2) == "cuda:1"
    assert free_device(["cuda:0", "cuda:1"] * 2, devices, 2) is None


def test_runs_per_device_runs_each_worker_on_its_device(tiny, tmp_path, monkeypatch):
    """Two devices torch runs anywhere (cpu and cpu:0) stand for two GPUs: every run is done,
    with the local executor's results, and each record names the device its worker had."""
    import mmbench.executors

    monkeypatch.setattr(mmbench.executors, "spread_devices", lambda device, count: ["cpu", "cpu:0"])
    suite, reference = tiny
    options = ("--executor", "process", "--runs-per-device", "1")
    result = run_suite(suite, tmp_path, *options)
    assert result.exit_code == 0, result.output
    assert outcomes(tmp_path) == reference
    devices = {r.run_id: r.environment["device"] for r in RunStore(tmp_path).records()}
    assert set(devices.values()) == {"cpu", "cpu:0"}


@pytest.mark.parametrize(
    "options, message",
    [
        (["--runs-per-device", "2"], "--runs-per-device needs --executor process"),
        (
            ["--executor", "process", "--jobs", "2", "--runs-per-device", "2"],
            "give one",
        ),
        (["--executor", "ray", "--runs-per-device", "2"], "resources: {gpus: 0.5}"),
    ],
)
def test_runs_per_device_options_that_conflict_are_refused(tiny, tmp_path, options, message):
    result = run_suite(tiny[0], tmp_path, *options)
    assert result.exit_code == 2 and message in result.output
    assert not list(tmp_path.glob("*/record.json"))


def test_runs_per_device_below_one_is_refused():
    from mmbench.api import RunError, check_executor_options

    with pytest.raises(RunError, match="--runs-per-device 0: must be at least 1"):
        check_executor_options("process", None, None, None, 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_runs_per_device_on_cuda_without_cuda_is_refused(tiny, tmp_path):
    options = ("--executor", "process", "--runs-per-device", "2", "--device", "cuda")
    result = run_suite(tiny[0], tmp_path, *options)
    assert result.exit_code == 2 and "sees no CUDA device" in result.output


def test_the_concurrency_benchmark_runs_the_quickstart_cmmd_untuned(monkeypatch):
    """benchmarks/concurrency.py (not a package) times ``runs`` CMMD runs of fixed epochs."""
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "concurrency.py"
    spec = importlib.util.spec_from_file_location("concurrency_benchmark", path)
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, benchmark)  # its dataclass looks itself up
    spec.loader.exec_module(benchmark)
    suite = benchmark.cmmd_suite(3, 2, ["data.name=synthetic", "data.options={n_train: 300}"])
    runs = suite.runs()
    assert [r.coordinates.seed for r in runs] == [0, 1, 2]
    assert {r.coordinates.model for r in runs} == {"cmmd"}
    assert suite.tune is None and suite.data.name == "synthetic"
    assert {(r.config.train["epochs"], r.config.train["patience"]) for r in runs} == {(2, None)}
    assert {(r.config.model.params["omega"], r.config.train["lr"]) for r in runs} == {(0.5, 1e-3)}
