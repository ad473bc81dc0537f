"""A damaged results folder never breaks a command: a record that cannot be read is reported (file
and reason) and left out by the reports, and run again by ``mmbench run``; a record replaced
while it is read is still read; temporary files of killed writers are removed by the next run."""

import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import yaml
from handmade_results import write_run
from typer.testing import CliRunner

import mmbench.store
from mmbench.cli import app
from mmbench.store import RunStore
from mmbench.suite import load_suite


def flat(text: str) -> str:
    """Console output as one line (rich wraps long lines at spaces)."""
    return " ".join(text.split())


def truncated(text: str) -> str:
    return text[: len(text) // 2]


def without_status(text: str) -> str:
    return json.dumps({k: v for k, v in json.loads(text).items() if k != "status"})


def with_field(name, value):
    def change(text: str) -> str:
        return json.dumps({**json.loads(text), name: value})

    return change


DAMAGES = {
    "corrupt": (
        lambda text: "{not json",
        "not valid JSON: damaged or truncated (line 1, column "
        "2: Expecting property name enclosed in double quotes)",
    ),
    "truncated": (truncated, "not valid JSON: damaged or truncated"),
    "empty": (
        lambda text: "",
        "not valid JSON: damaged or truncated (line 1, column 1: Expecting value)",
    ),
    "not an object": (lambda text: "[1, 2]", "a record is a JSON object, not list"),
    "missing key": (without_status, "the field 'status' is missing"),
    "wrong type": (with_field("status", 5), "the field 'status' is 5, not a string"),
    "unknown status": (
        with_field("status", "done"),
        "its status 'done' is none of ok, failed, diverged",
    ),
    "bad metric": (
        with_field("metrics", {"error_pct": "abc"}),
        "the metric 'error_pct' is 'abc', not a number",
    ),
    "bad coordinates": (
        with_field("coordinates", {"data": {}, "model": "cmmd", "grid": {}, "seed": "1"}),
        "the field 'coordinates.seed' is '1', not an integer",
    ),
    "another run's": (
        with_field("run_id", "0123456789ab"),
        "its run_id '0123456789ab' is not its folder's name",
    ),
    "not utf-8": (lambda text: "\udcff", "UnicodeDecodeError"),
}


def damage(path, how: str) -> None:
    change, _ = DAMAGES[how]
    text = change(path.read_text())
    if text == "\udcff":
        path.write_bytes(b"\xff\xfe{")
    else:
        path.write_text(text)


@pytest.fixture
def results(tmp_path):
    """CMMD at omega 0.5 on seeds 0 and 1 (error 10 and 20), with posterior statistics; the
    record of seed 1 is the one damaged. Returns the folder and that record's file."""
    folder = tmp_path / "results"
    zeros = np.zeros((10, 2), dtype=np.float32)
    posteriors = {"z_given_xO.mean": zeros, "z_given_xO.logvar": zeros}
    ids = [
        write_run(
            folder,
            label="CMMD",
            model="cmmd",
            seed=seed,
            grid={"omega": 0.5},
            metrics={"error_pct": 10.0 * (seed + 1), "rmse": 0.5},
            arrays={"posteriors": posteriors},
        )
        for seed in (0, 1)
    ]
    return folder, folder / "runs" / ids[1] / "record.json"


@pytest.mark.parametrize("how", list(DAMAGES))
def test_the_store_reports_a_damaged_record_with_its_reason_and_leaves_it_out(results, how, caplog):
    folder, record_file = results
    damage(record_file, how)
    _, reason = DAMAGES[how]
    store = RunStore(folder)
    assert [r.coordinates.seed for r in store.records()] == [0]
    assert store.record(record_file.parent.name) is None  # not done
    assert reason in store.unreadable[record_file]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "mmbench.store"]
    assert warning.startswith(f"{record_file} cannot be read: {reason}")


