"""The interface every model implements, and the torch machinery most models share.

Arrays cross the interface as numpy; torch stays inside. ``xO`` is a dict of the observed
modalities, name -> (n, d_m) float32 array.

Capabilities a model declares:
- "classify": ``predict_proba`` is the model's own classifier (otherwise the suite's downstream
  classifier is trained on ``represent``).
- "generate": ``generate`` returns the missing modalities from ``xO``.
- "posteriors": ``posteriors`` returns Gaussian statistics for the collapse analysis.
"""

from __future__ import annotations

import math
import os
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np
import torch
from torch import nn

from mmbench.config import ModelConfig, build_config
from mmbench.stats import GaussianStats, PosteriorStats
from mmbench.trainer import EpochCallback, FitReport, Network, TrainConfig, Trainer, resolve_device
from mmbench.views import Views

Arrays = Mapping[str, np.ndarray]


class CapabilityError(NotImplementedError):
    """The model does not offer this verb (see its ``capabilities``)."""


@dataclass(frozen=True)
class DataSpec:
    """The shapes a network is built for; kept in checkpoints so a model can be rebuilt."""

    observed: dict[str, int]
    missing: dict[str, int]
    likelihoods: dict[str, str]
    n_classes: int
    multilabel: bool

    @classmethod
    def from_views(cls, views: Views, n_classes: int | None = None) -> DataSpec:
        if n_classes is None:
            n_classes = views.labels.shape[1] if views.multilabel else int(views.labels.max()) + 1
        return cls(
            observed={m: views.dim(m) for m in views.observed},
            missing={m: views.dim(m) for m in views.missing},
            likelihoods={m: views.modality(m).likelihood for m in views.data},
            n_classes=n_classes,
            multilabel=views.multilabel,
        )

    @property
    def observed_dim(self) -> int:
        return sum(self.observed.values())

    @property
    def missing_dim(self) -> int:
        return sum(self.missing.values())

    @property
    def dims(self) -> dict[str, int]:
        """The width of every modality, the observed ones first."""
        return {**self.observed, **self.missing}

    @property
    def modalities(self) -> tuple[str, ...]:
        """Every modality: the observed ones, then the missing ones."""
        return tuple(self.dims)

    @property
    def gaussian_missing(self) -> list[str]:
        """The missing modalities with a Gaussian likelihood (those with a decoder variance)."""
        return [m for m in self.missing if self.likelihoods[m] == "gaussian"]

    def per_modality(self, setting: Any, default: Any, field: str) -> dict[str, Any]:
        """A hyper-parameter's value for every modality: ``setting`` for all, ``default`` for all
        when it is None, or, when it is a mapping modality name -> value, its value and
        ``default`` for the modalities it does not name. A name that is not a modality of the
        data is an error naming ``field``."""
        if setting is None:
            return {m: default for m in self.modalities}
        if not isinstance(setting, Mapping):
            return {m: setting for m in self.modalities}
        unknown = sorted(set(setting) - set(self.modalities))
        if unknown:
            raise ValueError(
                f"{field} names {unknown}, which are not modalities of the data "
                f"(allowed: {list(self.modalities)})"
            )
        return {m: setting.get(m, default) for m in self.modalities}


ConfigT = TypeVar("ConfigT", bound=ModelConfig)
NetworkT = TypeVar("NetworkT", bound=Network)


def type_arguments(cls: type) -> list[type]:
    """The classes given as type arguments in the bases written in ``cls``'s class statement,
    e.g. [CMMDConfig, CMMDNetwork] for ``class CMMD(TorchModel[CMMDConfig, CMMDNetwork])``."""
    return [
        arg
        for base in cls.__dict__.get("__orig_bases__", ())
        for arg in typing.get_args(base)
        if isinstance(arg, type)
    ]


