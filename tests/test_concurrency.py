"""Several ``mmbench run`` on one results folder share its runs: each run is trained exactly once,
a run another process holds is skipped and reported (not failed), a claim whose owner died is
taken over, and process-executor workers die with their parent."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mmbench.claims import STALE_SECONDS, Claims, Owner, read_claim
from mmbench.cli import app
from mmbench.store import RunStore
from mmbench.suite import load_suite

REPO = Path(__file__).parents[1]

# six model runs of about a second each (a time budget, not epochs, bounds every fit), and
# the nine reference rows (closed form), claimed like any run
SUITE = {
    "name": "shared",
    "seeds": [0, 1, 2],
    "data": {"name": "synthetic", "options": {"n_train": 500, "n_valid": 100, "n_test": 100}},
    "train": {
        "epochs": 100000,
        "batch_size": 100,
        "lr": 1.0e-3,
        "patience": None,
        "max_seconds": 1.0,
    },
    "resources": {"cpus": 1},
    "models": [
        {
            "name": "mxo",
            "label": label,
            "params": {"hidden": [width], "latent_dim": 4, "classifier_hidden": [4]},
        }
        for label, width in (("small", 8), ("wide", 16))
    ],
}

# `mmbench run` that also appends the id of every run it trains to the file argv[1] (an account
# of the trainings that does not rely on the claims it checks). To make two of them meet for
# sure: it creates the file argv[3] once it has planned its runs, and waits for the file argv[2]
# to exist before its first training ("-": neither).
COUNTING_RUN = """
import os, sys, time
import mmbench.executors as executors
from mmbench.store import RunStore
log, wait_for, planned = sys.argv[1:4]
del sys.argv[1:4]
train, plan = executors.execute_run, RunStore.pending
def counted(run, *args, **kwargs):
    while wait_for != "-" and not os.path.exists(wait_for):
        time.sleep(0.01)
    with open(log, "a") as out:
        out.write(run.run_id + "\\n")
    return train(run, *args, **kwargs)
def announced(*args, **kwargs):
    todo = plan(*args, **kwargs)
    if planned != "-":
        open(planned, "w").close()
    return todo