@pytest.mark.parametrize("how", ["truncated", "bad metric"])
def test_reports_name_the_damaged_record_and_leave_it_out(results, how):
    folder, record_file = results
    damage(record_file, how)
    warning = f"warning: {record_file} cannot be read: {DAMAGES[how][1]}"
    runner = CliRunner()
    table = runner.invoke(app, ["table", str(folder), "--no-paper", "--metric", "error_pct"])
    assert table.exit_code == 0, table.output
    assert flat(table.output).count(warning) == 1  # reported once: the records are read once
    assert "its run counts as not done (reports leave it out, `mmbench run` runs it again)" in flat(
        table.output
    )
    assert "| CMMD | 10.00 |" in table.output and "15.00" not in table.output  # seed 0 alone
    zeros = np.zeros((10, 2), dtype=np.float32)
    for omega in (0.2, 0.8):  # the omega figure draws 3 or more values of omega
        write_run(
            folder,
            label="CMMD",
            model="cmmd",
            seed=0,
            grid={"omega": omega},
            metrics={"error_pct": 12.0, "rmse": 0.5},
            arrays={"posteriors": {"z_given_xO.mean": zeros, "z_given_xO.logvar": zeros}},
        )
    for command in (["collapse", str(folder)], ["figure", "omega", str(folder)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        assert flat(result.output).count(warning) == 1  # reported once


def test_a_damaged_artifact_is_an_error_naming_its_file(results):
    folder, record_file = results
    (record_file.parent / "posteriors.npz").write_bytes(b"PK\x03\x04 not a zip")
    result = CliRunner().invoke(app, ["collapse", str(folder)])
    assert result.exit_code == 2
    expected = f"error: {record_file.parent / 'posteriors.npz'} cannot be read (BadZipFile"
    assert "".join(expected.split()) in "".join(result.output.split())  # wrapped anywhere


TINY = {
    "name": "damaged",
    "seeds": [0, 1],
    "data": {"name": "synthetic", "options": {"n_train": 200, "n_valid": 100, "n_test": 100}},
    "train": {"epochs": 2, "batch_size": 100, "lr": 1.0e-3},
    "models": [
        {"name": "mxo", "params": {"hidden": [8], "latent_dim": 2, "classifier_hidden": [4]}}
    ],
    "references": [],
}


@pytest.fixture
def tiny(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(TINY))
    return suite, tmp_path / "out"


def run(suite, results, *options):
    return CliRunner().invoke(app, ["run", str(suite), "--results", str(results), *options])


@pytest.mark.parametrize("how", ["truncated", "missing key"])
def test_run_redoes_a_run_whose_record_cannot_be_read(tiny, how):
    suite, results = tiny
    assert run(suite, results).exit_code == 0
    store = RunStore(results)
    before = {r.coordinates.seed: r for r in store.records()}
    record_file = store.path(before[1].run_id) / "record.json"
    damage(record_file, how)
    warning = f"warning: {record_file} cannot be read: {DAMAGES[how][1]}"

    plan = run(suite, results, "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert warning in flat(plan.output) and "2 runs: 1 ok, 1 pending" in plan.output

    again = run(suite, results)
    assert again.exit_code == 0, again.output
    assert warning in flat(again.output) and "1 already done" in again.output
    after = {r.coordinates.seed: r for r in RunStore(results).records()}
    assert after[0] == before[0]  # untouched
    assert after[1].ok and after[1].started > before[1].finished  # run again
    assert replace(after[1], started=0, finished=0, timings=None, environment={}) == replace(
        before[1], started=0, finished=0, timings=None, environment={}
    )
    # and the next run finds nothing to report
    last = run(suite, results)
    assert "warning" not in last.output and "2 already done" in last.output


def test_a_record_replaced_while_it_is_read_is_read(tmp_path):
    run_id = write_run(tmp_path, label="CMMD", model="cmmd", seed=0, metrics={"error_pct": 1.0})
    store = RunStore(tmp_path)
    (record,) = store.records()
    stop = threading.Event()

    def replace_again_and_again():
        while not stop.is_set():
            store.write(record, {})

    writer = threading.Thread(target=replace_again_and_again)
    writer.start()
    try:
        for _ in range(300):
            found = RunStore(tmp_path).records()  # never raises, never a torn record
            assert found in ([record], [])
            assert RunStore(tmp_path).record(run_id) in (record, None)
    finally:
        stop.set()
        writer.join()
    assert not RunStore(tmp_path).unreadable


def test_a_record_that_vanishes_between_listing_and_reading_is_looked_for_again(
    tmp_path, monkeypatch
):
    write_run(tmp_path, label="CMMD", model="cmmd", seed=0, metrics={"error_pct": 1.0})
    read = mmbench.store.read_record
    calls = []

    def vanished_at_first(path):
        calls.append(path)
        if len(calls) == 1:  # its writer is replacing it: between two renames
            raise FileNotFoundError(path)
        return read(path)

    monkeypatch.setattr(mmbench.store, "read_record", vanished_at_first)
    (record,) = RunStore(tmp_path).records()
    assert record.metrics == {"error_pct": 1.0} and len(calls) == 2


def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_next_run_removes_the_litter_of_dead_writers_only(tiny):
    suite, results = tiny
    host, dead, me = socket.gethostname(), dead_pid(), os.getpid()
    run_id = load_suite(suite).runs()[0].run_id
    runs, claims = results / "runs", results / "claims"
    runs.mkdir(parents=True)
    claims.mkdir()
    two_hours_ago = time.time() - 7200
    litter = {  # name -> (is it old, is it removed)
        runs / f".{run_id}@{host}.{dead}.tmp": (False, True),
        runs / f".{run_id}@{host}.{dead}.old": (False, True),
        results / f".results.csv@{host}.{dead}.tmp": (False, True),
        claims / f".{run_id}.claim@{host}.{dead}.tmp": (False, True),
        runs / f".{run_id}.{dead}.tmp": (True, True),  # an earlier version's: host unknown
        runs / f".{run_id}.{dead + 1}.tmp": (False, False),
        runs / f".{run_id}@elsewhere.{dead}.tmp": (False, False),  # another host's, recent
        runs / f".{run_id}@elsewhere.{dead + 2}.tmp": (True, True),
        runs / f".0123456789ab@{host}.{me}.tmp": (False, False),  # its writer runs: this test
        results / ".keep": (True, False),  # not a temporary
    }
    for path, (old, _) in litter.items():
        if path.suffix == ".tmp" and path.parent == runs:
            path.mkdir()
            (path / "record.json").write_text("{")
        else:
            path.write_text("")
        if old:
            __import__("os").utime(path, (two_hours_ago, two_hours_ago))
    result = run(suite, results)
    assert result.exit_code == 0, result.output
    assert {path.name for path, (_, removed) in litter.items() if path.exists()} == {
        path.name for path, (_, removed) in litter.items() if not removed
    }
    assert len(RunStore(results).records()) == 2

    # a run of the finished suite (nothing left to train) cleans up too
    late = runs / f".{run_id}@{host}.{dead_pid()}.tmp"
    late.mkdir()
    again = run(suite, results)
    assert again.exit_code == 0 and "2 already done" in again.output, again.output
    assert not late.exists()