class MultimodalModel(ABC, Generic[ConfigT]):
    """The contract: hyper-parameters given by keyword, validated into ``config``, an instance of
    the model's ``config_class``, then ``fit`` and the verbs.

    ``class MyModel(MultimodalModel[MyConfig])`` (or ``TorchModel[MyConfig, MyNetwork]``) sets
    ``config_class`` (and ``network_class``); a subclass of a model sets them by assignment.
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    config: ConfigT

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        for arg in type_arguments(cls):
            if issubclass(arg, ModelConfig):
                cls.config_class = arg

    def __init__(self, **params: Any):
        self.config = cast(ConfigT, build_config(self.config_class, params, self.name))

    def unsupported(self, spec: DataSpec) -> str | None:
        """Why the model cannot be trained on data of this shape, or None when it can (e.g. a
        model for two modalities only says so for three)."""
        return None

    @abstractmethod
    def fit(
        self,
        train: Views,
        valid: Views | None = None,
        *,
        trainer: TrainConfig = TrainConfig(),
        n_classes: int | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> FitReport:
        """Train on ``train`` (all modalities and labels), early-stopping on ``valid``."""

    @abstractmethod
    def represent(self, xO: Arrays) -> np.ndarray:
        """The representation z used downstream, (n, d_z), from the observed modalities only."""

    def predict_proba(self, xO: Arrays) -> np.ndarray:
        """Class probabilities (n, n_classes) or per-label probabilities for multi-label data."""
        raise CapabilityError(f"{self.name} has no classifier; use the downstream protocol")

    def generate(self, xO: Arrays) -> dict[str, np.ndarray]:
        """The mean of p(xM | xO) for each missing modality, name -> (n, d_m)."""
        raise CapabilityError(f"{self.name} cannot generate missing modalities")

    def posteriors(self, views: Views) -> PosteriorStats:
        """Gaussian statistics of the latent distributions at the points of ``views``."""
        raise CapabilityError(f"{self.name} has no Gaussian posteriors")

    def diagnostics(self) -> dict[str, Any]:
        """Facts about the fitted model that a run record should keep (JSON-able), e.g. held-out
        canonical correlations. Empty by default."""
        return {}

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters, every one of them, as JSON-able values (sklearn's name)."""
        return self.config.model_dump(mode="json")

    def save(self, path: str | os.PathLike) -> None:
        raise CapabilityError(f"{self.name} cannot be saved")


