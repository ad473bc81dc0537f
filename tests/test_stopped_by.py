"""Every record says why training stopped: patience, the epoch cap, the time budget, or a
closed form; a run that reaches the cap says so even when its clock ran out on the last epoch."""

import pytest
import torch
from torch import nn

from baselines.cca import CCA
from mmbench.data import load_dataset
from mmbench.records import FitSummary
from mmbench.trainer import TrainConfig, Trainer


class Constant(nn.Module):
    """A loss that never improves after the first epoch (a parameter with no gradient pull)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def loss(self, batch, progress):
        return 0.0 * self.w + batch["x"].mean(), {}


DATA = {"x": torch.ones(10, 1)}


@pytest.mark.parametrize(
    "settings, stopped_by, epochs",
    [
        ({"epochs": 4, "patience": None}, "epochs", 4),  # the cap
        ({"epochs": 4, "patience": 10}, "epochs", 4),  # patience longer than the cap
        ({"epochs": 50, "patience": 3}, "early_stopping", 4),  # best at 1, then 3 without better
        ({"epochs": 3, "patience": 2}, "early_stopping", 3),  # patience runs out at the cap
        ({"epochs": 50, "max_seconds": 1e-9}, "time_budget", 1),  # out of time before the cap
        ({"epochs": 1, "max_seconds": 1e-9}, "epochs", 1),  # out of time at the cap
    ],
)
def test_the_trainer_says_why_it_stopped(settings, stopped_by, epochs):
    config = TrainConfig(batch_size=10, **settings)
    report = Trainer(config).fit(Constant(), DATA, DATA)
    assert (report.stopped_by, report.epochs) == (stopped_by, epochs)
    summary = FitSummary(
        report.epochs, report.best_epoch, report.best_valid_loss, report.stopped_by, report.history
    )
    assert summary.hit_cap == (stopped_by == "epochs")


def test_a_closed_form_fit_says_so():
    splits = load_dataset("synthetic", n_train=200, n_valid=100, n_test=100)
    report = CCA(n_components=2).fit(splits.train, splits.valid)
    assert (report.stopped_by, report.epochs) == ("closed_form", 1)
