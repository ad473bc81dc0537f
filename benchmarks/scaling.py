"""How training cost grows, and what each paper suite costs on this machine (issue 16, target 5).

Sweeps (random data of the shapes and likelihoods of ``--config``'s data, each model with its
hyper-parameters and train settings from that config's suite, ``benchmarks/throughput.py``):

- rows: samples/s of every model against the training rows n (``--rows``, 1k to 50k);
- K: samples/s of ``mmvae_iwae`` against its importance samples per expert (``--K``);
- modalities: samples/s of ``mvae``, ``mmvae_elbo`` and ``mmvae_iwae`` against the number of
  modalities M (``--modalities``; every modality shaped like the config's observed one, one
  observed and M - 1 missing), at ``--sweep-rows`` rows.

A point is one ``model.fit`` with the suite trainer for 1 + ``--repeats`` epochs (no validation
split, no early stopping): samples/s = n / the median wall time of epochs 2..E, each epoch's time
including the trainer's per-epoch work. Closed-form CCA: rows fitted per second (median of
``--repeats`` fits).

Suites: the estimated training wall time of every suite in ``--suites`` on this machine, per model
block (over all the suite's data points), as two parts. Trials: a tuned suite's tuning trials,
tune.trials per data point, each trained like the block's runs (its epochs: the block's train
epochs, at most the tune block's cap; the cap where epochs is searched). Runs: a tuned block's
final runs (the best trial on each seed), or an untuned block's expansion (data grid x model grid
x seeds), or a reference row's fits. Hours = (trials x trial epochs + runs x epochs) x the cost of
one epoch, where one epoch = n_train / training samples/s + n_valid / (3 x training samples/s)
(the validation loss after every epoch: a forward pass, a third of a training step's FLOPs).
Samples/s are measured at the block's architecture, batch size and the data's shapes
(throughput.py's ``measure_training``: the trainer's epoch loop on random data, the fastest of
``--repeats``) with the block's first grid point and first data point (the suites' grids -- omega,
folds, speakers, seeds -- do not change the cost); a tuned block at its fixed params and train
settings (a search over architecture -- latent size, widths -- or batch size changes each trial's
cost, which is not counted). CCA: fit seconds on min(n_train, 20,000) random rows, scaled linearly
to n_train, one fit per trial or run. Assumptions, printed with the table: every trial and run
trains to its epoch cap (early stopping not counted, so an upper bound for suites with
``patience``), evaluation, downstream classifiers and data loading are not counted, and the
training rows of the full data sets are those of ``DATA_ROWS`` (XRMB frames per speaker:
``--xrmb-frames-per-speaker``).

Outputs in ``--out`` (default benchmarks/results), named
``scaling-cpu-<threads>threads-<date>``: ``.csv`` (sweeps), ``.png`` and ``.pdf`` (the figure),
``-suites.csv`` (estimates).

    python benchmarks/scaling.py --threads 1                          # everything
    python benchmarks/scaling.py --threads 2 --parts suites            # suite estimates only
    python benchmarks/scaling.py --threads 1 --rows 500,1000 --K 1,2 --modalities 2,3 \\
        --sweep-rows 300 --repeats 1 --models mvae,cca --suites suites/quickstart.yaml \\
        --min-seconds 0.1 --out /tmp/scaling-smoke                     # plumbing check
"""

from __future__ import annotations

import argparse
import csv
import datetime
import glob
import statistics
import sys
import time
from argparse import Namespace
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import NullLocator
from rich.console import Console
from rich.table import Table
from throughput import CONFIGS, ROOT, measure_cca, measure_training, random_views  # benchmarks/

from mmbench.config import TrainSettings
from mmbench.model import DataSpec, TorchModel
from mmbench.records import Run
from mmbench.registry import make_model
from mmbench.suite import Suite, load_suite
from mmbench.trainer import TrainConfig

MODALITY_MODELS = ("mvae", "mmvae_elbo", "mmvae_iwae")
CCA_ROWS = 20_000
VALIDATION_COST = 1 / 3  # a validation row's cost relative to a training row's


@dataclass
class Point:
    """One sweep measurement: ``samples_per_s`` of ``model`` at ``x`` (rows, K or modalities)."""

    sweep: str
    model: str
    x: int
    rows: int
    samples_per_s: float


