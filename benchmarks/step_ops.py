"""Operations per training step of each model, counted rather than timed (robust on a loaded
machine): the aten ops dispatched by one step of :func:`mmbench.trainer.train_epoch` (loss,
backward, fused Adam) after a warm-up epoch, split into matrix products, views (no data read or
written: ``FREE``) and the other ops, and the bytes those others write (the sizes of their
outputs), at an architecture of ``benchmarks/throughput.py``, batch 128 by default.

    python benchmarks/step_ops.py --models cmmd,vcca --configs quickstart
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import CONFIGS, MATMULS, random_views, suite_models

from mmbench.model import TorchModel
from mmbench.registry import make_model
from mmbench.trainer import Progress, TrainConfig, make_optimizer, train_epoch

# Views and metadata: no data are read or written.
FREE = {
    "view",
    "_unsafe_view",
    "expand",
    "t",
    "transpose",
    "permute",
    "unsqueeze",
    "squeeze",
    "slice",
    "select",
    "split_with_sizes",
    "detach",
    "alias",
    "as_strided",
    "lift_fresh",
    "_record_function_enter_new",
    "_record_function_exit",
}


class OpCounter(TorchDispatchMode):
    """Counts the dispatched aten ops (by overload packet) and the bytes of the outputs of the
    ops that are neither matrix products nor views."""

    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.written = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.ops[name] += 1
        if func not in MATMULS and name not in FREE:
            self.written += sum(
                t.nbytes for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)
            )
        return out


def step_ops(name: str, config: str, batch_size: int) -> tuple[Counter[str], int]:
    """(ops of one training step by name, bytes written by its non-matmul ops) of ``name``."""
    suite, spec = CONFIGS[config]
    block = suite_models(suite)[name]
    model = make_model(name, block.get("params", {}))
    assert isinstance(model, TorchModel)
    model.device_ = torch.device("cpu")
    torch.manual_seed(0)
    module = model.build(spec)
    optimizer = make_optimizer(
        module, TrainConfig(amsgrad=block.get("train", {}).get("amsgrad", False))
    )
    data = model.tensors(random_views(spec, batch_size))
    train_epoch(module, optimizer, data, batch_size)  # creates the optimizer state
    progress = Progress(1, 0, 1, 1)
    with OpCounter() as counter:  # the body of train_epoch's loop, for one batch
        loss, _ = module.loss(data, progress)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return counter.ops, counter.written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default="cmmd,mmvae_elbo,mopoe,mmvae_plus,vcca,vcca_private",
        help="comma-separated registered mini-batch models",
    )
    parser.add_argument("--configs", default="quickstart", help=f"from {sorted(CONFIGS)}")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--top", type=int, default=0, help="also list the N most frequent ops")
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    print(
        f"{'model':14} {'config':11} {'ops':>6} {'matmul':>7} {'views':>6} {'other':>6} "
        f"{'MB written':>10}"
    )
    for config in args.configs.split(","):
        for name in args.models.split(","):
            ops, written = step_ops(name, config, args.batch_size)
            total = sum(ops.values())
            matmul = sum(ops[m.overloadpacket.__name__] for m in MATMULS)
            views = sum(ops[f] for f in FREE)
            print(
                f"{name:14} {config:11} {total:6d} {matmul:7d} {views:6d} "
                f"{total - matmul - views:6d} {written / 1e6:10.2f}"
            )
            if args.top:
                print("   ", ", ".join(f"{k} {v}" for k, v in ops.most_common(args.top)))


if __name__ == "__main__":
    main()
