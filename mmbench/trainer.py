"""One mini-batch trainer for every neural model.

Data stay on the device as tensors; a mini-batch is an index slice of a random permutation (no
per-sample Python). The model is an ``nn.Module`` whose ``loss(batch, progress)`` returns the
scalar loss to minimise and a dict of its named parts (0-d tensors; a float costs a host-to-device
copy per step on a GPU) for the history. ``progress`` says where training stands (a
:class:`Progress`); it is None when the loss is evaluated (the validation loss). The host reads
the losses once per epoch, not once per step.

Training that diverges raises :class:`DivergedError` (the run is recorded as "diverged"): a
batch's loss is not finite, or the last epoch's mean training loss exploded, i.e. exceeds the
loss of the untrained model (the first batch's, before any step) by more than
:data:`EXPLOSION_FACTOR` times that loss's magnitude (at least 1), see :func:`exploded`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from mmbench.config import TrainConfig

Batch = Mapping[str, torch.Tensor]


class DivergedError(RuntimeError):
    """Training produced a non-finite or exploded loss; the run is recorded as diverged with this
    message."""


EXPLOSION_FACTOR = 10.0
"""How far above the untrained model's loss the final training loss may end (see
:func:`exploded`)."""


def exploded(initial: float, final: float) -> bool:
    """Whether a fit whose untrained model had the training loss ``initial`` (its first batch's)
    and whose last epoch's mean training loss is ``final`` blew up:
    ``final > initial + EXPLOSION_FACTOR * max(|initial|, 1)``.

    The untrained model is the reference because a learning rate that blows up does so in the
    first steps: the first epoch's mean is then already astronomic (M-xO at lr 1e6: 5.5e25, then
    3.4e18) while the first batch's loss is not (2.2). The bound is relative to the loss's
    magnitude, and at least 1 in absolute terms, so it holds for every registered model: losses
    that fall, losses that are negative (DCCA's minus the canonical correlations, from -1.2 to
    -3.4) and losses whose annealed KL weight makes them rise a little (MVAE, whose first batch
    has a KL weight near 0); a training loss ten times worse than an untrained model's is a
    failure for any of them.
    """
    return final > initial + EXPLOSION_FACTOR * max(abs(initial), 1.0)


@dataclass(frozen=True)
class Progress:
    """Where training stands when the trainer asks for a batch's loss.

    epoch: the current epoch, from 1. step: the optimisation steps taken before this batch's,
    over the whole fit (0 for the first batch). steps_per_epoch: mini-batches per epoch.
    epochs: the planned epochs (early stopping or a time budget may end training sooner).
    """

    epoch: int
    step: int
    steps_per_epoch: int
    epochs: int

    @property
    def fraction(self) -> float:
        """The share of the planned steps already taken, in [0, 1)."""
        return self.step / (self.epochs * self.steps_per_epoch)


@dataclass
class FitReport:
    """What training did: epochs run, the best validation epoch and loss, the untrained model's
    training loss (the first batch's), time, loss history, and why it stopped (the values of
    :class:`mmbench.records.FitSummary`'s ``stopped_by``)."""

    epochs: int = 0
    best_epoch: int = 0
    best_valid_loss: float = math.nan
    initial_loss: float = math.nan
    seconds: float = 0.0
    stopped_by: str = "epochs"
    history: list[dict[str, float]] = field(default_factory=list)


EpochCallback = Callable[[int, int, dict[str, float]], None]


_Self = TypeVar("_Self", bound="Network")


class Network(Protocol):
    """What the trainer and :class:`mmbench.model.TorchModel` use of a network: an ``nn.Module``
    (its training mode, parameters, device and state) with the ``loss(batch, progress)`` of the
    module docstring, which returns the scalar loss and its named parts."""

    training: bool

    def loss(
        self, batch: Batch, progress: Progress | None, /
    ) -> tuple[torch.Tensor, Mapping[str, torch.Tensor | float]]: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> object: ...

    def eval(self) -> object: ...

    def to(self: _Self, device: torch.device) -> _Self: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> object: ...


def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} asked for, but torch sees no CUDA device; use --device cpu"
        )
    return device


def n_points(data: Batch) -> int:
    """The number of points of ``data`` (its tensors share their first dimension)."""
    return next(iter(data.values())).shape[0]


