"""Closed-form CCA (mmbench's ``cca``) against scikit-learn's iterative CCA: exactness and speed.

Data: 4,000 pairs of 784-D pixel views (noisy two-view MNIST): the training split of
``mnist_embedded`` with 10 % validation and 10 % test (4,000 rows), or the ``X1_train`` /
``X2_train`` arrays of an npz written by the peers' ``make_data.py`` (``--data``).

Exactness: mmbench's canonical correlations (float32 data, float64 moments, Cholesky whitening)
against a float64 numpy reference at the same ridge that uses eigendecompositions only; the run
fails (exit status 1) when they differ by more than ``--atol`` (1e-6). tests/test_cca.py keeps
the same check in the test suite.

Speed: wall-clock seconds of ``mmbench CCA(n_components, reg1=reg2=ridge).fit`` and of
``sklearn.cross_decomposition.CCA(n_components, max_iter, tol).fit`` (NIPALS with deflation,
float64 inside, unregularised), interleaved: each repetition times both, the order alternating
between repetitions (mmbench first, then sklearn first), after one untimed fit of each. Reported:
median and range of each side's seconds, and of the per-repetition ratio sklearn / mmbench
(the speed-up). The ridge changes neither method's cost; the two are different estimators on
these data (without a ridge the pixel covariances are singular and sklearn converges to its own
solution), so only their speed is compared.

    python benchmarks/cca_vs_sklearn.py --threads 1 --repeats 5 --out cca-1thread
    python benchmarks/cca_vs_sklearn.py --threads 2 --repeats 5 --out cca-2threads
    python benchmarks/cca_vs_sklearn.py --threads 1 --repeats 1 --rows 500   # plumbing check
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from sklearn.cross_decomposition import CCA as SklearnCCA
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from baselines.cca import CCA
from mmbench.data import load_dataset
from mmbench.views import Modality, Views


@dataclass
class Timing:
    """One repetition: seconds of each fit and sklearn's convergence warnings."""

    repetition: int
    first: str
    mmbench_seconds: float
    sklearn_seconds: float
    sklearn_convergence_warnings: int

    @property
    def speedup(self) -> float:
        return self.sklearn_seconds / self.mmbench_seconds


def pixel_views(data: Path | None, rows: int) -> Views:
    """The first ``rows`` training pairs, view 1 observed and view 2 missing."""
    if data is None:
        train = load_dataset("mnist_embedded", seed=0, valid_fraction=0.1, test_fraction=0.1).train
        x1, x2 = train.data["x1"], train.data["x2"]
    else:
        with np.load(data) as arrays:
            missing = {"X1_train", "X2_train"} - set(arrays.files)
            if missing:
                raise SystemExit(
                    f"{data}: no arrays {sorted(missing)}; expected the npz of the "
                    "peers' make_data.py (X1_train, X2_train, ...)"
                )
            x1, x2 = arrays["X1_train"], arrays["X2_train"]
    if rows > len(x1):
        raise SystemExit(f"--rows {rows}: the data have only {len(x1)} training pairs")
    x1, x2 = (np.ascontiguousarray(x[:rows], dtype=np.float32) for x in (x1, x2))
    return Views(
        {"x1": x1, "x2": x2},
        ("x1",),
        ("x2",),
        np.zeros(rows, np.int64),
        modalities={"x1": Modality("gaussian"), "x2": Modality("gaussian")},
    )


def reference_correlations(x1: np.ndarray, x2: np.ndarray, ridge: float, k: int) -> np.ndarray:
    """The top-k canonical correlations in float64 numpy, by eigendecompositions only: the square
    roots of the eigenvalues of T T^T, T = S11^-1/2 S12 S22^-1/2 with S11 + ridge I, S22 + ridge I
    (symmetric inverse square roots)."""
    a = x1.astype(np.float64) - x1.astype(np.float64).mean(0)
    b = x2.astype(np.float64) - x2.astype(np.float64).mean(0)
    n = len(a)

    def inverse_sqrt(covariance: np.ndarray) -> np.ndarray:
        values, vectors = np.linalg.eigh(covariance)
        return (vectors / np.sqrt(values)) @ vectors.T

    t = (
        inverse_sqrt(a.T @ a / (n - 1) + ridge * np.eye(a.shape[1]))
        @ (a.T @ b / (n - 1))
        @ inverse_sqrt(b.T @ b / (n - 1) + ridge * np.eye(b.shape[1]))
    )
    return np.sqrt(np.clip(np.sort(np.linalg.eigvalsh(t @ t.T))[::-1][:k], 0, None))


def fit_mmbench(views: Views, args: argparse.Namespace) -> tuple[float, CCA]:
    model = CCA(n_components=args.components, reg1=args.ridge, reg2=args.ridge)
    start = time.perf_counter()
    model.fit(views)
    return time.perf_counter() - start, model