@dataclass
class SuiteRow:
    """The estimated training time of one model block of a suite: ``trials`` tuning trials of
    ``trial_epochs`` epochs (none for an untuned block), then ``runs`` runs of ``epochs`` epochs;
    an epoch takes ``seconds_per_epoch`` (validation pass included)."""

    suite: str
    label: str
    model: str
    trials: int
    trial_epochs: int
    runs: int
    epochs: int
    batch_size: int
    n_train: int
    n_valid: int
    samples_per_s: float
    seconds_per_epoch: float
    trial_hours: float
    run_hours: float
    hours: float


@dataclass
class Block:
    """One model block of a suite as it runs: ``run`` stands for all its trials and runs (its
    first data point, its fixed params and train settings), ``trials`` tuning trials of
    ``trial_epochs`` epochs each, then ``runs`` runs of ``epochs`` epochs each."""

    label: str
    run: Run
    trials: int
    trial_epochs: int
    runs: int
    epochs: int


# --- sweeps -------------------------------------------------------------------------------------


def suite_settings(suite_path: str) -> dict[str, tuple[dict[str, Any], TrainSettings]]:
    """Model name -> (params, train settings) of its first block in a suite file."""
    suite = load_suite(ROOT / suite_path)
    out: dict[str, tuple[dict[str, Any], TrainSettings]] = {}
    for block in suite.models:
        train = TrainSettings(**{**suite.train.model_dump(), **block.train})
        out.setdefault(block.name, (dict(block.params), train))
    return out


def fit_rate(
    name: str, params: dict[str, Any], train: TrainSettings, spec: DataSpec, rows: int, repeats: int
) -> float:
    """Training samples (rows fitted, for closed forms) per second of one fit on ``rows``
    random rows: the median epoch of 2..1 + repeats, or of ``repeats`` closed-form fits."""
    views = random_views(spec, rows)
    model = make_model(name, params)
    if not isinstance(model, TorchModel):
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.fit(views)
            seconds.append(time.perf_counter() - start)
        return rows / statistics.median(seconds)
    ends: list[float] = []
    start = time.perf_counter()
    config = TrainConfig(**{**train.model_dump(), "epochs": 1 + repeats, "patience": None})
    model.fit(views, trainer=config, on_epoch=lambda *_: ends.append(time.perf_counter()))
    epochs = [b - a for a, b in zip([start, *ends], ends)][1:]
    return rows / statistics.median(epochs)


def with_modalities(spec: DataSpec, count: int) -> DataSpec:
    """``count`` modalities shaped like the first observed one: m1 observed, m2.. missing."""
    name = next(iter(spec.observed))
    dim, likelihood = spec.observed[name], spec.likelihoods[name]
    names = [f"m{i + 1}" for i in range(count)]
    return replace(
        spec,
        observed={names[0]: dim},
        missing={m: dim for m in names[1:]},
        likelihoods={m: likelihood for m in names},
    )


def sweeps(args: argparse.Namespace, console: Console) -> list[Point]:
    suite, spec = CONFIGS[args.config]
    settings = suite_settings(suite)
    points: list[Point] = []

    def measure(
        sweep: str, name: str, x: int, rows: int, params: dict[str, Any], point_spec: DataSpec
    ) -> None:
        rate = fit_rate(name, params, settings[name][1], point_spec, rows, args.repeats)
        points.append(Point(sweep, name, x, rows, rate))
        console.print(f"{sweep} {name} {x}: {rate:,.0f} samples/s", style="dim")

    parts = args.parts.split(",")
    if "rows" in parts:
        for name in args.models.split(","):
            if name not in settings:
                console.print(f"skipped {name}: not in {suite}")
                continue
            for rows in parse_ints(args.rows):
                measure("rows", name, rows, rows, settings[name][0], spec)
    if "K" in parts and "mmvae_iwae" in settings:
        for k in parse_ints(args.K):
            measure(
                "K", "mmvae_iwae", k, args.sweep_rows, {**settings["mmvae_iwae"][0], "K": k}, spec
            )
    if "modalities" in parts:
        for name in (m for m in MODALITY_MODELS if m in settings):
            for count in parse_ints(args.modalities):
                measure(
                    "modalities",
                    name,
                    count,
                    args.sweep_rows,
                    settings[name][0],
                    with_modalities(spec, count),
                )
    return points


