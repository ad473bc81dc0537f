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

import inspect
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from mmbench.stats import GaussianStats, PosteriorStats
from mmbench.trainer import EpochCallback, FitReport, TrainConfig, Trainer, resolve_device
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
    def from_views(cls, views: Views, n_classes: int | None = None) -> "DataSpec":
        if n_classes is None:
            n_classes = views.labels.shape[1] if views.multilabel else int(views.labels.max()) + 1
        return cls(observed={m: views.dim(m) for m in views.observed},
                   missing={m: views.dim(m) for m in views.missing},
                   likelihoods={m: views.modality(m).likelihood for m in views.data},
                   n_classes=n_classes, multilabel=views.multilabel)

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
        """A hyper-parameter's value for every modality: ``setting`` for all, or, when it is a
        mapping modality name -> value, its value and ``default`` for the modalities it does not
        name. A name that is not a modality of the data is an error naming ``field``."""
        if not isinstance(setting, Mapping):
            return {m: setting for m in self.modalities}
        unknown = sorted(set(setting) - set(self.modalities))
        if unknown:
            raise ValueError(f"{field} names {unknown}, which are not modalities of the data "
                             f"(allowed: {list(self.modalities)})")
        return {m: setting.get(m, default) for m in self.modalities}


def init_parameters(cls: type) -> dict[str, Any]:
    """The hyper-parameters of a model class and their defaults: the arguments of its
    ``__init__`` and, when that passes ``**params`` on to its parent (a variant that only changes
    defaults), the parent's."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        for p in parameters:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found.setdefault(p.name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return found


class MultimodalModel(ABC):
    """The contract: sklearn-style hyper-parameters in ``__init__``, then ``fit`` and the verbs."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def fit(self, train: Views, valid: Views | None = None, *,
            trainer: TrainConfig = TrainConfig(), n_classes: int | None = None,
            on_epoch: EpochCallback | None = None) -> FitReport:
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
        """The hyper-parameters given to ``__init__`` (sklearn's convention)."""
        return {p: getattr(self, p) for p in init_parameters(type(self))}

    def save(self, path) -> None:
        raise CapabilityError(f"{self.name} cannot be saved")


class TorchModel(MultimodalModel):
    """A model whose parameters live in one ``nn.Module`` with a ``loss(batch)`` method.

    Subclasses implement ``build(spec) -> nn.Module`` and the verbs; this class supplies fitting
    with the shared :class:`Trainer`, batched evaluation without autograd, tensors on the device,
    and checkpoints that load with ``torch.load(weights_only=True)``.

    A batch is a dict with one entry per modality name (float32, (b, d_m)) and ``"y"``: int64
    (b,) class ids, or float32 (b, L) multi-label indicators.
    """

    module_: nn.Module
    spec_: DataSpec

    @abstractmethod
    def build(self, spec: DataSpec) -> nn.Module:
        """A fresh network for data of this shape."""

    def fit(self, train: Views, valid: Views | None = None, *,
            trainer: TrainConfig = TrainConfig(), n_classes: int | None = None,
            on_epoch: EpochCallback | None = None) -> FitReport:
        self.device_ = resolve_device(trainer.device)
        torch.manual_seed(trainer.seed)
        self.spec_ = DataSpec.from_views(train, n_classes)
        self.module_ = self.build(self.spec_).to(self.device_)
        self.eval_batch_size_ = trainer.eval_batch_size
        report = Trainer(trainer, on_epoch).fit(
            self.module_, self.tensors(train), None if valid is None else self.tensors(valid))
        return report

    def tensors(self, views: Views) -> dict[str, torch.Tensor]:
        """Every modality and the labels of ``views`` as tensors on the model's device."""
        batch = {m: torch.as_tensor(a, dtype=torch.float32, device=self.device_)
                 for m, a in views.data.items()}
        labels = torch.as_tensor(views.labels, device=self.device_)
        batch["y"] = labels.float() if views.multilabel else labels.long()
        return batch

    @torch.no_grad()
    def batched(self, fn, arrays: Arrays) -> Any:
        """Apply ``fn(batch of tensors) -> tensor or dict of tensors`` in evaluation mode over
        large slices of ``arrays`` and concatenate the results as numpy."""
        self.module_.eval()
        tensors = {m: torch.as_tensor(a, dtype=torch.float32) for m, a in arrays.items()}
        n = next(iter(tensors.values())).shape[0]
        outputs = []
        for start in range(0, n, self.eval_batch_size_):
            batch = {m: t[start:start + self.eval_batch_size_].to(self.device_)
                     for m, t in tensors.items()}
            out = fn(batch)
            if isinstance(out, dict):
                outputs.append({k: v.cpu().numpy() for k, v in out.items()})
            else:
                outputs.append(out.cpu().numpy())
        if isinstance(outputs[0], dict):
            return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
        return np.concatenate(outputs)

    def save(self, path) -> None:
        torch.save({"model": self.name, "params": self.get_params(), "spec": asdict(self.spec_),
                    "state_dict": self.module_.state_dict()}, path)

    @classmethod
    def load(cls, path, device: str = "cpu") -> "TorchModel":
        """Rebuild a saved model; loads with ``weights_only=True`` (no pickled code)."""
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        model = cls(**checkpoint["params"])
        model.device_ = resolve_device(device)
        model.eval_batch_size_ = TrainConfig.eval_batch_size
        model.spec_ = DataSpec(**checkpoint["spec"])
        model.module_ = model.build(model.spec_).to(model.device_)
        model.module_.load_state_dict(checkpoint["state_dict"])
        model.module_.eval()
        return model


def concat(batch: Mapping[str, torch.Tensor], names) -> torch.Tensor:
    """Concatenate the modalities ``names`` of a batch along features: (b, sum of d_m)."""
    names = tuple(names)
    if len(names) == 1:  # no copy for the common single-modality case
        return batch[names[0]]
    return torch.cat([batch[m] for m in names], dim=1)


def split_features(x: torch.Tensor, dims: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`concat`: name -> (b, d_m) slices of x (b, sum d_m)."""
    return dict(zip(dims, torch.split(x, list(dims.values()), dim=1)))


def one_hot_labels(y: torch.Tensor, spec: DataSpec) -> torch.Tensor:
    """Class ids (b,) as one-hot (b, K) floats; multi-label indicators pass through."""
    if spec.multilabel:
        return y
    return nn.functional.one_hot(y, spec.n_classes).float()
