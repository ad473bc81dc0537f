"""mmbench beside the peer libraries at identical architecture and objective (issue 16, target 1).

Each pair trains the same network on the same data with the same objective, batch 128 and Adam
(lr 1e-3, no AMSGrad), once with mmbench's trainer and once with the peer library's own trainer,
as the peer scripts of ``--peers`` (the shared peer harness: ``multivae_train.py``,
``ccazoo_dcca.py``) run it in their own virtual environment (``--peer-python``; the peers are no
dependency of mmbench and are never imported here):

    pair           mmbench model and params                          peer
    mvae           mvae: latent 20, 784-512-512 ReLU, no dropout,    MultiVae MVAE (subsampling,
                   KL annealed over 10 epochs, Bernoulli views       warmup 10)
    mmvae          mmvae_elbo: latent 20, 784-512-512 ReLU, K 1,     MultiVae MMVAE K=1
                   Bernoulli decoders (likelihood "modality")        iwae_looser
    mmvae_iwae     mmvae_iwae: as mmvae, objective iwae, looser, K 10  MMVAE K=10 iwae_looser
    mmvae_dreg     mmvae_iwae: as mmvae, objective dreg, looser, K 10  MMVAE K=10 dreg_looser
    dcca           dcca: 784-1024-1024-10 ReLU, ridge 1e-6           cca-zoo DCCA (reg_covar 1e-6)
    dvcca          vcca: encoder 784-1024-1024 -> 10 (view 1),       cca-zoo DVCCA
                   decoders 10-1024-1024-784, Gaussian, variance 1
    dvcca_private  vcca_private: as vcca, private latents of 10      cca-zoo DVCCAPrivate

Both sides use a 20-D Laplace prior/posterior with softmax scales and a learned prior for MMVAE,
a N(0, I) prior for the rest, and the peers' per-sample loss conventions. Known differences, which
the table keeps visible: MultiVae's MVAE encodes every modality again for each ELBO subset (more
FLOPs for the same objective, see the MFLOP/sample columns); cca-zoo's DCCA maximises the sum of
*squared* canonical correlations, mmbench's the sum of the correlations (Andrew et al.) and has no
option for the squared form -- same networks and FLOPs, different objective: its row shows the
peer's objective evaluated for both networks on the test split, marked "differs", not judged;
MultiVae's MMVAE prior scale has a +1e-6 floor.

Method. Repetitions are interleaved: each repetition runs every pair on both sides, mmbench first
in odd repetitions and the peer first in even ones (so slow drifts of the machine affect both
alike), every run in a fresh subprocess with the same ``--threads`` (torch threads and
OMP/MKL_NUM_THREADS) and flush-to-zero of denormals on (mmbench's trainer always sets it; the peers
get ``--flush-denormal``). Repetition r uses seed r - 1 on both sides. A run trains ``--epochs``
epochs over the training pairs of ``--data`` (the peers' ``make_data.py`` npz, 4,000 pairs);
samples/s = training pairs / the median wall time of epochs 2..E (epoch 1 is warm-up; an epoch's
time includes each trainer's own per-epoch work, e.g. keeping the best state). Per pair: the
median and range of samples/s of each side over the repetitions, and the median and range of the
per-repetition ratio mmbench / peer.

Limit: float32 ``torch.mm`` GFLOP/s measured in the same run, before and after the repetitions,
in fresh subprocesses with the same threads (``benchmarks/throughput.py``'s definition: the best
of square products ``--square`` and of the products of the pair's mmbench training step each
timed alone). Each side's share = its matrix-product FLOPs per sample (torch's FlopCounterMode
over one step's forward and backward; the peers count theirs the same way) x its samples/s / the
limit.

Same objective check: the per-sample training loss of epoch 3 (the running mean over the epoch,
as both trainers report it), with mmbench's Gaussian log-density constant 0.5 log(2 pi) per
feature removed (cca-zoo drops it); for DCCA (reported only), cca-zoo's objective (minus the sum
of squared canonical correlations, ridge 1e-6) on the 1,000 test pairs in one batch after the
last epoch. The check passes when the medians over the repetitions (each a different seed on
both sides) differ by at most ``--loss-rtol`` (default 1 %) of the peer's level. Why 1 %: from seed
to seed an epoch-3 loss moves by at most 0.2 % on these data (MVAE 1465.2 / 1463.1, VCCA 61.86 /
61.88 after the constant, at 1 thread), and the two sides differed by 0.01-0.2 % when the
harness was written; a different likelihood (family, scale, constant), a sum instead of a mean
over features or samples, or another set of ELBO terms moves the level by tens of per cent or
more. What it cannot see: the KL terms, which are under 1 % of these losses after 3 epochs (MVAE
10 nats of 1465 at KL weight 0.25, VCCA 0.04 nats); those are matched by construction (the
table above). The spread over seeds is printed beside it.

Output (folder ``--out``): ``peers.csv`` (one row per pair), ``runs.csv`` (one row per run),
``peers.json`` (settings, limits, every run's full record including the peers' own JSON), and the
table on the terminal. Exit status 1 when a run failed or a loss check failed.

    python benchmarks/peers.py --threads 1 --repeats 5 --out peers-1thread \\
        --peer-python /work/peers-work/venv/bin/python --peers /work/shared/peers \\
        --data /work/peers-work/noisy_mnist5k.npz
    # plumbing check, seconds per run: tiny data, two epochs' timing, no loss check
    python benchmarks/peers.py --threads 1 --repeats 1 --epochs 2 --n-train 256 --pairs mvae,dcca \\
        --square 256 --out /tmp/peers-smoke --peer-python ... --peers ... --data ...
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from throughput import count_step, matmul_rate, random_views, square_rate  # benchmarks/

from baselines.dcca import DCCANetwork
from mmbench.correlation import moments, whitened_cross_covariance
from mmbench.model import DataSpec, TorchModel
from mmbench.registry import make_model
from mmbench.trainer import TrainConfig
from mmbench.views import Likelihood, Modality, Views

BATCH, LR = 128, 1e-3
DCCA_RIDGE = 1e-6  # cca-zoo's reg_covar default
GAUSSIAN_CONSTANT = 0.5 * math.log(2 * math.pi)  # per feature, in mmbench's Gaussian log-density
VAE = {"latent_dim": 20, "hidden": (512, 512), "activation": "relu", "dropout": 0.0}
MMVAE = {**VAE, "likelihood": "modality", "learn_prior": True}
CCA_NETS = {"latent_dim": 10, "hidden": (1024, 1024), "activation": "relu", "dropout": 0.0}
VCCA = {**CCA_NETS, "latent_dropout": 0.0, "decoder_variance": 1.0}


@dataclass(frozen=True)
class Pair:
    """One comparison: mmbench's ``model`` with ``params`` and the peer script's ``peer_model``.

    likelihood: the family of both views in mmbench (the peers' decoder distribution).
    peer_args: the peer script's architecture options (its defaults, spelled out).
    check: "train loss" (epoch 3) or "test objective" (DCCA, see the module's docstring).
    same_objective: False where the peer's objective differs (its check is then reported only).
    """

    title: str
    model: str
    params: dict[str, Any]
    likelihood: Likelihood
    peer_title: str
    peer_script: str
    peer_model: str
    peer_args: tuple[str, ...]
    check: str = "train loss"
    same_objective: bool = True


MULTIVAE_ARGS = ("--latent", "20", "--hidden", "512,512", "--likelihood", "bernoulli", "--K", "10")
CCAZOO_ARGS = ("--latent", "10", "--hidden", "1024,1024", "--n-private", "10")
PAIRS = {
    "mvae": Pair(
        "MVAE",
        "mvae",
        {**VAE, "annealing_epochs": 10},
        "bernoulli",
        "MultiVae MVAE",
        "multivae_train.py",
        "mvae",
        MULTIVAE_ARGS,
    ),
    "mmvae": Pair(
        "MMVAE K=1",
        "mmvae_elbo",
        {**MMVAE, "objective": "elbo", "K": 1},
        "bernoulli",
        "MultiVae MMVAE iwae_looser K=1",
        "multivae_train.py",
        "mmvae",
        MULTIVAE_ARGS,
    ),
    "mmvae_iwae": Pair(
        "MMVAE IWAE K=10",
        "mmvae_iwae",
        {**MMVAE, "objective": "iwae", "K": 10, "looser": True},
        "bernoulli",
        "MultiVae MMVAE iwae_looser",
        "multivae_train.py",
        "mmvae_iwae",
        MULTIVAE_ARGS,
    ),
    "mmvae_dreg": Pair(
        "MMVAE DReG K=10",
        "mmvae_iwae",
        {**MMVAE, "objective": "dreg", "K": 10, "looser": True},
        "bernoulli",
        "MultiVae MMVAE dreg_looser",
        "multivae_train.py",
        "mmvae_dreg",
        MULTIVAE_ARGS,
    ),
    "dcca": Pair(
        "DCCA",
        "dcca",
        {**CCA_NETS, "reg1": DCCA_RIDGE, "reg2": DCCA_RIDGE},
        "gaussian",
        "cca-zoo DCCA",
        "ccazoo_dcca.py",
        "dcca",
        CCAZOO_ARGS,
        check="test objective",
        same_objective=False,
    ),
    "dvcca": Pair(
        "VCCA", "vcca", VCCA, "gaussian", "cca-zoo DVCCA", "ccazoo_dcca.py", "dvcca", CCAZOO_ARGS
    ),
    "dvcca_private": Pair(
        "VCCA-private",
        "vcca_private",
        {**VCCA, "private_dim": 10},
        "gaussian",
        "cca-zoo DVCCAPrivate",
        "ccazoo_dcca.py",
        "dvcca_private",
        CCAZOO_ARGS,
    ),
}


@dataclass
class RunResult:
    """One training run of one side. ``check_value``: the loss the objective check compares
    (see the module's docstring), on the peer's scale."""

    pair: str
    side: str
    repetition: int
    seed: int
    ok: bool
    samples_per_s: float = math.nan
    flops_per_sample: float = math.nan
    check_value: float = math.nan
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    n_params: int = 0
    wall_seconds: float = math.nan
    error: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


# --- children: each runs in a fresh process and prints one "RESULT <json>" line ---------------


def npz_views(path: Path, n_train: int, likelihood: Likelihood, split: str = "train") -> Views:
    """The ``split`` pairs of a ``make_data.py`` npz (first ``n_train`` of them; 0: all), view 1
    observed, view 2 missing, both modelled with ``likelihood``."""
    with np.load(path) as arrays:
        x1, x2, y = (arrays[f"{k}_{split}"] for k in ("X1", "X2", "y"))
    rows = slice(None, n_train or None)
    return Views(
        {"x1": x1[rows], "x2": x2[rows]},
        ("x1",),
        ("x2",),
        y[rows],
        modalities={m: Modality(likelihood) for m in ("x1", "x2")},
    )


def gaussian_constant(pair: Pair, views: Views) -> float:
    """The per-sample constant that mmbench's Gaussian likelihoods add to the loss."""
    if pair.likelihood != "gaussian" or pair.check != "train loss":
        return 0.0
    return GAUSSIAN_CONSTANT * sum(views.dim(m) for m in views.data)


def squared_correlation_objective(module: DCCANetwork, views: Views) -> float:
    """cca-zoo's DCCA objective, minus the sum of squared canonical correlations (ridge 1e-6),
    of the networks' outputs on ``views`` in one batch."""
    module.eval()
    with torch.no_grad():
        batch = {m: torch.as_tensor(views.data[m]) for m in views.data}
        t, _, _ = whitened_cross_covariance(moments(*module.encode(batch)), DCCA_RIDGE, DCCA_RIDGE)
        return -float(torch.linalg.svdvals(t).square().sum())


def mmbench_child(args: argparse.Namespace) -> dict[str, Any]:
    """Train mmbench's side of ``args.pair`` with the suite trainer, timing each epoch."""
    pair = PAIRS[args.pair]
    train = npz_views(args.data, args.n_train, pair.likelihood)
    model = make_model(pair.model, pair.params)
    assert isinstance(model, TorchModel)
    ends, losses = [], []

    def on_epoch(epoch: int, epochs: int, row: dict[str, float]) -> None:
        ends.append(time.perf_counter())
        losses.append(row["loss"])

    start = time.perf_counter()
    model.fit(
        train,
        trainer=TrainConfig(
            epochs=args.epochs,
            batch_size=BATCH,
            lr=LR,
            amsgrad=False,
            patience=None,
            seed=args.seed,
        ),
        on_epoch=on_epoch,
    )
    epoch_seconds = np.diff([start, *ends]).tolist()
    constant = gaussian_constant(pair, train)
    epoch_losses = [loss - constant for loss in losses]
    if pair.check == "test objective":
        assert isinstance(model.module_, DCCANetwork)
        check = squared_correlation_objective(
            model.module_, npz_views(args.data, 0, "gaussian", "test")
        )
    else:
        check = epoch_losses[2] if len(epoch_losses) >= 3 else math.nan
    module = model.module_
    module.train()
    batch = {k: v[:BATCH] for k, v in model.tensors(train).items()}
    flops, _ = count_step(module, batch)
    return {
        "samples_per_s": train.n / statistics.median(epoch_seconds[1:] or epoch_seconds),
        "flops_per_sample": flops / BATCH,
        "check_value": check,
        "epoch_seconds": epoch_seconds,
        "epoch_losses": epoch_losses,
        "gaussian_constant_removed": constant,
        "n_params": sum(p.numel() for p in module.parameters()),
        "params": model.get_params(),
    }


def limit_child(args: argparse.Namespace) -> dict[str, Any]:
    """Square torch.mm GFLOP/s, and per pair the GFLOP/s of its mmbench step's products."""
    cpu = torch.device("cpu")
    square = {
        size: square_rate(size, cpu, args.limit_repeats, args.limit_seconds)
        for size in (int(s) for s in args.square.split(","))
    }
    layers = {}
    for key in args.pairs.split(","):
        pair = PAIRS[key]
        spec = DataSpec(
            observed={"x1": 784},
            missing={"x2": 784},
            likelihoods={"x1": pair.likelihood, "x2": pair.likelihood},
            n_classes=10,
            multilabel=False,
        )
        model = make_model(pair.model, pair.params)
        assert isinstance(model, TorchModel)
        model.device_ = cpu
        module = model.build(spec)
        module.train()
        _, products = count_step(module, model.tensors(random_views(spec, BATCH)))
        layers[key] = matmul_rate(products, cpu, args.limit_repeats, args.limit_seconds / 10)
    return {"square_gflops": square, "layer_gflops": layers}


def run_child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    result = mmbench_child(args) if args.child == "mmbench" else limit_child(args)
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent: interleaved repetitions --------------------------------------------------------


def child_env(threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
    }


def run_process(
    command: list[str], threads: int, cwd: str | None = None
) -> tuple[dict[str, Any] | None, str, float]:
    """(the JSON the command printed last, or None; the tail of its output; wall seconds)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(threads), cwd=cwd)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    text = last.removeprefix("RESULT ")
    if done.returncode == 0 and text.startswith("{"):
        return json.loads(text), "", seconds
    return None, (done.stderr or done.stdout)[-3000:], seconds


def common_options(args: argparse.Namespace, seed: int) -> list[str]:
    return [
        "--epochs",
        str(args.epochs),
        "--threads",
        str(args.threads),
        "--seed",
        str(seed),
        "--data",
        str(args.data),
        "--n-train",
        str(args.n_train),
    ]


def run_mmbench(args: argparse.Namespace, key: str, repetition: int) -> RunResult:
    seed = repetition - 1
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "mmbench",
        "--pair",
        key,
        *common_options(args, seed),
    ]
    out, error, seconds = run_process(command, args.threads)
    if out is None:
        return RunResult(key, "mmbench", repetition, seed, False, wall_seconds=seconds, error=error)
    return RunResult(
        key,
        "mmbench",
        repetition,
        seed,
        True,
        out["samples_per_s"],
        out["flops_per_sample"],
        out["check_value"],
        out["epoch_seconds"],
        out["epoch_losses"],
        out["n_params"],
        seconds,
        raw=out,
    )


def run_peer(args: argparse.Namespace, key: str, repetition: int) -> RunResult:
    pair, seed = PAIRS[key], repetition - 1
    with tempfile.TemporaryDirectory(prefix="mmbench-peer-") as workdir:
        command = [
            str(args.peer_python),
            str(args.peers / pair.peer_script),
            "--models",
            pair.peer_model,
            *common_options(args, seed),
            "--batch",
            str(BATCH),
            "--lr",
            str(LR),
            *pair.peer_args,
            "--no-probe",
            "--flush-denormal",
        ]
        if pair.peer_script == "multivae_train.py":
            command += ["--workdir", workdir]
        out, error, seconds = run_process(command, args.threads, cwd=workdir)
    if out is None or not out.get("results"):
        detail = error if out is None else json.dumps(out.get("errors", {}))[-3000:]
        return RunResult(key, "peer", repetition, seed, False, wall_seconds=seconds, error=detail)
    r = out["results"][0]
    losses = r.get("train_loss_per_epoch") or r.get("train_objective_per_epoch") or []
    if pair.check == "test objective":
        check = r["test_objective_full_batch"]
    else:
        check = losses[2] if len(losses) >= 3 else math.nan
    return RunResult(
        key,
        "peer",
        repetition,
        seed,
        True,
        r["samples_per_s"],
        r["matmul_mflop_per_sample_fwd_bwd"] * 1e6,
        check,
        r["epoch_s"],
        losses,
        r["n_params"],
        seconds,
        raw=out,
    )


def measure_limit(args: argparse.Namespace, keys: list[str], console: Console) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "limit",
        "--threads",
        str(args.threads),
        "--pairs",
        ",".join(keys),
        "--square",
        args.square,
        "--limit-repeats",
        str(args.limit_repeats),
        "--limit-seconds",
        str(args.limit_seconds),
    ]
    out, error, _ = run_process(command, args.threads)
    if out is None:
        raise SystemExit(f"measuring the torch.mm limit failed:\n{error}")
    console.print(
        "torch.mm GFLOP/s: "
        + ", ".join(f"{s}x{s} {r:.1f}" for s, r in out["square_gflops"].items())
        + "; layer GEMM "
        + ", ".join(f"{k} {r:.1f}" for k, r in out["layer_gflops"].items()),
        style="dim",
    )
    return out


def spread(values: list[float]) -> dict[str, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(
    key: str, runs: list[RunResult], limits: list[dict[str, Any]], rtol: float
) -> dict[str, Any]:
    """The pair's row: each side's samples/s, the per-repetition ratios, shares of the limit and
    the objective check."""
    pair = PAIRS[key]
    sides = {
        side: {r.repetition: r for r in runs if r.pair == key and r.side == side and r.ok}
        for side in ("mmbench", "peer")
    }
    both = sorted(set(sides["mmbench"]) & set(sides["peer"]))
    limit = max(max(m["square_gflops"].values()) for m in limits)
    limit = max(limit, *(m["layer_gflops"].get(key, 0.0) for m in limits))
    row: dict[str, Any] = {
        "pair": key,
        "title": pair.title,
        "mmbench_model": pair.model,
        "peer": pair.peer_title,
        "repetitions": len(both),
        "limit_gflops": limit,
    }
    for side, found in sides.items():
        speed = spread([r.samples_per_s for r in found.values()])
        flops = statistics.median([r.flops_per_sample for r in found.values()] or [math.nan])
        row |= {
            f"{side}_samples_per_s": speed["median"],
            f"{side}_samples_per_s_min": speed["min"],
            f"{side}_samples_per_s_max": speed["max"],
            f"{side}_mflop_per_sample": flops / 1e6,
            f"{side}_share_of_limit": flops * speed["median"] / 1e9 / limit,
            f"{side}_n_params": max((r.n_params for r in found.values()), default=0),
        }
    ratio = spread(
        [sides["mmbench"][r].samples_per_s / sides["peer"][r].samples_per_s for r in both]
    )
    row |= {"ratio": ratio["median"], "ratio_min": ratio["min"], "ratio_max": ratio["max"]}
    check = {side: spread([r.check_value for r in found.values()]) for side, found in sides.items()}
    level = check["peer"]["median"]
    difference = check["mmbench"]["median"] - level
    row |= {
        "check": pair.check,
        "check_mmbench": check["mmbench"]["median"],
        "check_mmbench_range": check["mmbench"]["max"] - check["mmbench"]["min"],
        "check_peer": level,
        "check_peer_range": check["peer"]["max"] - check["peer"]["min"],
        "check_relative_difference": difference / abs(level) if level else math.nan,
        "check_rtol": rtol,
    }
    unchecked = not pair.same_objective or math.isnan(row["check_relative_difference"])
    row["check_passed"] = None if unchecked else bool(abs(row["check_relative_difference"]) <= rtol)
    return row


def render(rows: list[dict[str, Any]], args: argparse.Namespace, console: Console) -> None:
    table = Table(
        title=f"mmbench / peer training samples/s, {args.threads} thread(s), "
        f"{args.repeats} interleaved repetitions, batch {BATCH}, "
        f"flush-denormal on both sides"
    )
    for column in (
        "pair",
        "peer",
        "mmbench samples/s",
        "peer samples/s",
        "mmbench / peer",
        "of limit mm / peer",
        "MFLOP/sample mm / peer",
        "check: mm / peer",
        "same?",
    ):
        table.add_column(column, justify="left" if column in ("pair", "peer") else "right")

    def speed(row, side):
        return (
            f"{row[f'{side}_samples_per_s']:,.0f} ({row[f'{side}_samples_per_s_min']:,.0f}-"
            f"{row[f'{side}_samples_per_s_max']:,.0f})"
        )

    for row in rows:
        table.add_row(
            row["title"],
            row["peer"],
            speed(row, "mmbench"),
            speed(row, "peer"),
            f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})",
            f"{100 * row['mmbench_share_of_limit']:.0f}% / {100 * row['peer_share_of_limit']:.0f}%",
            f"{row['mmbench_mflop_per_sample']:.1f} / {row['peer_mflop_per_sample']:.1f}",
            f"{row['check_mmbench']:.2f} / {row['check_peer']:.2f} "
            f"({100 * row['check_relative_difference']:+.2f}%)",
            {True: "yes", False: "NO"}.get(
                row["check_passed"],
                "differs" if not PAIRS[row["pair"]].same_objective else "not checked",
            ),
        )
    console.print(table)
    console.print(
        "check: per-sample training loss of epoch 3 (DCCA: cca-zoo's objective on the test pairs "
        f"after the last epoch), median over seeds; 'same?' = within {100 * args.loss_rtol:g}% "
        "of the peer's level. Spread over seeds (max - min), mmbench / peer: "
        + "; ".join(
            f"{r['pair']} {r['check_mmbench_range']:.2f} / {r['check_peer_range']:.2f}"
            for r in rows
        )
    )
    console.print(
        "limit (GFLOP/s, best float32 torch.mm of squares and of the pair's layers, "
        "before and after): " + ", ".join(f"{r['pair']} {r['limit_gflops']:.1f}" for r in rows)
    )
    console.print(
        "parameters, mmbench / peer: "
        + ", ".join(f"{r['pair']} {r['mmbench_n_params']:,} / {r['peer_n_params']:,}" for r in rows)
    )


def write_outputs(
    out: Path, rows: list[dict[str, Any]], runs: list[RunResult], meta: dict[str, Any]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "peers.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    columns = [
        "pair",
        "side",
        "repetition",
        "seed",
        "ok",
        "samples_per_s",
        "flops_per_sample",
        "check_value",
        "n_params",
        "wall_seconds",
        "epoch_seconds",
        "epoch_losses",
        "error",
    ]
    with open(out / "runs.csv", "w", newline="") as f:
        runs_writer = csv.writer(f)
        runs_writer.writerow(columns)
        for r in runs:
            runs_writer.writerow(
                [
                    json.dumps(getattr(r, c)) if isinstance(getattr(r, c), list) else getattr(r, c)
                    for c in columns
                ]
            )
    (out / "peers.json").write_text(
        json.dumps(
            {**meta, "pairs": rows, "runs": [r.__dict__ for r in runs]}, indent=1, default=str
        )
    )


def parent(args: argparse.Namespace) -> int:
    console = Console(width=max(Console().width, 160))
    keys = args.pairs.split(",")
    unknown = sorted(set(keys) - set(PAIRS))
    if unknown:
        raise SystemExit(f"--pairs: unknown {unknown}; choose from {sorted(PAIRS)}")
    for path, what in (
        (args.peer_python, "--peer-python"),
        (args.data, "--data"),
        *((args.peers / PAIRS[k].peer_script, "--peers") for k in keys),
    ):
        if not Path(path).is_file():
            raise SystemExit(f"{what}: {path} is not a file")
    started = time.time()
    limits = [measure_limit(args, keys, console)]
    runs: list[RunResult] = []
    for repetition in range(1, args.repeats + 1):
        for key in keys:
            order = (run_mmbench, run_peer) if repetition % 2 else (run_peer, run_mmbench)
            for run in order:
                result = run(args, key, repetition)
                runs.append(result)
                console.print(
                    f"[{repetition}/{args.repeats}] {PAIRS[key].title} {result.side}: "
                    + (
                        f"{result.samples_per_s:,.0f} samples/s, check {result.check_value:.3f}"
                        if result.ok
                        else "FAILED"
                    )
                    + f" ({result.wall_seconds:.0f} s)",
                    style=None if result.ok else "bold red",
                )
                if not result.ok:
                    console.print(result.error, style="red", markup=False, highlight=False)
    limits.append(measure_limit(args, keys, console))
    rows = [summarise(key, runs, limits, args.loss_rtol) for key in keys]
    render(rows, args, console)
    meta = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "started": started,
        "seconds": time.time() - started,
        "limits": limits,
        "mmbench_params": {k: PAIRS[k].params for k in keys},
    }
    write_outputs(args.out, rows, runs, meta)
    console.print(
        f"wrote {args.out}/peers.csv, runs.csv, peers.json ({(time.time() - started) / 60:.1f} min)"
    )
    failed = [r for r in runs if not r.ok]
    return 1 if failed or any(r["check_passed"] is False for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, required=True, help="threads of every run")
    parser.add_argument("--out", type=Path, help="folder for peers.csv, runs.csv, peers.json")
    parser.add_argument("--peer-python", type=Path, help="python of the peers' venv")
    parser.add_argument("--peers", type=Path, help="folder of the peer scripts")
    parser.add_argument("--data", type=Path, help="npz written by the peers' make_data.py")
    parser.add_argument(
        "--pairs",
        default=",".join(PAIRS),
        help=f"comma-separated, from {list(PAIRS)} (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="epochs per run (>= 3 for the loss check; timing: epochs 2..E)",
    )
    parser.add_argument(
        "--n-train", type=int, default=0, help="use the first N training pairs (0: all)"
    )
    parser.add_argument(
        "--loss-rtol",
        type=float,
        default=0.01,
        help="largest relative difference of the check losses",
    )
    parser.add_argument("--square", default="2048,4096", help="square torch.mm sizes for the limit")
    parser.add_argument("--limit-repeats", type=int, default=3)
    parser.add_argument(
        "--limit-seconds",
        type=float,
        default=1.0,
        help="least seconds of one timed loop of the limit",
    )
    parser.add_argument("--child", choices=("mmbench", "limit"), help=argparse.SUPPRESS)
    parser.add_argument("--pair", choices=list(PAIRS), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args)
        return 0
    for option in ("out", "peer_python", "peers", "data"):
        if getattr(args, option) is None:
            parser.error(f"--{option.replace('_', '-')} is required")
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
