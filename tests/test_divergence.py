"""A run whose training loss exploded is recorded as "diverged", not ok, with the reason; reports
leave it out and --retry-failed runs it again. Losses that are legitimately negative, or that rise
a little (an annealed KL weight), are not divergence."""

import math

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.config import TrainConfig
from mmbench.data import load_dataset
from mmbench.registry import make_model
from mmbench.store import RunStore
from mmbench.trainer import EXPLOSION_FACTOR, DivergedError, Trainer, exploded


@pytest.mark.parametrize(
    "initial, final, blew_up",
    [
        (2.23, 3.4e18, True),  # M-xO at lr 1e6: chance error, loss 1e18
        (2.23, 24.52, False),  # bound 2.23 + 10 x 2.23 = 24.53
        (2.23, 24.54, True),
        (-1.23, -3.4, False),  # DCCA: minus the correlations, falling
        (-1.23, 11.06, False),  # bound -1.23 + 10 x 1.23 = 11.07
        (-1.23, 11.08, True),
        (0.2, 10.1, False),  # near 0 the bound is at least 10 in absolute terms: 0.2 + 10
        (0.2, 10.3, True),
        (1000.0, 10999.0, False),
        (1000.0, 11001.0, True),
        (2.23, math.inf, True),
    ],
)
def test_exploded_is_the_documented_bound(initial, final, blew_up):
    assert EXPLOSION_FACTOR == 10
    assert exploded(initial, final) is blew_up


class ScriptedLoss(nn.Module):
    """A loss that follows ``curve(fraction of training done)`` (plus 0 x a parameter, so that
    the optimiser has something to step): the trainer's rule seen alone."""

    def __init__(self, curve):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.curve = curve

    def loss(self, batch, progress):
        fraction = 1.0 if progress is None else progress.fraction
        value = self.curve(fraction) + 0.0 * self.weight.sum()
        return value, {}


def fit(curve, epochs=5):
    data = {"x": torch.zeros(40, 1)}
    config = TrainConfig(epochs=epochs, batch_size=10, patience=None)
    return Trainer(config).fit(ScriptedLoss(curve), data)


def test_a_loss_that_rises_within_the_bound_is_not_divergence():
    # KL annealing: 100 at the start, 150 at the end (the KL term weighted in): not 10x worse
    report = fit(lambda t: 100.0 + 50.0 * t)
    assert report.initial_loss == 100.0
    # 5 epochs of 4 steps: the last epoch's steps are at fractions 0.8, 0.85, 0.9, 0.95
    assert report.history[-1]["loss"] == pytest.approx(100 + 50 * 0.875)


def test_a_loss_that_ends_far_above_the_untrained_models_is_divergence():
    with pytest.raises(DivergedError) as caught:
        fit(lambda t: 2.0 + 1e6 * t)
    # the last epoch's mean: 2 + 1e6 x 0.875 (see above)
    assert str(caught.value) == (
        "training loss exploded: 8.75e+05 at epoch 5, from 2 before training (more than 10 "
        "times that magnitude above it). Lower the learning rate or check the data scale."
    )


def test_a_loss_that_explodes_then_falls_but_stays_far_above_is_divergence():
    """The first epoch's mean is no reference: M-xO at lr 1e6 goes 5.5e25, 2e18, 3.4e18."""
    with pytest.raises(DivergedError, match="training loss exploded"):
        fit(lambda t: 2.0 if t == 0 else 1e25 * (1 - t) + 1e18)


def test_a_negative_loss_that_falls_is_not_divergence():
    """DCCA's loss is minus the canonical correlations: below 0 and falling."""
    splits = load_dataset("synthetic", n_train=200, n_valid=100, n_test=100)
    model = make_model("dcca", {"hidden": [8], "latent_dim": 2})
    report = model.fit(
        splits.train,
        splits.valid,
        trainer=TrainConfig(epochs=3, batch_size=200, lr=1e-3),
        n_classes=2,
    )
    assert report.initial_loss < 0 and report.history[-1]["loss"] < 0


SUITE = {
    "name": "divergence",
    "seeds": [0],
    "data": {"name": "synthetic", "options": {"n_train": 300, "n_valid": 100, "n_test": 100}},
    "train": {"epochs": 3, "batch_size": 100, "lr": 1.0e-3},
    "models": [
        {
            "name": "mxo",
            "label": "lr 1e6",
            "train": {"lr": 1.0e6},
            "params": {"hidden": [16], "latent_dim": 4, "classifier_hidden": [4]},
        },
        {
            "name": "mxo",
            "label": "lr 1e-3",
            "params": {"hidden": [16], "latent_dim": 4, "classifier_hidden": [4]},
        },
    ],
    "references": [],
}


def test_lr_1e6_is_recorded_diverged_left_out_of_reports_and_retried(tmp_path):
    suite = tmp_path / "divergence.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    results = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(suite), "--results", str(results)])
    assert first.exit_code == 1, first.output  # a run did not finish ok
    records = {r.label: r for r in RunStore(results).records()}
    diverged = records["lr 1e6"]
    assert diverged.status == "diverged" and not diverged.ok
    assert diverged.error.startswith("DivergedError: training loss exploded: ")
    assert "before training (more than 10 times that magnitude above it)" in diverged.error
    assert diverged.metrics == {}
    assert records["lr 1e-3"].ok
    assert "1 run(s) diverged: DivergedError: training loss" in first.output

    table = runner.invoke(app, ["table", str(results), "--no-paper", "--metric", "error_pct"])
    assert table.exit_code == 0 and "lr 1e-3" in table.output and "lr 1e6" not in table.output

    again = runner.invoke(app, ["run", str(suite), "--results", str(results)])
    assert "2 already done" in again.output
    retried = runner.invoke(app, ["run", str(suite), "--results", str(results), "--retry-failed"])
    assert retried.exit_code == 1 and "1 already done" in retried.output
    redone = {r.label: r for r in RunStore(results).records()}
    assert redone["lr 1e6"].status == "diverged"
    assert redone["lr 1e6"].started > diverged.finished
    assert redone["lr 1e-3"] == records["lr 1e-3"]

    # a selection in which no run finishes ok (a SLURM array task of the diverging run)
    alone = runner.invoke(
        app, ["run", str(suite), "--results", str(results), "--cell", "0", "--retry-failed"]
    )
    assert alone.exit_code == 1 and isinstance(alone.exception, SystemExit), alone.output
    assert "1 run(s) diverged: DivergedError" in alone.output
