"""Ctrl-C stops a suite under every executor with one line, exit code 130 and no traceback (also
not from a worker process), and running the same command again completes it."""

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
from mmbench.suite import load_suite

# four runs of about a second each (a time budget, not epochs, bounds every fit)
SUITE = {
    "name": "interrupt",
    "seeds": [0, 1],
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


def children(parent: int, spawned: bool = False) -> list[int]:
    """The processes whose parent is ``parent`` (only multiprocessing's spawned workers, with
    ``spawned``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != parent:
                continue
            if not spawned or b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue  # exited meanwhile
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds workers through /proc")
@pytest.mark.parametrize(
    "executor",
    [[], ["--executor", "process", "--jobs", "2"], ["--executor", "ray", "--jobs", "2"]],
    ids=["local", "process", "ray"],
)
def test_ctrl_c_prints_one_line_exits_130_and_the_same_command_resumes(tmp_path, executor):
    if "ray" in executor:
        pytest.importorskip("ray")
    suite = tmp_path / "interrupt.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    results = tmp_path / "results"
    command = ["run", str(suite), "--results", str(results), *executor]
    # a session of its own: Ctrl-C in a terminal signals the whole foreground process group
    process = subprocess.Popen(
        [sys.executable, "-m", "mmbench.cli", *command],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 120
    # interrupt as soon as the first run is claimed: in flight (local), its worker while it
    # starts up (process; an interrupted start-up printed a worker's traceback), or while Ray
    # starts its tasks
    spawns = "process" in executor
    while not (results / "claims").is_dir() or (spawns and not children(process.pid, True)):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    workers = children(process.pid, True)
    os.killpg(process.pid, signal.SIGINT)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 130, output
    assert output.count("interrupted; run the same command to resume") == 1, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # ended with it

    # resumed in this process (workers are seconds of start-up each; the executor does not
    # change what a resume finds: records and claims on disk)
    resumed = CliRunner().invoke(app, command[:4])
    assert resumed.exit_code == 0, resumed.output
    records = RunStore(results).records()
    assert sorted(r.run_id for r in records) == sorted(r.run_id for r in load_suite(suite).runs())
    assert all(r.ok for r in records)


WORKER_MASK = """
import multiprocessing, signal
from mmbench.executors import sigint_deferred

def report(sender):
    sender.send(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)  # a Queue would start the resource tracker
    with sigint_deferred():
        worker = context.Process(target=report, args=(sender,))
        worker.start()
    print("blocked" if receiver.recv() else "live")
    worker.join()
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_a_worker_started_in_a_fresh_process_starts_with_ctrl_c_blocked(tmp_path):
    """The first worker of a process is started with SIGINT blocked, so a Ctrl-C while it
    imports cannot interrupt it (starting multiprocessing's resource tracker, which the first
    start does, unblocks SIGINT in the starting thread)."""
    script = tmp_path / "mask.py"
    script.write_text(WORKER_MASK)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "blocked", done.stdout + done.stderr
