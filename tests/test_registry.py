"""The registry finds models through the ``mmbench.models`` entry points only, and says clearly
when none is registered, a name is unknown or registered twice, or an entry point is not a
model."""

from importlib.metadata import EntryPoint

import pytest

from baselines.mxo import MxO, MxOConfig
from mmbench import registry
from mmbench.registry import RegistryError, available_models, config_class, make_model, model_class


def entry_points_are(monkeypatch, *entries):
    monkeypatch.setattr(
        registry,
        "entry_points",
        lambda group: [EntryPoint(name, value, group) for name, value in entries],
    )


def test_the_builtin_models_come_from_mmbench_s_entry_points():
    assert model_class("mxo") is MxO and config_class("mxo") is MxOConfig
    assert make_model("mxo", {"latent_dim": 3}).config == MxOConfig(latent_dim=3)


def test_no_registered_model_says_to_install_mmbench(monkeypatch):
    entry_points_are(monkeypatch)
    with pytest.raises(RegistryError, match=r"mmbench is not installed .*pip install -e \."):
        available_models()


def test_a_name_registered_twice_is_an_error_naming_both(monkeypatch):
    entry_points_are(monkeypatch, ("mxo", "baselines.mxo:MxO"), ("mxo", "other.pkg:MxO"))
    with pytest.raises(
        RegistryError, match=r"'mxo' is registered twice .*baselines.mxo:MxO and other.pkg:MxO"
    ):
        model_class("mxo")


def test_an_entry_point_that_is_not_a_model_is_an_error(monkeypatch):
    entry_points_are(monkeypatch, ("config", "baselines.mxo:MxOConfig"))
    with pytest.raises(TypeError, match=r"config = 'baselines.mxo:MxOConfig' is not a subclass"):
        model_class("config")


def test_unknown_names_list_what_is_registered():
    with pytest.raises(KeyError, match=r"unknown model 'nosuch'; available: .*cmmd"):
        model_class("nosuch")
    with pytest.raises(
        TypeError,
        match=r"no hyper-parameter\(s\) \['omegaa'\]; allowed: .*"
        "'omega'",
    ):
        make_model("cmmd", {"omegaa": 0.1})
