"""Training throughput of every registered model against the machine's matrix-multiply limit.

For each model and architecture (``--configs``) the trainer's own epoch loop
(:func:`mmbench.trainer.train_epoch`: forward, backward, fused Adam step, one host read of the
losses per epoch) runs over random data of the architecture's shapes and likelihoods: a warm-up
epoch, then ``--repeats`` timed epochs of at least ``--min-seconds`` each; the fastest gives the
training samples per second. FLOPs per training sample are counted by
``torch.utils.flop_counter.FlopCounterMode`` over the forward and backward of one batch, divided by
the batch size: matrix products only (elementwise work and the optimizer step count for nothing).

The matrix-multiply limit is the best float32 ``torch.mm`` rate measured on square matrices
(``--square``) and at the model's own products (every product of one training step, with its
shapes and operand layouts, timed alone: "layer GEMM"). The fraction of the limit is the model's
GFLOP/s divided by the best of these.

Closed-form CCA has no mini-batch step: its row is a fit on ``--cca-rows`` random rows (float64,
on the CPU) and its samples per second are rows fitted per second.

An architecture's hyper-parameters are its suite file's model blocks; a model that the suite
lists only as an optional (commented-out) row is measured with that row.

The training settings' speed levers (:func:`mmbench.trainer.loss_step`): ``--compile``
(torch.compile of the loss step) and ``--precision bfloat16`` (autocast; the limit stays the
float32 one). With ``--compare`` each model is measured both as plain float32 eager and with the
chosen levers, the timed repeats of the two alternating, one row each (column "variant").

    python benchmarks/throughput.py                                   # every model and config
    python benchmarks/throughput.py --models cmmd --configs mnist --repeats 5 --csv out.csv
    python benchmarks/throughput.py --models mvae --configs mnist --compile --compare
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.table import Table
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from mmbench.model import DataSpec, TorchModel
from mmbench.registry import available_models, make_model
from mmbench.trainer import TrainConfig, loss_step, make_optimizer, train_epoch
from mmbench.views import Modality, Views

ROOT = Path(__file__).resolve().parent.parent
MNIST = DataSpec(
    observed={"x1": 784},
    missing={"x2": 784},
    likelihoods={"x1": "bernoulli", "x2": "gaussian"},
    n_classes=10,
    multilabel=False,
)
XRMB = DataSpec(
    observed={"acoustic": 273},
    missing={"articulatory": 112},
    likelihoods={"acoustic": "gaussian", "articulatory": "gaussian"},
    n_classes=40,
    multilabel=False,
)
FLICKR = DataSpec(
    observed={"image": 3857},
    missing={"tags": 2000},
    likelihoods={"image": "gaussian", "tags": "bernoulli"},
    n_classes=38,
    multilabel=True,
)
# config name -> (the suite whose model blocks give the hyper-parameters, the data's shapes)
CONFIGS = {
    "quickstart": ("suites/quickstart.yaml", MNIST),
    "mnist": ("suites/mnist_noisy.yaml", MNIST),
    "xrmb": ("suites/xrmb_folds.yaml", XRMB),
    "flickr": ("suites/flickr.yaml", FLICKR),
}
MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}


@dataclass
class Row:
    """One measurement; ``samples_per_s`` are training samples (rows fitted, for CCA) per second,
    ``flops_per_sample`` counted matrix-product FLOPs, the rates in GFLOP/s."""

    model: str
    config: str
    batch_size: int
    device: str
    threads: int
    samples_per_s: float
    flops_per_sample: float
    gflops: float
    matmul_gflops: float
    fraction_of_limit: float
    layer_matmul_gflops: float
    measure: str
    variant: str = "eager float32"


def suite_models(suite: str) -> dict[str, dict]:
    """Model name -> its first block in the suite file (``params``, ``train`` overrides), its
    models' blocks first, then its optional rows (:func:`optional_rows`)."""
    text = (ROOT / suite).read_text()
    out: dict[str, dict] = {}
    for block in yaml.safe_load(text)["models"] + optional_rows(text):
        out.setdefault(block["name"], block)
    return out


