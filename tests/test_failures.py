"""Bad input gets one clear error; a diverging run is recorded as diverged and the suite goes on."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.mxo import MxO, MxONetwork
from mmbench.cli import app
from mmbench.data import load_dataset
from mmbench.registry import make_model
from mmbench.store import RunStore
from mmbench.trainer import DivergedError, TrainConfig
from mmbench.views import Views


class ExplodingNetwork(MxONetwork):
    def loss(self, batch, progress=None):
        loss, parts = super().loss(batch, progress)
        return loss * torch.tensor(float("nan")), parts


class ExplodingModel(MxO):
    """M-xO whose loss is NaN: stands for a diverging run."""

    name = "exploding"

    def build(self, spec):
        return ExplodingNetwork(spec, self.config)


@pytest.fixture
def exploding_registered(register_model):
    """The exploding model in the registry for one test only (not for the contract tests)."""
    register_model("exploding", f"{__name__}:ExplodingModel")


SUITE = """
name: failing
seeds: [0]
data: {name: synthetic, options: {n_train: 200, n_valid: 100, n_test: 100}}
train: {epochs: 2, batch_size: 50, lr: 1.0e-3}
models:
  - {name: exploding, params: {hidden: [8], latent_dim: 4, classifier_hidden: [4]}}
  - {name: mxo, params: {hidden: [8], latent_dim: 4, classifier_hidden: [4]}}
"""


def test_diverging_run_is_recorded_as_diverged_and_the_suite_goes_on(
    tmp_path, exploding_registered
):
    suite = tmp_path / "failing.yaml"
    suite.write_text(SUITE)
    result = CliRunner().invoke(app, ["run", str(suite), "--results", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output  # a run failed
    records = {r.coordinates.model: r for r in RunStore(tmp_path / "out").records()}
    assert records["exploding"].status == "diverged"
    assert "DivergedError" in records["exploding"].error
    assert "epoch 1, batch 1" in records["exploding"].error
    assert records["mxo"].ok


def test_trainer_raises_on_nan_with_the_epoch_and_parts():
    splits = load_dataset("synthetic", n_train=100, n_valid=50, n_test=50)
    message = r"loss became nan at epoch 1, batch 1; parts: classification=[0-9.]+\."
    with pytest.raises(DivergedError, match=message):
        ExplodingModel(hidden=(4,), latent_dim=2, classifier_hidden=()).fit(
            splits.train, trainer=TrainConfig(epochs=1, batch_size=50)
        )


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        (
            "name: x\ndata: {name: nosuch}\nmodels: [{name: mxo}]",
            "data.name: unknown data set 'nosuch'",
        ),
        (
            "name: x\ndata: {name: synthetic}\nmodels: [{name: nosuch}]",
            "models.0.name: unknown model 'nosuch'",
        ),
        (
            "name: x\ndata: {name: synthetic}\nmodels: [{name: cmmd, params: {omegaa: 1}}]",
            "has no hyper-parameter(s) ['omegaa']",
        ),
        (
            "name: x\ndata: {name: synthetic}\nmodels: [{name: mxo}]\ntrain: {epochs: 0}",
            "train.epochs: Input should be greater than or equal to 1",
        ),
        (
            "name: x\ndata: {name: synthetic}\nmodels: [{name: mxo}]\nseedz: [1]",
            "seedz: unknown field",
        ),
        ("name: [unclosed", "not valid YAML"),
    ],
)
def test_malformed_suites_name_the_file_and_field(tmp_path, yaml_text, expected):
    suite = tmp_path / "bad.yaml"
    suite.write_text(yaml_text)
    result = CliRunner().invoke(app, ["run", str(suite), "--dry-run"])
    assert result.exit_code == 2
    assert str(suite) in result.output.replace("\n", "")
    assert expected in result.output.replace("\n", "")


def test_unknown_names_and_options_list_what_is_allowed():
    with pytest.raises(KeyError, match=r"available: .*cmmd"):
        make_model("nosuch")
    with pytest.raises(TypeError, match=r"allowed: .*omega"):
        make_model("cmmd", {"omegaa": 0.1})
    with pytest.raises(KeyError, match=r"available: .*mnist_embedded"):
        load_dataset("nosuch")
    with pytest.raises(TypeError, match="no option"):
        load_dataset("synthetic", nosuch=1)


def test_views_reject_wrong_shapes_with_the_modality_named():
    labels = np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match="modality 'x2' has shape \\(3, 2\\)"):
        Views({"x1": np.zeros((4, 2)), "x2": np.zeros((3, 2))}, ("x1",), ("x2",), labels)
    with pytest.raises(ValueError, match="not in data"):
        Views({"x1": np.zeros((4, 2))}, ("x1",), ("x3",), labels)
    with pytest.raises(ValueError, match="both observed and missing"):
        Views({"x1": np.zeros((4, 2))}, ("x1",), ("x1",), labels)