class TorchModel(MultimodalModel[ConfigT], Generic[ConfigT, NetworkT]):
    """A model whose parameters live in one ``nn.Module`` with a ``loss(batch, progress)`` method
    (see :mod:`mmbench.trainer`).

    A subclass ``MyModel(TorchModel[MyConfig, MyNetwork])`` gets networks built as
    ``MyNetwork(spec, config)`` for data of the shape ``spec`` (see :meth:`build`), and implements
    the verbs and, when it declares "posteriors", :meth:`batch_posteriors`.
    This class supplies fitting with the shared :class:`Trainer`, batched evaluation without
    autograd, tensors on the device, and checkpoints that load with
    ``torch.load(weights_only=True)``.

    A batch is a dict with one entry per modality name (float32, (b, d_m)) and ``"y"``: int64
    (b,) class ids, or float32 (b, L) multi-label indicators.
    """

    network_class: ClassVar[type[nn.Module]]
    module_: NetworkT
    spec_: DataSpec

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        for arg in type_arguments(cls):
            if issubclass(arg, nn.Module):
                cls.network_class = arg

    def build(self, spec: DataSpec) -> NetworkT:
        """A fresh network of ``self.config`` for data of this shape."""
        return cast(NetworkT, self.network_class(spec, self.config))

    def fit(
        self,
        train: Views,
        valid: Views | None = None,
        *,
        trainer: TrainConfig = TrainConfig(),
        n_classes: int | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> FitReport:
        self.device_ = resolve_device(trainer.device)
        torch.manual_seed(trainer.seed)
        self.spec_ = DataSpec.from_views(train, n_classes)
        reason = self.unsupported(self.spec_)
        if reason is not None:
            raise ValueError(f"{self.name}: {reason}")
        self.module_ = self.build(self.spec_).to(self.device_)
        self.eval_batch_size_ = trainer.eval_batch_size
        report = Trainer(trainer, on_epoch).fit(
            self.module_, self.tensors(train), None if valid is None else self.tensors(valid)
        )
        self.after_training(train, valid)
        return report

    def after_training(self, train: Views, valid: Views | None) -> None:
        """Fit what follows the trained network (e.g. DCCA's final linear CCA on its outputs);
        nothing by default."""

    def tensors(self, views: Views) -> dict[str, torch.Tensor]:
        """Every modality and the labels of ``views`` as tensors on the model's device."""
        arrays = {**views.data, "y": views.labels}
        return {
            k: as_batch_tensor(k, a, views.multilabel).to(self.device_) for k, a in arrays.items()
        }

    def eval_batches(self, arrays: Arrays) -> Iterator[dict[str, torch.Tensor]]:
        """Large slices of ``arrays`` (modalities, and labels under "y") as tensors on the
        device, with the network in evaluation mode; iterate under ``torch.no_grad()``."""
        self.module_.eval()
        tensors = {k: as_batch_tensor(k, a, self.spec_.multilabel) for k, a in arrays.items()}
        n = next(iter(tensors.values())).shape[0]
        for start in range(0, n, self.eval_batch_size_):
            yield {
                k: t[start : start + self.eval_batch_size_].to(self.device_)
                for k, t in tensors.items()
            }

    @torch.no_grad()
    def batched(self, fn: Callable[[dict[str, torch.Tensor]], Any], arrays: Arrays) -> Any:
        """Apply ``fn(batch of tensors) -> tensor or dict of tensors`` in evaluation mode over
        large slices of ``arrays`` and concatenate the results as numpy."""
        outputs = []
        for batch in self.eval_batches(arrays):
            out = fn(batch)
            if isinstance(out, dict):
                outputs.append({k: v.cpu().numpy() for k, v in out.items()})
            else:
                outputs.append(out.cpu().numpy())
        if isinstance(outputs[0], dict):
            return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
        return np.concatenate(outputs)

    def batch_posteriors(self, batch: dict[str, torch.Tensor]) -> PosteriorTensors:
        """The posterior statistics at the points of one batch (modalities and labels)."""
        raise CapabilityError(f"{self.name} has no Gaussian posteriors")

    @torch.no_grad()
    def posteriors(self, views: Views) -> PosteriorStats:
        """:meth:`batch_posteriors` over large slices of ``views``, concatenated."""
        per_batch = [
            self.batch_posteriors(batch).numpy().to_arrays()
            for batch in self.eval_batches({**views.data, "y": views.labels})
        ]
        return PosteriorStats.from_arrays(
            {k: np.concatenate([arrays[k] for arrays in per_batch]) for k in per_batch[0]}
        )

    def save(self, path: str | os.PathLike) -> None:
        torch.save(
            {
                "model": self.name,
                "params": self.get_params(),
                "spec": asdict(self.spec_),
                "state_dict": self.module_.state_dict(),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> TorchModel:
        """Rebuild a saved model; loads with ``weights_only=True`` (no pickled code)."""
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        model = cls(**checkpoint["params"])
        model.device_ = resolve_device(device)
        model.eval_batch_size_ = TrainConfig().eval_batch_size
        model.spec_ = DataSpec(**checkpoint["spec"])
        model.module_ = model.build(model.spec_).to(model.device_)
        model.module_.load_state_dict(checkpoint["state_dict"])
        model.module_.eval()
        return model


def concat(batch: Mapping[str, torch.Tensor], names: Iterable[str]) -> torch.Tensor:
    """Concatenate the modalities ``names`` of a batch along features: (b, sum of d_m)."""
    chosen = tuple(names)
    if len(chosen) == 1:  # no copy for the common single-modality case
        return batch[chosen[0]]
    return torch.cat([batch[m] for m in chosen], dim=1)


def as_batch_tensor(key: str, array: np.ndarray, multilabel: bool) -> torch.Tensor:
    """A modality as float32; the labels (key "y") as int64 class ids, or float32 indicators
    when ``multilabel``."""
    if key != "y":
        return torch.as_tensor(array, dtype=torch.float32)
    labels = torch.as_tensor(array)
    return labels.float() if multilabel else labels.long()


def one_hot_labels(y: torch.Tensor, spec: DataSpec) -> torch.Tensor:
    """Class ids (b,) as one-hot (b, K) floats; multi-label indicators pass through."""
    if spec.multilabel:
        return y
    return nn.functional.one_hot(y, spec.n_classes).float()


@dataclass(frozen=True)
class PosteriorTensors:
    """:class:`PosteriorStats` of one batch, as tensors: (mean, logvar) pairs, each (b, d), and
    the decoder log-variances (b, d_xM)."""

    z_given_xO: tuple[torch.Tensor, torch.Tensor]
    z_given_xM: tuple[torch.Tensor, torch.Tensor] | None = None
    decoder_logvar: torch.Tensor | None = None

    def numpy(self) -> PosteriorStats:
        def stats(pair):
            return None if pair is None else GaussianStats(*(t.cpu().numpy() for t in pair))

        logvar = None if self.decoder_logvar is None else self.decoder_logvar.cpu().numpy()
        return PosteriorStats(stats(self.z_given_xO), stats(self.z_given_xM), logvar)


class ClosedFormModel(MultimodalModel[ConfigT]):
    """A model fitted in one closed-form step (no trainer, no iterations): a subclass implements
    :meth:`fit_closed_form`. Its fit report has one history row, in the trainer's convention,
    and stops by "closed_form"."""

    def fit(
        self,
        train: Views,
        valid: Views | None = None,
        *,
        trainer: TrainConfig = TrainConfig(),
        n_classes: int | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> FitReport:
        """Closed form on ``train`` (``valid`` where something is chosen or measured);
        ``trainer`` is unused. ``on_epoch`` is told the row when it has a loss (a progress
        display reads it)."""
        start = time.perf_counter()
        row = {"epoch": 1, **self.fit_closed_form(train, valid)}
        report = FitReport(
            epochs=1,
            best_epoch=1,
            stopped_by="closed_form",
            history=[row],
            best_valid_loss=row.get("valid_loss", math.nan),
        )
        report.seconds = time.perf_counter() - start
        if on_epoch is not None and "loss" in row:
            on_epoch(1, 1, row)
        return report

    @abstractmethod
    def fit_closed_form(self, train: Views, valid: Views | None) -> dict[str, float]:
        """Fit on ``train``; return the history row's losses, {"loss": ..., "valid_loss": ...}
        (the latter only with ``valid``), or {} when nothing is fitted."""


class LatentMeanModel(TorchModel[ConfigT, NetworkT]):
    """A :class:`TorchModel` whose verbs read one point, the mean of z given xO: ``represent``
    is that mean and ``generate`` the means of the missing modalities' decoders there.

    A subclass supplies :meth:`latent_mean` and, when its network has no ``decoders`` (modality
    name -> module of z returning a distribution), :meth:`decode_missing`.
    """

    @abstractmethod
    def latent_mean(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mean of z given the observed modalities of one batch, (b, d_z)."""

    def decode_missing(
        self, batch: dict[str, torch.Tensor], z: torch.Tensor
    ) -> Mapping[str, torch.distributions.Distribution]:
        """p(x_m | z) of every missing modality at z (b, d_z), from the network's ``decoders``."""
        network = cast(nn.Module, self.module_)
        decoders = cast(nn.ModuleDict, network.get_submodule("decoders"))
        return {m: decoders[m](z) for m in self.spec_.missing}

    def represent(self, xO: Arrays) -> np.ndarray:
        """The mean of z given xO (:meth:`latent_mean`), (n, d_z)."""
        return self.batched(self.latent_mean, xO)

    def generate(self, xO: Arrays) -> dict[str, np.ndarray]:
        """The means of the missing modalities' decoders at the mean of z given xO, name ->
        (n, d_m)."""

        def decoder_means(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            decoded = self.decode_missing(batch, self.latent_mean(batch))
            return {m: dist.mean for m, dist in decoded.items()}

        return self.batched(decoder_means, xO)