def parse_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def figure(points: list[Point], path: Path, title: str) -> None:
    """Three panels: samples/s against rows (log-log), K (log-log) and modalities."""
    panels = [
        ("rows", "training rows n", "log"),
        ("K", "MMVAE-IWAE samples per expert K", "log"),
        ("modalities", "modalities M", "linear"),
    ]
    shown = [p for p in panels if any(pt.sweep == p[0] for pt in points)]
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4), squeeze=False)
    for ax, (sweep, label, scale) in zip(axes[0], shown):
        for model in dict.fromkeys(pt.model for pt in points if pt.sweep == sweep):
            xy = sorted(
                (pt.x, pt.samples_per_s) for pt in points if pt.sweep == sweep and pt.model == model
            )
            ax.plot(*zip(*xy), marker="o", label=model)
        ax.set_xscale(scale)
        ax.set_yscale("log")
        ticks = sorted({pt.x for pt in points if pt.sweep == sweep})
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(label)
        ax.set_ylabel("training samples / s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    for suffix in (".png", ".pdf"):
        fig.savefig(path.with_suffix(suffix), dpi=150)
    plt.close(fig)


# --- suite estimates ----------------------------------------------------------------------------


def mnist_spec(observed: dict[str, int], missing: dict[str, int]) -> DataSpec:
    dims = {**observed, **missing}
    return DataSpec(
        observed=observed,
        missing=missing,
        likelihoods=dict.fromkeys(dims, "bernoulli"),
        n_classes=10,
        multilabel=False,
    )


def data_rows(
    name: str, options: dict[str, Any], frames_per_speaker: int
) -> tuple[DataSpec, int, int]:
    """(shapes, training rows, validation rows) of a suite's data set; see DATA_ROWS."""
    if name == "mnist_embedded":
        valid, test = options.get("valid_fraction", 0.2), options.get("test_fraction", 0.2)
        return CONFIGS["quickstart"][1], round(5000 * (1 - valid - test)), round(5000 * valid)
    if name == "mnist_noisy":
        return CONFIGS["mnist"][1], 50_000, 10_000
    if name == "mnist_svhn":
        return (
            mnist_spec({"mnist": 784}, {"svhn": 3072}),
            options.get("n_train", 80_000),
            options.get("n_valid", 10_000),
        )
    if name == "mnist3":
        dims = {"mnist": 784, "mnist_rotated": 784, "svhn": 3072}
        observed = tuple(options.get("observed", ("mnist",)))
        return (
            mnist_spec(
                {m: dims[m] for m in observed}, {m: d for m, d in dims.items() if m not in observed}
            ),
            options.get("n_train", 30_000),
            options.get("n_valid", 3_000),
        )
    if name == "flickr":
        return CONFIGS["flickr"][1], 10_000, 5_000
    if name == "xrmb":
        valid = options.get("valid_fraction", 0.1)
        protocol = options.get("protocol", "folds")
        speakers = {"folds": 6, "speakers": 35}.get(protocol, 1)
        frames = speakers * frames_per_speaker
        if protocol == "per_speaker":
            frames *= 1 - options.get("test_fraction", 0.3)
        return CONFIGS["xrmb"][1], round(frames * (1 - valid)), round(frames * valid)
    raise ValueError(f"no training-row facts for data set {name!r}; see DATA_ROWS")


DATA_ROWS = """training rows assumed (validation in brackets): mnist_embedded 5,000 x
(1 - valid - test) (quickstart: 3,000 [1,000]); mnist_noisy 50,000 [10,000] (Wang et al.);
mnist_svhn the loader's n_train 80,000 [10,000]; mnist3 30,000 [3,000]; flickr 10,000 [5,000]
labelled images per split; xrmb (frames per speaker F): folds 6 F, speakers 35 F, per_speaker
0.7 F, minus 10 % validation."""


def suite_blocks(suite: Suite) -> list[Block]:
    """The model blocks of ``suite``: each tuned block (per study: tune.trials trials, then the
    best trial on each seed), then the blocks of its expanded runs (untuned models, reference
    rows), in the suite's order."""
    blocks: dict[str, Block] = {}
    tune = suite.tune
    for study in suite.studies():
        assert tune is not None
        trial = suite.trial_run(study, 0, {})  # the block's fixed params and train settings
        searched = "epochs" in suite.models[study.block].search
        epochs = tune.epochs if searched else trial.config.epochs
        block = blocks.setdefault(study.label, Block(study.label, trial, 0, epochs, 0, epochs))
        block.trials += tune.trials
        block.runs += len(suite.seeds)
    for run in suite.runs():
        block = blocks.setdefault(run.label, Block(run.label, run, 0, 0, 0, run.config.epochs))
        block.runs += 1
    return list(blocks.values())


def suite_estimates(args: argparse.Namespace, console: Console) -> list[SuiteRow]:
    """The estimated training time of every model block of the suites in ``args.suites``."""
    rows: list[SuiteRow] = []
    measured: dict[str, float] = {}
    for path in args.suites.split(","):
        for file in sorted(glob.glob(str(ROOT / path)) or glob.glob(path)):
            suite = load_suite(file)
            for block in suite_blocks(suite):
                first = block.run.config
                spec, n_train, n_valid = data_rows(
                    first.data.name, dict(first.data.options), args.xrmb_frames_per_speaker
                )
                train = TrainSettings(
                    **{k: v for k, v in first.train.items() if k in TrainSettings.model_fields}
                )
                key = repr((first.model.name, first.model.params, spec, train.batch_size))
                if key not in measured:
                    measured[key] = block_rate(
                        first.model.name, first.model.params, spec, train, n_train, args
                    )
                rate = measured[key]
                model = make_model(first.model.name, first.model.params)
                if isinstance(model, TorchModel):
                    epoch = (n_train + VALIDATION_COST * n_valid) / rate
                    trial_epochs, epochs = block.trial_epochs, block.epochs
                else:  # a closed form: one fit per trial or run
                    epoch, trial_epochs, epochs = n_train / rate, min(block.trials, 1), 1
                trial_hours = block.trials * trial_epochs * epoch / 3600
                run_hours = block.runs * epochs * epoch / 3600
                rows.append(
                    SuiteRow(
                        suite.name,
                        block.label,
                        first.model.name,
                        block.trials,
                        trial_epochs,
                        block.runs,
                        epochs,
                        train.batch_size,
                        n_train,
                        n_valid,
                        rate,
                        epoch,
                        trial_hours,
                        run_hours,
                        trial_hours + run_hours,
                    )
                )
                console.print(
                    f"{suite.name} {block.label}: {rate:,.0f} samples/s, {block.trials} trials, "
                    f"{block.runs} runs, {trial_hours + run_hours:,.1f} h",
                    style="dim",
                )
    return rows


def block_rate(
    name: str,
    params: dict[str, Any],
    spec: DataSpec,
    train: TrainSettings,
    n_train: int,
    args: argparse.Namespace,
) -> float:
    """Training samples/s of one block's model (throughput.py's measurements)."""
    model = make_model(name, params)
    options = Namespace(
        batch_size=train.batch_size,
        min_seconds=args.min_seconds,
        repeats=args.repeats,
        cca_rows=min(n_train, CCA_ROWS),
    )
    if not isinstance(model, TorchModel):
        return measure_cca(model, spec, options)[0]
    model.device_ = torch.device("cpu")
    rates = measure_training(
        model,
        {"amsgrad": train.amsgrad},
        spec,
        options,
        torch.device("cpu"),
        [TrainConfig(**dict(train))],
    )[0]
    return rates[0]


def print_suites(rows: list[SuiteRow], console: Console, threads: int) -> None:
    table = Table(
        title=f"Estimated training wall time of each suite on this CPU, {threads} "
        "thread(s), runs one after another"
    )
    for column in (
        "suite",
        "model",
        "trials x ep",
        "runs x ep",
        "batch",
        "train rows",
        "samples/s",
        "s / epoch",
        "h trials",
        "h runs",
        "h",
    ):
        table.add_column(column, justify="left" if column in ("suite", "model") else "right")
    for suite in dict.fromkeys(r.suite for r in rows):
        block = [r for r in rows if r.suite == suite]
        for r in block:
            table.add_row(
                r.suite,
                r.label,
                f"{r.trials} x {r.trial_epochs}" if r.trials else "",
                f"{r.runs} x {r.epochs}",
                str(r.batch_size),
                f"{r.n_train:,}",
                f"{r.samples_per_s:,.0f}",
                f"{r.seconds_per_epoch:,.2f}",
                f"{r.trial_hours:,.1f}" if r.trials else "",
                f"{r.run_hours:,.1f}",
                f"{r.hours:,.1f}",
            )
        total = sum(r.hours for r in block)
        table.add_row(
            suite,
            "[b]total[/b]",
            str(sum(r.trials for r in block)),
            str(sum(r.runs for r in block)),
            "",
            "",
            "",
            "",
            f"{sum(r.trial_hours for r in block):,.1f}",
            f"{sum(r.run_hours for r in block):,.1f}",
            f"[b]{total:,.1f}[/b] ({total / 24:,.1f} d)",
            end_section=True,
        )
    console.print(table)
    console.print(
        "Trials: a tuned suite's tuning trials (tune.trials per model and data point); runs: "
        "its final runs (the best trial on each seed), an untuned suite's runs, the reference "
        "rows' fits. Every trial and run to its epoch cap (early stopping not counted: an upper "
        "bound where a suite sets patience); a tuned model measured at its fixed params and "
        "train settings (a search over latent size, hidden widths or batch size changes each "
        "trial's cost, not counted here); evaluation, downstream classifiers and data loading "
        "not counted; one epoch = n_train / samples/s + n_valid / (3 samples/s); "
        + DATA_ROWS.replace("\n", " ")
    )


def write_csv(path: Path, rows: list) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, required=True, help="torch threads")
    parser.add_argument(
        "--parts",
        default="rows,K,modalities,suites",
        help="comma-separated: rows, K, modalities, suites",
    )
    parser.add_argument(
        "--config",
        default="quickstart",
        choices=sorted(CONFIGS),
        help="the architecture and data shapes of the sweeps",
    )
    parser.add_argument(
        "--models",
        default="cmmd,mxo,cca,dcca,dccae,vcca,vcca_private,mvae,mmvae_elbo,mmvae_iwae",
        help="models of the rows sweep",
    )
    parser.add_argument("--rows", default="1000,2000,5000,10000,20000,50000")
    parser.add_argument("--K", default="1,5,10,30")
    parser.add_argument("--modalities", default="2,3,5")
    parser.add_argument(
        "--sweep-rows", type=int, default=4000, help="training rows of the K and modalities sweeps"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="timed epochs (or fits) per point; the median (suites: fastest)",
    )
    parser.add_argument(
        "--suites",
        default="suites/*.yaml",
        help="comma-separated suite files or globs (relative to the checkout)",
    )
    parser.add_argument(
        "--xrmb-frames-per-speaker",
        type=int,
        default=55_000,
        help="assumed XRMB frames per speaker (the files are not read)",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=1.0,
        help="least duration of one timed epoch of a suite estimate",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - {"rows", "K", "modalities", "suites"}
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the trainer does
    console = Console(width=max(Console().width, 160))
    stem = args.out / f"scaling-cpu-{args.threads}threads-{datetime.date.today()}"
    args.out.mkdir(parents=True, exist_ok=True)
    points = sweeps(args, console)
    if points:
        write_csv(stem.with_suffix(".csv"), points)
        figure(
            points,
            stem,
            f"Training samples/s on {args.config} shapes, cpu, {args.threads} "
            f"thread(s), batch as in suites/{args.config}",
        )
        table = Table(title=f"Training samples/s ({args.config} architecture)")
        for column in ("sweep", "model", "x", "rows", "samples/s"):
            table.add_column(column, justify="left" if column in ("sweep", "model") else "right")
        for p in points:
            table.add_row(p.sweep, p.model, str(p.x), f"{p.rows:,}", f"{p.samples_per_s:,.0f}")
        console.print(table)
        console.print(f"wrote {stem}.csv, .png, .pdf")
    if "suites" in args.parts.split(","):
        estimates = suite_estimates(args, console)
        print_suites(estimates, console, args.threads)
        write_csv(Path(f"{stem}-suites.csv"), estimates)
        console.print(f"wrote {stem}-suites.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