def optional_rows(text: str) -> list[dict]:
    """The model blocks that a suite file lists commented out in its models list, below a comment
    line that starts with "# Optional rows": from the first commented line that starts a block
    ("# - name: ...") to the last commented line, each read as it would be uncommented (the "# "
    after its indentation removed)."""
    lines = text.splitlines()
    marker = next(
        (i for i, line in enumerate(lines) if line.lstrip().startswith("# Optional rows")), None
    )
    if marker is None:
        return []
    rows: list[str] = []
    for line in lines[marker + 1 :]:
        indent = len(line) - len(line.lstrip())
        if not line[indent:].startswith("#"):
            break
        uncommented = line[indent + 2 :]
        if rows or uncommented.startswith("- "):
            rows.append(line[:indent] + uncommented)
    return yaml.safe_load("\n".join(rows)) or []


def random_views(spec: DataSpec, n: int, seed: int = 0) -> Views:
    """n random rows of the shapes and likelihoods of ``spec``: Gaussian modalities N(0, 1),
    Bernoulli ones U(0, 1) (grey pixels, soft tags); uniform class ids, or Bernoulli(0.1) label
    indicators for multi-label data."""
    rng = np.random.default_rng(seed)
    dims = spec.dims
    data = {
        m: (
            rng.random((n, d))
            if spec.likelihoods[m] == "bernoulli"
            else rng.standard_normal((n, d))
        ).astype(np.float32)
        for m, d in dims.items()
    }
    labels = (
        (rng.random((n, spec.n_classes)) < 0.1).astype(np.int64)
        if spec.multilabel
        else rng.integers(0, spec.n_classes, n)
    )
    return Views(
        data,
        tuple(spec.observed),
        tuple(spec.missing),
        labels,
        modalities={m: Modality(spec.likelihoods[m]) for m in dims},
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn, device: torch.device, repeats: int, min_seconds: float) -> float:
    """Seconds per call of ``fn``: the fastest of ``repeats`` timed loops of at least
    ``min_seconds`` each (the first call is a warm-up)."""
    fn()
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    calls = max(1, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-9)))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


class MatmulRecorder(TorchDispatchMode):
    """Records every matrix product dispatched: (shape of A, shape of B, A transposed,
    B transposed), A and B being the two factors of mm / addmm / bmm."""

    def __init__(self):
        super().__init__()
        self.products: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            a, b = args[-2:]
            self.products.append((tuple(a.shape), tuple(b.shape), column_major(a), column_major(b)))
        return func(*args, **(kwargs or {}))


def column_major(t: torch.Tensor) -> bool:
    """Whether the last two dimensions of ``t`` are a transposed (column-major) matrix."""
    return t.dim() >= 2 and t.stride(-2) == 1 and t.stride(-1) != 1


def operand(shape: tuple, transposed: bool, device: torch.device) -> torch.Tensor:
    if not transposed:
        return torch.randn(shape, device=device)
    return torch.randn((*shape[:-2], shape[-1], shape[-2]), device=device).transpose(-1, -2)


def product_flops(a: tuple, b: tuple) -> int:
    """2 m k n for (..., m, k) @ (..., k, n)."""
    return 2 * math.prod(a) * b[-1]


def matmul_rate(
    products: list[tuple], device: torch.device, repeats: int, min_seconds: float
) -> float:
    """GFLOP/s of ``products`` (from :class:`MatmulRecorder`) each timed alone: total FLOPs over
    total time."""
    flops = seconds = 0.0
    counts: dict[tuple, int] = {}
    for product in products:
        counts[product] = counts.get(product, 0) + 1
    for (a_shape, b_shape, a_t, b_t), count in counts.items():
        a, b = operand(a_shape, a_t, device), operand(b_shape, b_t, device)
        matmul = torch.bmm if len(a_shape) == 3 else torch.mm
        seconds += count * best_seconds(partial(matmul, a, b), device, repeats, min_seconds)
        flops += count * product_flops(a_shape, b_shape)
    return flops / seconds / 1e9


