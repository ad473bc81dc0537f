"""Models by name: every model, built-in or a plug-in, registers in the ``mmbench.models`` entry
point group of its distribution's metadata, e.g. in its ``pyproject.toml``::

    [project.entry-points."mmbench.models"]
    mymodel = "mypkg.model:MyModel"

mmbench's own models are listed there in mmbench's ``pyproject.toml``, so the metadata exist only
once mmbench is installed (``pip install -e .`` in a checkout).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from mmbench.config import ModelConfig
from mmbench.model import MultimodalModel

GROUP = "mmbench.models"


class RegistryError(LookupError):
    """No model is registered, or two distributions register the same name."""


def _registered() -> dict[str, EntryPoint]:
    """The ``mmbench.models`` entry points by name."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            raise RegistryError(
                f"model {ep.name!r} is registered twice in the {GROUP!r} entry "
                f"points: {found[ep.name].value} and {ep.value}; uninstall one"
            )
        found[ep.name] = ep
    if not found:
        raise RegistryError(
            f"no models are registered in the {GROUP!r} entry points: mmbench "
            "is not installed in this environment; run `pip install -e .` in the "
            "checkout (again after editing pyproject.toml)"
        )
    return found


def available_models() -> list[str]:
    """The names of every registered model, sorted."""
    return sorted(_registered())


def builtin_models() -> list[str]:
    """The names of the models that mmbench itself registers (not plug-ins), sorted."""
    return sorted(
        name
        for name, ep in _registered().items()
        if ep.dist is not None and ep.dist.name == "mmbench"
    )


def model_class(name: str) -> type[MultimodalModel]:
    """The class registered as ``name``; a KeyError lists the registered names."""
    registered = _registered()
    if name not in registered:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(registered))}")
    cls = registered[name].load()
    if not (isinstance(cls, type) and issubclass(cls, MultimodalModel)):
        raise TypeError(
            f"the {GROUP!r} entry point {name} = {registered[name].value!r} is not "
            "a subclass of mmbench.model.MultimodalModel"
        )
    return cls


def config_class(name: str) -> type[ModelConfig]:
    """The config class that declares the hyper-parameters of model ``name``."""
    return model_class(name).config_class


def make_model(name: str, params: dict[str, Any] | None = None) -> MultimodalModel:
    """An unfitted model; unknown hyper-parameters are an error that lists the allowed ones, a bad
    value a :class:`mmbench.config.ConfigError` naming the field and what is allowed."""
    params = dict(params or {})
    allowed = config_class(name).model_fields
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TypeError(
            f"model {name!r} has no hyper-parameter(s) {unknown}; allowed: {sorted(allowed)}"
        )
    return model_class(name)(**params)