executors.execute_run, RunStore.pending = counted, announced
from mmbench.cli import app
app(prog_name="mmbench")
"""


def start_run(
    log: Path, suite: Path, results: Path, *options: str, wait_for: str = "-", planned: str = "-"
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            COUNTING_RUN,
            str(log),
            wait_for,
            planned,
            "run",
            str(suite),
            "--results",
            str(results),
            *options,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )


def trainings(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    return path


def test_two_runs_on_one_folder_train_each_run_exactly_once(tmp_path, suite):
    results, log = tmp_path / "results", tmp_path / "trainings.log"
    expected = sorted(r.run_id for r in load_suite(suite).runs())
    planned = tmp_path / "second-planned"
    # the first holds the claim of its first run until the second has planned all 15 runs
    first = start_run(log, suite, results, wait_for=str(planned))
    second = start_run(log, suite, results, planned=str(planned))
    outputs = [p.communicate(timeout=300)[0].decode() for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert sorted(trainings(log)) == expected  # each run trained exactly once
    records = RunStore(results).records()
    assert sorted(r.run_id for r in records) == expected and all(r.ok for r in records)
    # the second skipped (did not fail) the run that the first held
    assert f"skipped: process {first.pid} on {socket.gethostname()} is running it" in outputs[1]
    assert "15 runs, 0 already done" in outputs[1]
    assert "lost" not in outputs[1] and "failed:" not in outputs[1]
    assert not list((results / "claims").iterdir())  # every claim released


def test_two_array_tasks_of_one_cell_train_it_once(tmp_path, suite):
    """SLURM array tasks (--cell) started twice for one index, on one shared folder."""
    results, log = tmp_path / "results", tmp_path / "trainings.log"
    tasks = [start_run(log, suite, results, "--cell", "3") for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in tasks]
    assert [p.returncode for p in tasks] == [0, 0], outputs
    assert trainings(log) == [load_suite(suite).runs()[3].run_id]
    assert len(RunStore(results).records()) == 1


def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def write_claim(results: Path, run_id: str, host: str, pid: int, age: float = 0.0) -> Path:
    path = results / "claims" / f"{run_id}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "token": "t", "claimed": 0}))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


@pytest.mark.parametrize(
    "host, age, taken_over",
    [
        ("this host", 0.0, True),  # its process has ended: pid free here
        ("node17.cluster", 0.0, False),  # another host's, heartbeat fresh
        ("node17.cluster", STALE_SECONDS + 60, True),  # another host's, heartbeat stopped
    ],
)
def test_a_claim_is_taken_over_once_its_owner_is_gone(tmp_path, suite, host, age, taken_over):
    results = tmp_path / "results"
    run = load_suite(suite).runs()[0]
    host = socket.gethostname() if host == "this host" else host
    pid = dead_pid()
    claim = write_claim(results, run.run_id, host, pid, age)
    result = CliRunner().invoke(app, ["run", str(suite), "--results", str(results), "--cell", "0"])
    assert result.exit_code == 0, result.output  # skipped is not failed
    record = RunStore(results).record(run.run_id)
    if taken_over:
        assert record is not None and record.ok and not claim.exists()
    else:
        assert record is None and read_claim(claim)[0] == Owner(host, pid)
        assert f"skipped: process {pid} on {host} is running it" in " ".join(result.output.split())


def test_a_claim_is_exclusive_and_released(tmp_path):
    with Claims(tmp_path) as mine:
        assert mine.take("abc") is None
        assert mine.take("abc") == Owner.me()  # held: by this very process
        owner, token, age = read_claim(tmp_path / "claims" / "abc.claim")
        assert owner == Owner.me() and len(token) == 32 and age < 60
        mine.release("abc")
        assert mine.take("abc") is None
    assert not (tmp_path / "claims" / "abc.claim").exists()  # released on closing
    assert list((tmp_path / "claims").iterdir()) == []  # no temporary left


# a process that waits for the file argv[2], then claims run "r1" in the results folder argv[1],
# prints whether it won and stays alive until the file argv[3] exists (a winner that exited early
# would leave a stale claim that a slower racer rightly takes over)
TAKE = """
import os, sys, time
from mmbench.claims import Claims
root, go, done = sys.argv[1:4]
while not os.path.exists(go):
    time.sleep(0.001)
owner = Claims(root).take("r1")
print("won" if owner is None else f"lost to {owner.pid}", flush=True)
while not os.path.exists(done):
    time.sleep(0.01)
"""


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale claim of a dead process"])
def test_of_processes_racing_for_one_claim_exactly_one_wins(tmp_path, stale):
    if stale:
        write_claim(tmp_path, "r1", socket.gethostname(), dead_pid())
    go, done = tmp_path / "go", tmp_path / "done"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", TAKE, str(tmp_path), str(go), str(done)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    time.sleep(1.5)  # all started and waiting
    go.touch()
    said = [p.stdout.readline().strip() for p in racers]
    done.touch()
    for p in racers:
        p.communicate(timeout=60)
    assert said.count("won") == 1, said
    winner = racers[said.index("won")].pid
    assert all(s in ("won", f"lost to {winner}") for s in said), said
    assert read_claim(tmp_path / "claims" / "r1.claim")[0].pid == winner


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


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds workers through /proc")
def test_process_workers_exit_when_their_parent_is_killed(tmp_path, suite):
    long = {**SUITE, "train": {**SUITE["train"], "max_seconds": 120}}
    suite.write_text(yaml.safe_dump(long))
    results = tmp_path / "results"
    parent = subprocess.Popen(
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
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while len(workers) < 2:
        assert parent.poll() is None and time.monotonic() < deadline
        workers = spawned_workers(parent.pid)
        time.sleep(0.05)
    time.sleep(2.0)  # let them get into training (not only start-up)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60  # their runs would train for 120 s
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "orphaned workers still run"
        time.sleep(0.1)
    # the claims the killed parent held are taken over: its runs are not lost for good
    held = sorted((results / "claims").glob("*.claim"))
    assert held and all(read_claim(path)[0].pid == parent.pid for path in held)
    with Claims(results) as claims:
        assert all(claims.take(path.stem) is None for path in held)