def square_rate(size: int, device: torch.device, repeats: int, min_seconds: float) -> float:
    """GFLOP/s of a float32 (size x size) @ (size x size) product."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / best_seconds(lambda: torch.mm(a, b), device, repeats, min_seconds) / 1e9


def count_step(module: torch.nn.Module, batch: dict) -> tuple[float, list[tuple]]:
    """Matrix-product FLOPs of the forward and backward of one batch, and its products."""
    with FlopCounterMode(display=False) as counter, MatmulRecorder() as recorder:
        loss, _ = module.loss(batch)
        loss.backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops(), recorder.products


def variant_name(config: TrainConfig) -> str:
    return f"{'compiled' if config.compile else 'eager'} {config.precision}"


def measure_training(
    model: TorchModel,
    train: dict,
    spec: DataSpec,
    args,
    device: torch.device,
    variants: list[TrainConfig],
) -> tuple[list[float], float, list[tuple]]:
    """(samples per second of each of the training settings ``variants``, FLOPs per sample, the
    products of one step) of ``model``; the variants' timed epochs alternate."""
    batch_size = args.batch_size
    warm_up = model.tensors(random_views(spec, 2 * batch_size))
    fits = []
    for variant in variants:
        torch.manual_seed(0)
        module = model.build(spec).to(device)
        module.train()
        config = variant.model_copy(update={"amsgrad": train.get("amsgrad", False)})
        fit = (module, make_optimizer(module, config), loss_step(module, config))
        train_epoch(*fit[:2], warm_up, batch_size, step=fit[2])  # compiles, if asked
        fits.append(fit)
    synchronize(device)
    start = time.perf_counter()
    for module, optimizer, step in fits:
        train_epoch(module, optimizer, warm_up, batch_size, step=step)
    synchronize(device)
    per_step = (time.perf_counter() - start) / (2 * len(fits))
    steps = max(3, math.ceil(args.min_seconds / per_step))
    data = model.tensors(random_views(spec, steps * batch_size, seed=1))
    generator = torch.Generator().manual_seed(0)
    seconds = [math.inf] * len(fits)
    for _ in range(args.repeats):
        for i, (module, optimizer, step) in enumerate(fits):
            start = time.perf_counter()
            # reads the losses: synced
            train_epoch(module, optimizer, data, batch_size, generator, step=step)
            seconds[i] = min(seconds[i], time.perf_counter() - start)
    batch = {k: v[:batch_size] for k, v in data.items()}
    flops, products = count_step(fits[0][0], batch)
    return [steps * batch_size / s for s in seconds], flops / batch_size, products


