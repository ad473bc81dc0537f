"""Models by name: the built-in ones, and third-party ones from the ``mmbench.models`` entry point
group (``[project.entry-points."mmbench.models"] mymodel = "mypkg.model:MyModel"``)."""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from mmbench.model import MultimodalModel, init_parameters

BUILTIN_MODELS = {
    "cmmd": "cmmd.model:CMMD",
    "mxo": "baselines.mxo:MxO",
    "cca": "baselines.cca:CCA",
    "dcca": "baselines.dcca:DCCA",
    "dccae": "baselines.dccae:DCCAE",
    "vcca": "baselines.vcca:VCCA",
    "vcca_private": "baselines.vcca:VCCAPrivate",
    "mvae": "baselines.mvae:MVAE",
    "mmvae_elbo": "baselines.mmvae:MMVAEELBO",
    "mmvae_iwae": "baselines.mmvae:MMVAEIWAE",
}


def register_model(name: str, target: str) -> None:
    """Make ``target`` ("module:Class") available as model ``name``."""
    BUILTIN_MODELS[name] = target


def available_models() -> list[str]:
    names = set(BUILTIN_MODELS)
    names.update(ep.name for ep in entry_points(group="mmbench.models"))
    return sorted(names)


def model_class(name: str) -> type[MultimodalModel]:
    if name in BUILTIN_MODELS:
        module, _, attr = BUILTIN_MODELS[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    for ep in entry_points(group="mmbench.models"):
        if ep.name == name:
            return ep.load()
    raise KeyError(f"unknown model {name!r}; available: {', '.join(available_models())}")


def hyperparameters(name: str) -> dict[str, Any]:
    """The model's hyper-parameters and their defaults."""
    return init_parameters(model_class(name))


def make_model(name: str, params: dict[str, Any] | None = None) -> MultimodalModel:
    """An unfitted model; unknown hyper-parameters are an error that lists the allowed ones."""
    params = dict(params or {})
    allowed = hyperparameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TypeError(f"model {name!r} has no hyper-parameter(s) {unknown}; "
                        f"allowed: {sorted(allowed)}")
    return model_class(name)(**params)
