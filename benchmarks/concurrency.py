"""Runs per hour: N concurrent 1-thread runs against one N-thread run at a time (issue 16,
target 4).

The same small suite -- the quickstart's CMMD at fixed hyper-parameters (omega 0.5, lr 1e-3), a
fixed epoch count and no early stopping, ``--runs`` replicate seeds -- is run to completion by
two arms, each through the real process executor (one spawned worker per run in both arms, so
start-up costs are alike):

- ``concurrent``: ``--runs-per-device N --threads 1`` (N runs at once, 1 torch thread each);
- ``threaded``: ``--jobs 1 --threads N`` (one run at a time, N torch threads).

A measurement is the wall time of one :func:`mmbench.api.execute_runs` into a fresh results
folder (data check, spawns, training, evaluation, records); runs per hour = runs x 3600 / wall
time. Repetitions are interleaved (the arms alternate, their order swapped every repetition) and
summarised by the median and the range. Every run must write an ok record, else the script stops.
``KEY=VALUE`` arguments change the suite as ``mmbench run``'s do (e.g. smaller data for a plumbing
check).

Output: a table, and ``<out>/concurrency-cpu-n<N>-<date>.csv`` with one row per measurement.

    python benchmarks/concurrency.py --n 2 --runs 6 --epochs 3 --repeats 3
    python benchmarks/concurrency.py --n 2 --runs 2 --epochs 1 --repeats 1 --out /tmp/c \\
        data.name=synthetic 'data.options={n_train: 300, n_valid: 100, n_test: 100}'  # plumbing
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mmbench import api
from mmbench.suite import Suite

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("concurrent", "threaded")


@dataclass(frozen=True)
class Measurement:
    """One arm run once: ``runs`` runs, ``runs_at_once`` at a time with ``threads`` each."""

    repeat: int
    arm: str
    runs: int
    epochs: int
    runs_at_once: int
    threads: int
    wall_s: float
    runs_per_hour: float


def cmmd_suite(runs: int, epochs: int, overrides: list[str]) -> Suite:
    """The quickstart's CMMD block, untuned, on ``runs`` seeds for exactly ``epochs`` epochs."""
    quickstart = api.load_suite(ROOT / "suites" / "quickstart.yaml")
    cmmd = next(m for m in quickstart.models if m.label == "CMMD")
    content = quickstart.model_dump(mode="json", exclude_none=True)
    content.pop("tune", None)
    content["references"] = []  # model runs only
    content.update(name="concurrency", seeds=list(range(runs)))
    content["train"] = {**content["train"], "epochs": epochs, "patience": None}
    model = cmmd.model_dump(mode="json", exclude_none=True)
    model.pop("search", None)
    model["params"] = {**model["params"], "omega": 0.5}
    model["train"] = {**model.get("train", {}), "lr": 1.0e-3}
    content["models"] = [model]
    return api.as_suite(content, overrides)


def measure(suite: Suite, arm: str, n: int, repeat: int) -> Measurement:
    """Run every run of ``suite`` with ``arm``'s executor options into a fresh folder."""
    options = (
        {"runs_per_device": n, "threads": 1} if arm == "concurrent" else {"jobs": 1, "threads": n}
    )
    runs = suite.runs()
    with tempfile.TemporaryDirectory(prefix=f"concurrency-{arm}-") as folder:
        started = time.perf_counter()
        outcome = api.execute_runs(suite, runs, folder, executor="process", **options)
        wall = time.perf_counter() - started
    bad = [r.run_id for r in outcome.records if not r.ok] + list(outcome.lost)
    if bad or len(outcome.records) != len(runs):
        raise SystemExit(f"{arm}: runs without an ok record: {bad or 'missing records'}")
    epochs = suite.train.epochs
    assert epochs is not None
    at_once = n if arm == "concurrent" else 1
    threads = 1 if arm == "concurrent" else n
    return Measurement(
        repeat, arm, len(runs), epochs, at_once, threads, wall, len(runs) * 3600 / wall
    )


def summarise(measurements: list[Measurement], n: int, console: Console) -> None:
    table = Table(title=f"runs per hour, {os.cpu_count()} cores: median (min-max)")
    for column in ("arm", "runs at once x threads", "runs/h", "wall s"):
        table.add_column(column)
    for arm in ARMS:
        mine = [m for m in measurements if m.arm == arm]
        rates = [m.runs_per_hour for m in mine]
        walls = [m.wall_s for m in mine]
        table.add_row(
            arm,
            f"{mine[0].runs_at_once} x {mine[0].threads}",
            f"{statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f})",
            f"{statistics.median(walls):.1f} ({min(walls):.1f}-{max(walls):.1f})",
        )
    console.print(table)
    by_repeat: dict[int, dict[str, float]] = {}
    for m in measurements:
        by_repeat.setdefault(m.repeat, {})[m.arm] = m.runs_per_hour
    ratios = [r["concurrent"] / r["threaded"] for r in by_repeat.values()]
    console.print(
        f"concurrent / threaded runs per hour (per repetition), N = {n}: median "
        f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})"
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2, help="runs at once / threads per run")
    parser.add_argument("--runs", type=int, default=6, help="runs (seeds) per measurement")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="suite changes")
    args = parser.parse_args(argv)
    for name in ("n", "runs", "epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    suite = cmmd_suite(args.runs, args.epochs, args.overrides)
    console = Console()
    measurements = []
    for repeat in range(args.repeats):
        for arm in ARMS if repeat % 2 == 0 else ARMS[::-1]:
            measurements.append(measure(suite, arm, args.n, repeat))
            console.print(f"repeat {repeat} {arm}: {measurements[-1].wall_s:.1f} s")
    summarise(measurements, args.n, console)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"concurrency-cpu-n{args.n}-{datetime.date.today().isoformat()}.csv"
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(asdict(measurements[0])))
        writer.writeheader()
        writer.writerows(asdict(m) for m in measurements)
    console.print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
