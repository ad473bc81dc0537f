"""No host-device synchronisation inside a training step, for every registered torch model.

On a GPU, a host read of a device value (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``,
``.cpu()``) or an op whose output shape depends on the data (``nonzero``, boolean-mask indexing)
blocks the host until the device queue drains. The trainer reads the losses once per epoch, so a
step (``loss`` + backward + optimizer step) must contain none.

This is checked on the CPU: :class:`HostReads` follows every value computed from the data or the
parameters ("device values") through torch's dispatcher and records each such read. Host-side
values (e.g. a random subset drawn with ``torch.randint`` on the host) are not device values, so
reading them is not a sync. The step's own reads are the difference between an epoch of three
mini-batches and an epoch of one (the epoch's single read of the losses cancels).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from mmbench.model import DataSpec, TorchModel
from mmbench.registry import available_models, model_class
from mmbench.trainer import TrainConfig, make_optimizer, train_epoch
from mmbench.views import Likelihood, Modality, Views

aten = torch.ops.aten
ON_DEVICE = "_counted_as_device_value"
# Ops that read a value back to the host, or whose output shape depends on the values.
SYNCING = {
    aten._local_scalar_dense,
    aten.is_nonzero,
    aten.equal,
    aten.nonzero,
    aten.masked_select,
    aten.repeat_interleave,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
}
# Tensor methods that copy to the host without an op a CPU dispatch mode would see.
HOST_COPIES = ("tolist", "numpy", "cpu", "__array__")
# Functions that check their input's values on the host on the CPU only (on a GPU they rely on
# device-side asserts instead): reads inside them are not counted.
CPU_ONLY_CHECKS = ((nn.functional, "one_hot"),)
BATCH = 16


def is_device_value(value: object) -> bool:
    return isinstance(value, torch.Tensor) and getattr(value, ON_DEVICE, False)


def boolean_index(args: tuple) -> bool:
    return any(
        isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in pytree.tree_leaves(args[1:])
    )


class HostReads(TorchDispatchMode):
    """Records the host reads of device values while active (``reads``: op or method names).

    ``mark(tensors)`` declares the starting device values (data, parameters); every output of an
    op with a device value among its inputs is one too.
    """

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []
        self._originals: list[tuple[object, str, object]] = []
        self._in_cpu_only_check = 0

    @staticmethod
    def mark(tensors: Iterable[torch.Tensor]) -> None:
        for t in tensors:
            setattr(t, ON_DEVICE, True)

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if any(is_device_value(t) for t in pytree.tree_leaves((args, kwargs))):
            if not self._in_cpu_only_check and (
                func.overloadpacket in SYNCING
                or (func.overloadpacket is aten.index and boolean_index(args))
            ):
                self.reads.append(str(func))
            self.mark(t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor))
        return out

    def _replace(self, owner: object, name: str, replacement: object) -> None:
        self._originals.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def __enter__(self):
        for name in HOST_COPIES:

            def counted(
                tensor: torch.Tensor,
                *args: Any,
                _name: str = name,
                _original: Any = getattr(torch.Tensor, name),
                **kwargs: Any,
            ) -> Any:
                if is_device_value(tensor):
                    self.reads.append(f"Tensor.{_name}")
                return _original(tensor, *args, **kwargs)

            self._replace(torch.Tensor, name, counted)
        for owner, name in CPU_ONLY_CHECKS:

            def uncounted(*args: Any, _original: Any = getattr(owner, name), **kwargs: Any) -> Any:
                self._in_cpu_only_check += 1
                try:
                    return _original(*args, **kwargs)
                finally:
                    self._in_cpu_only_check -= 1

            self._replace(owner, name, uncounted)
        return super().__enter__()

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()
        return super().__exit__(*exc)


def random_views(spec: DataSpec, n: int) -> Views:
    rng = np.random.default_rng(0)
    data = {
        m: (
            rng.random((n, d))
            if spec.likelihoods[m] == "bernoulli"
            else rng.standard_normal((n, d))
        ).astype(np.float32)
        for m, d in spec.dims.items()
    }
    return Views(
        data,
        tuple(spec.observed),
        tuple(spec.missing),
        rng.integers(0, spec.n_classes, n),
        modalities={m: Modality(cast(Likelihood, spec.likelihoods[m])) for m in spec.dims},
    )


SPECS = {
    "two": DataSpec(
        observed={"x1": 12},
        missing={"x2": 10},
        likelihoods={"x1": "bernoulli", "x2": "gaussian"},
        n_classes=3,
        multilabel=False,
    ),
    # three modalities: MVAE draws random subsets on the host, MMVAE has M^2 expert densities
    "three": DataSpec(
        observed={"x1": 12, "x3": 8},
        missing={"x2": 10},
        likelihoods={"x1": "bernoulli", "x2": "gaussian", "x3": "bernoulli"},
        n_classes=3,
        multilabel=False,
    ),
}


def step_reads(module: nn.Module, data: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """(host reads per training step, the reads of an epoch of three steps) of ``module``."""
    torch.manual_seed(0)
    optimizer = make_optimizer(module, TrainConfig(lr=1e-3))
    train_epoch(module, optimizer, data, BATCH)  # creates the optimizer state: not counted
    counts, three = [], []
    for batches in (1, 3):
        subset = {k: v[: batches * BATCH] for k, v in data.items()}
        with HostReads() as reads:
            reads.mark(
                [
                    *subset.values(),
                    *module.parameters(),
                    *module.buffers(),
                    *(
                        t
                        for state in optimizer.state.values()
                        for t in state.values()
                        if isinstance(t, torch.Tensor)
                    ),
                ]
            )
            train_epoch(module, optimizer, subset, BATCH)
        counts.append(len(reads.reads))
        three = reads.reads
    per_step, remainder = divmod(counts[1] - counts[0], 2)
    assert remainder == 0, f"reads: one step {counts[0]}, three steps {counts[1]}: {three}"
    return per_step, three


def model_cases() -> list:
    return [
        pytest.param(name, spec, id=f"{name}-{spec}")
        for name in available_models()
        for spec in SPECS
    ]


@pytest.mark.parametrize("name,spec_name", model_cases())
def test_training_step_reads_nothing_from_the_device(name, spec_name):
    cls = model_class(name)
    model = cls(**cls.config_class.test_params)
    if not isinstance(model, TorchModel):
        pytest.skip(f"{name} is not trained by mini-batch steps")
    spec = SPECS[spec_name]
    reason = model.unsupported(spec)
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    model.device_ = torch.device("cpu")
    data = model.tensors(random_views(spec, 3 * BATCH))
    per_step, reads = step_reads(model.build(spec), data)
    assert per_step == 0, (
        f"{name} reads {per_step} device value(s) back per training step; "
        f"an epoch of three steps read: {reads}"
    )


class SyncingNetwork(nn.Module):
    """A linear model whose loss reads device values back in one of several ways."""

    def __init__(self, how: str):
        super().__init__()
        self.linear = nn.Linear(12, 1)
        self.how = how

    def loss(self, batch, progress=None):
        loss = self.linear(batch["x1"]).square().mean()
        if self.how == "item" and loss.item() < 0:
            raise AssertionError
        if self.how == "bool" and not bool(torch.isfinite(loss)):
            raise AssertionError
        if self.how == "tolist":
            batch["x1"][:, 0].tolist()
        if self.how == "mask":
            loss = loss + batch["x1"][batch["x1"] > 0.5].sum() * 0
        if self.how == "host random":  # drawn on the host: not a device read
            torch.randint(0, 3, (2,)).tolist()
            int(torch.randint(0, 3, ()))
        if self.how == "one_hot":  # checks the labels on the host on the CPU only
            loss = loss + nn.functional.one_hot(batch["y"], 3).sum() * 0
        return loss, {}


@pytest.mark.parametrize(
    "how,expected",
    [
        ("item", 1),
        ("bool", 1),
        ("tolist", 1),
        ("mask", 1),
        ("host random", 0),
        ("one_hot", 0),
        ("none", 0),
    ],
)
def test_the_counter_sees_each_kind_of_host_read(how, expected):
    data = {"x1": torch.rand(3 * BATCH, 12), "y": torch.randint(0, 3, (3 * BATCH,))}
    assert step_reads(SyncingNetwork(how), data)[0] == expected