def measure_cca(model, spec: DataSpec, args) -> tuple[float, float]:
    """(rows fitted per second, matrix-product FLOPs per row) of a closed-form fit on
    ``cca_rows`` training rows and a validation split of a fifth of that (where a model chooses
    its ridge, as a suite's runs do); the first fit, under the FLOP counter, is not timed."""
    views = random_views(spec, args.cca_rows)
    valid = random_views(spec, max(2, args.cca_rows // 5), seed=2)
    with FlopCounterMode(display=False) as counter:
        model.fit(views, valid)
    seconds = math.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.fit(views, valid)
        seconds = min(seconds, time.perf_counter() - start)
    return args.cca_rows / seconds, counter.get_total_flops() / args.cca_rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=",".join(available_models()),
        help="comma-separated registered model names (default: all)",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated architectures from {sorted(CONFIGS)}",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is kept")
    parser.add_argument(
        "--min-seconds", type=float, default=1.0, help="least duration of one timed repeat"
    )
    parser.add_argument("--square", default="2048,4096", help="square matmul sizes for the limit")
    parser.add_argument("--cca-rows", type=int, default=10000, help="rows of the CCA fit")
    parser.add_argument("--csv", type=Path, default=None, help="write the rows to this CSV file")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the loss step (train.compile)"
    )
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default="float32",
        help="the loss step's precision (train.precision)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also measure eager float32, alternating with the chosen levers",
    )
    args = parser.parse_args(argv)
    levers = TrainConfig(compile=args.compile, precision=args.precision)
    variants = [TrainConfig(), levers] if args.compare else [levers]
    if args.compare and variants[0] == variants[1]:
        parser.error("--compare: choose a lever to compare with (--compile, --precision)")
    for option, given, known in (
        ("--models", args.models, available_models()),
        ("--configs", args.configs, list(CONFIGS)),
    ):
        unknown = sorted(set(given.split(",")) - set(known))
        if unknown:
            parser.error(f"{option}: unknown {unknown}; choose from {sorted(known)}")

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.set_flush_denormal(True)  # as the trainer does
    console = Console(width=max(Console().width, 130))
    square = {
        int(s): square_rate(int(s), device, args.repeats, args.min_seconds)
        for s in args.square.split(",")
    }
    console.print(
        f"float32 torch.mm on {device} with {threads} threads: "
        + ", ".join(f"{s}x{s} {r:.1f} GFLOP/s" for s, r in square.items())
    )

    rows, skipped = [], []
    for config in args.configs.split(","):
        suite, spec = CONFIGS[config]
        blocks = suite_models(suite)
        for name in args.models.split(","):
            if name not in blocks:
                skipped.append((name, config, f"not in {suite}"))
                continue
            model = make_model(name, blocks[name].get("params", {}))
            console.print(f"{name} / {config} ...", style="dim")
            if isinstance(model, TorchModel):
                model.device_ = device
                rates, flops, products = measure_training(
                    model, blocks[name].get("train", {}), spec, args, device, variants
                )
                layer = matmul_rate(products, device, args.repeats, args.min_seconds / 10)
                row_device, measure, batch_size = str(device), "train step", args.batch_size
                measured = list(zip(rates, map(variant_name, variants)))
            else:
                samples, flops = measure_cca(model, spec, args)
                layer, row_device, measure, batch_size = (
                    math.nan,
                    "cpu",
                    "closed-form fit",
                    args.cca_rows,
                )
                measured = [(samples, "float64")]
            limit = max(*square.values(), 0.0 if math.isnan(layer) else layer)
            for samples, variant in measured:
                gflops = samples * flops / 1e9
                rows.append(
                    Row(
                        name,
                        config,
                        batch_size,
                        row_device,
                        threads,
                        samples,
                        flops,
                        gflops,
                        limit,
                        gflops / limit,
                        layer,
                        measure,
                        variant,
                    )
                )

    table = Table(
        title=f"Training throughput, batch {args.batch_size}, {device}, {threads} threads "
        f"(best of {args.repeats}); limit = best float32 matmul GFLOP/s"
    )
    for column in (
        "model",
        "config",
        "measure",
        "variant",
        "samples/s",
        "MFLOP/sample",
        "GFLOP/s",
        "layer GEMM",
        "limit",
        "of limit",
    ):
        table.add_column(
            column,
            justify="left" if column in ("model", "config", "measure", "variant") else "right",
        )
    for r in rows:
        table.add_row(
            r.model,
            r.config,
            r.measure,
            r.variant,
            f"{r.samples_per_s:,.0f}",
            f"{r.flops_per_sample / 1e6:,.1f}",
            f"{r.gflops:.1f}",
            f"{r.layer_matmul_gflops:.1f}",
            f"{r.matmul_gflops:.1f}",
            f"{100 * r.fraction_of_limit:.0f}%",
        )
    console.print(table)
    for name, config, reason in skipped:
        console.print(f"skipped {name} / {config}: {reason}")
    if args.csv is not None:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])) if rows else [])
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
        console.print(f"wrote {args.csv}")
    return rows


if __name__ == "__main__":
    main()