def fit_sklearn(views: Views, args: argparse.Namespace) -> tuple[float, int]:
    """(seconds, convergence warnings) of one scikit-learn fit."""
    model = SklearnCCA(n_components=args.components, max_iter=args.max_iter, tol=args.tol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(views.data["x1"], views.data["x2"])
        seconds = time.perf_counter() - start
    return seconds, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", type=int, required=True, help="torch and BLAS threads of both sides"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="npz of the peers' make_data.py (default: mnist_embedded)",
    )
    parser.add_argument("--rows", type=int, default=4000, help="training pairs fitted")
    parser.add_argument("--components", type=int, default=10, help="canonical pairs")
    parser.add_argument(
        "--ridge", type=float, default=0.1, help="mmbench's reg1 = reg2 (the suites' default)"
    )
    parser.add_argument("--max-iter", type=int, default=500, help="sklearn's max_iter")
    parser.add_argument("--tol", type=float, default=1e-6, help="sklearn's tol")
    parser.add_argument(
        "--atol",
        type=float,
        default=1e-6,
        help="largest allowed |mmbench - reference| canonical correlation",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for cca_vs_sklearn.json and .csv"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console(width=max(Console().width, 100))
    with threadpool_limits(args.threads):
        views = pixel_views(args.data, args.rows)
        _, model = fit_mmbench(views, args)
        reference = reference_correlations(
            views.data["x1"], views.data["x2"], args.ridge, args.components
        )
        # the regularised canonical correlations (the singular values of T), not the diagnostics'
        # train_correlations_, which are the plain Pearson correlations of the variates
        fitted = model.projection_.correlations.numpy()
        error = float(np.abs(fitted - reference).max())
        exact = error <= args.atol
        fit_sklearn(views, args)
        timings = []
        for repetition in range(1, args.repeats + 1):
            order = ("mmbench", "sklearn") if repetition % 2 else ("sklearn", "mmbench")
            seconds: dict[str, float] = {}
            for side in order:
                if side == "mmbench":
                    seconds[side] = fit_mmbench(views, args)[0]
                else:
                    seconds[side], n_warnings = fit_sklearn(views, args)
            timings.append(
                Timing(repetition, order[0], seconds["mmbench"], seconds["sklearn"], n_warnings)
            )
            console.print(
                f"repetition {repetition}: mmbench {seconds['mmbench']:.3f} s, "
                f"sklearn {seconds['sklearn']:.2f} s",
                style="dim",
            )

    summary = {
        "rows": args.rows,
        "dims": [views.dim("x1"), views.dim("x2")],
        "components": args.components,
        "ridge": args.ridge,
        "threads": args.threads,
        "sklearn": {"max_iter": args.max_iter, "tol": args.tol},
        "exactness": {
            "max_abs_error": error,
            "atol": args.atol,
            "passed": exact,
            "mmbench": fitted.tolist(),
            "reference": reference.tolist(),
        },
        "mmbench_seconds": spread([t.mmbench_seconds for t in timings]),
        "sklearn_seconds": spread([t.sklearn_seconds for t in timings]),
        "speedup": spread([t.speedup for t in timings]),
        "repetitions": [{**asdict(t), "speedup": t.speedup} for t in timings],
    }
    table = Table(
        title=f"Closed-form CCA vs scikit-learn CCA: {args.rows} x {views.dim('x1')} "
        f"pairs, {args.components} components, {args.threads} thread(s), "
        f"{args.repeats} interleaved repetitions"
    )
    for column in ("", "fit s (median)", "range", "speed-up (sklearn / mmbench)"):
        table.add_column(column, justify="left" if not column else "right")
    m, s, r = summary["mmbench_seconds"], summary["sklearn_seconds"], summary["speedup"]
    table.add_row(
        f"mmbench cca (ridge {args.ridge})",
        f"{m['median']:.3f}",
        f"{m['min']:.3f}-{m['max']:.3f}",
        f"{r['median']:.1f}x ({r['min']:.1f}-{r['max']:.1f})",
    )
    table.add_row(
        "sklearn CCA (NIPALS)", f"{s['median']:.2f}", f"{s['min']:.2f}-{s['max']:.2f}", ""
    )
    console.print(table)
    console.print(
        f"sklearn: max_iter {args.max_iter}, tol {args.tol:g}, convergence warnings "
        f"per fit {[t.sklearn_convergence_warnings for t in timings]}"
    )
    console.print(
        f"exactness: max |mmbench - float64 numpy reference| = {error:.2e} "
        f"({'within' if exact else 'ABOVE'} {args.atol:g})",
        style="green" if exact else "bold red",
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cca_vs_sklearn.json").write_text(json.dumps(summary, indent=2))
        with open(args.out / "cca_vs_sklearn.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*asdict(timings[0]), "speedup"])
            writer.writeheader()
            writer.writerows({**asdict(t), "speedup": t.speedup} for t in timings)
        console.print(f"wrote {args.out}/cca_vs_sklearn.json and .csv")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