def iterate_minibatches(
    data: Batch, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield dicts of index slices of ``data`` (all tensors share their first dimension)."""
    n = n_points(data)
    device = next(iter(data.values())).device
    order = (
        torch.randperm(n, generator=generator, device="cpu").to(device)
        if shuffle
        else torch.arange(n, device=device)
    )
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield {k: v.index_select(0, index) for k, v in data.items()}


@torch.no_grad()
def evaluate_loss(module: Network, data: Batch, batch_size: int) -> float:
    """Mean loss over ``data`` in evaluation mode (dropout off), weighted by batch size. The
    batch losses stay on the device and are read once."""
    was_training = module.training
    module.eval()
    losses, sizes = [], []
    for batch in iterate_minibatches(data, batch_size, shuffle=False):
        losses.append(module.loss(batch, None)[0].detach())
        sizes.append(n_points(batch))
    module.train(was_training)
    weighted = torch.stack(losses).cpu().double() * torch.tensor(sizes, dtype=torch.float64)
    return float(weighted.sum()) / sum(sizes)


Loss = tuple[torch.Tensor, Mapping[str, torch.Tensor | float]]
"""What a network's ``loss`` returns: the scalar loss and its named parts."""
LossStep = Callable[[Batch, Progress], Loss]
"""A training step's forward and loss: ``module.loss`` as the training settings run it."""


class CompileError(RuntimeError):
    """torch.compile could not compile a network's loss step (the run is recorded as failed)."""


def loss_step(module: Network, config: TrainConfig) -> LossStep:
    """The forward and loss of ``module``'s training steps as ``config`` asks.

    precision "bfloat16": under ``torch.autocast`` to bfloat16 on the parameters' device type;
    parameters, gradients and Adam's state stay float32. compile: through ``torch.compile``
    (inductor) with ``fallback_random``, so that its random draws (reparameterisation noise,
    dropout) are eager torch's and the losses match the eager step's within float tolerance. A
    compilation failure raises :class:`CompileError` naming the network. The validation loss is
    always computed eagerly in float32 (:func:`evaluate_loss`).
    """
    step: LossStep = module.loss
    if config.precision == "bfloat16":
        device_type = next(iter(module.parameters())).device.type

        def autocast_step(batch: Batch, progress: Progress) -> Loss:
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return module.loss(batch, progress)

        step = autocast_step
    if not config.compile:
        return step
    compiled = torch.compile(step, options={"fallback_random": True})
    name = type(module).__name__

    def compiled_step(batch: Batch, progress: Progress) -> Loss:
        try:
            return compiled(batch, progress)
        except torch._dynamo.exc.TorchDynamoException as error:
            raise CompileError(
                f"torch.compile of {name}'s loss step failed: {error}. Train it without "
                "compiling (no --compile; train.compile: false)."
            ) from error

    return compiled_step


def make_optimizer(module: Network, config: TrainConfig) -> torch.optim.Adam:
    """Adam over the trainable parameters of ``module``, fused into one kernel where it can be."""
    params = [p for p in module.parameters() if p.requires_grad]
    # The fused kernel is ~10x cheaper than the per-tensor loop on CPU (a third of a small
    # model's step otherwise); other devices fall back to the multi-tensor implementation.
    if params[0].device.type in ("cpu", "cuda"):
        return torch.optim.Adam(params, lr=config.lr, amsgrad=config.amsgrad, fused=True)
    return torch.optim.Adam(params, lr=config.lr, amsgrad=config.amsgrad, foreach=True)


@dataclass(frozen=True)
class EpochLosses:
    """The losses of one training epoch: ``means`` of the loss and of its named parts over the
    batches, and ``first``, the loss of the first batch, computed before its step."""

    means: dict[str, float]
    first: float


def train_epoch(
    module: Network,
    optimizer: torch.optim.Optimizer,
    data: Batch,
    batch_size: int,
    generator: torch.Generator | None = None,
    epoch: int = 1,
    epochs: int = 1,
    step: LossStep | None = None,
) -> EpochLosses:
    """One pass of Adam steps over shuffled mini-batches of ``data``, epoch ``epoch`` of
    ``epochs`` (what the loss is told as its :class:`Progress`); its losses. ``step`` computes a
    batch's loss (None: ``module.loss``; see :func:`loss_step`).

    The host reads the losses once, at the end of the epoch (on a GPU a read per step would stall
    the step queue). A non-finite loss raises :class:`DivergedError` naming the epoch, the first
    bad batch and that batch's parts, also when the non-finite parameters it left make a later
    batch fail with another error.
    """
    module.train()
    rows: list[torch.Tensor] = []
    names: tuple[str, ...] = ("loss",)
    steps_per_epoch = math.ceil(n_points(data) / batch_size)
    first_step = (epoch - 1) * steps_per_epoch
    try:
        for index, batch in enumerate(iterate_minibatches(data, batch_size, generator)):
            progress = Progress(epoch, first_step + index, steps_per_epoch, epochs)
            loss, parts = (step or module.loss)(batch, progress)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            names = ("loss", *parts)
            rows.append(
                torch.stack(
                    [
                        loss.detach().float(),
                        *(
                            torch.as_tensor(v, device=loss.device).detach().float()
                            for v in parts.values()
                        ),
                    ]
                )
            )
    except Exception as error:
        if rows and (divergence := first_divergence(torch.stack(rows).cpu(), names, epoch)):
            raise divergence from error
        raise
    values = torch.stack(rows).cpu().double()  # (batches, 1 + parts)
    divergence = first_divergence(values, names, epoch)
    if divergence is not None:
        raise divergence
    return EpochLosses(dict(zip(names, values.mean(0).tolist())), float(values[0, 0]))


def first_divergence(
    values: torch.Tensor, names: tuple[str, ...], epoch: int
) -> DivergedError | None:
    """The error for the first batch whose loss is not finite, or None.

    values: (batches, 1 + parts) on the host, each row a batch's loss then its parts in the order
    of ``names``.
    """
    finite = torch.isfinite(values[:, 0])
    if bool(finite.all()):
        return None
    bad = int((~finite).nonzero()[0])
    loss, *parts = values[bad].tolist()
    return DivergedError(
        f"loss became {loss} at epoch {epoch}, batch {bad + 1}; parts: "
        + ", ".join(f"{k}={v:.4g}" for k, v in zip(names[1:], parts))
        + ". Lower the learning rate or check the data scale."
    )


class Trainer:
    """Adam on mini-batches with early stopping on the validation loss and divergence
    detection."""

    def __init__(self, config: TrainConfig, on_epoch: EpochCallback | None = None):
        self.config = config
        self.on_epoch = on_epoch

    def fit(self, module: Network, train: Batch, valid: Batch | None = None) -> FitReport:
        config = self.config
        torch.manual_seed(config.seed)
        # Near-zero importance weights make denormal arithmetic (2x slower backward on CPU).
        torch.set_flush_denormal(True)
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = make_optimizer(module, config)
        step = loss_step(module, config)
        report = FitReport()
        best_state = None
        best = math.inf
        start = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            losses = train_epoch(
                module, optimizer, train, config.batch_size, generator, epoch, config.epochs, step
            )
            if epoch == 1:
                report.initial_loss = losses.first
            row = {"epoch": epoch, **losses.means}
            if valid is not None:
                row["valid_loss"] = evaluate_loss(module, valid, config.eval_batch_size)
                if not math.isfinite(row["valid_loss"]):
                    raise DivergedError(
                        f"validation loss became {row['valid_loss']} at epoch {epoch}"
                    )
            report.history.append(row)
            monitored = row.get("valid_loss", row["loss"])
            if monitored < best:
                best, report.best_epoch = monitored, epoch
                best_state = copy.deepcopy(module.state_dict())
            report.epochs = epoch
            if self.on_epoch is not None:
                self.on_epoch(epoch, config.epochs, row)
            if config.patience is not None and epoch - report.best_epoch >= config.patience:
                report.stopped_by = "early_stopping"
                break
            # At the last epoch the cap ends training whatever the clock says: "epochs".
            out_of_time = (
                config.max_seconds is not None and time.perf_counter() - start > config.max_seconds
            )
            if out_of_time and epoch < config.epochs:
                report.stopped_by = "time_budget"
                break
        final = report.history[-1]["loss"]
        if exploded(report.initial_loss, final):
            raise DivergedError(
                f"training loss exploded: {final:.4g} at epoch {report.epochs}, from "
                f"{report.initial_loss:.4g} before training (more than {EXPLOSION_FACTOR:g} "
                "times that magnitude above it). Lower the learning rate or check the data scale."
            )
        if best_state is not None:
            module.load_state_dict(best_state)
        report.best_valid_loss = best
        report.seconds = time.perf_counter() - start
        module.eval()
        return report
