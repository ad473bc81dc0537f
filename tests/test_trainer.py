"""The shared trainer: batches, early stopping, reproducibility; and the downstream protocol."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from baselines.mxo import MxO
from mmbench.data import load_dataset
from mmbench.downstream import fit_downstream
from mmbench.metrics import error_pct
from mmbench.trainer import DivergedError, Progress, TrainConfig, Trainer, iterate_minibatches


def test_minibatches_are_a_partition_of_the_data():
    data = {"x": torch.arange(103).float()[:, None], "y": torch.arange(103)}
    batches = list(iterate_minibatches(data, 25, torch.Generator().manual_seed(0)))
    assert [len(b["y"]) for b in batches] == [25, 25, 25, 25, 3]
    seen = torch.cat([b["y"] for b in batches])
    assert sorted(seen.tolist()) == list(range(103))
    assert all(torch.equal(b["x"][:, 0].long(), b["y"]) for b in batches)  # rows stay aligned


class Quadratic(nn.Module):
    """loss = (w - mean target)^2: training and validation data pull w towards different values."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def loss(self, batch, progress):
        return (self.w - batch["target"].mean()) ** 2, {}


def test_early_stopping_restores_the_best_validation_epoch():
    module = Quadratic()
    # training pulls w towards 5; the validation optimum is w = 1
    train = {"target": torch.full((10, 1), 5.0)}
    valid = {"target": torch.full((10, 1), 1.0)}
    config = TrainConfig(epochs=100, batch_size=10, lr=0.3, patience=3)
    report = Trainer(config).fit(module, train, valid)
    assert report.stopped_by == "early_stopping"
    best = min(report.history, key=lambda row: row["valid_loss"])
    assert report.best_epoch == best["epoch"] and report.epochs == best["epoch"] + 3
    # the restored parameter is the best epoch's: its validation loss is the best one
    assert module.loss(valid, None)[0].item() == pytest.approx(best["valid_loss"], rel=1e-6)


class RecordsProgress(Quadratic):
    """The quadratic loss, recording what the trainer tells it on every call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def loss(self, batch, progress):
        self.calls.append((self.training, progress))
        return super().loss(batch, progress)


def test_the_loss_is_told_the_training_progress_and_nothing_in_evaluation():
    module = RecordsProgress()
    data = {"target": torch.ones(25, 1)}
    config = TrainConfig(epochs=3, batch_size=10, lr=0.1, patience=None, eval_batch_size=25)
    Trainer(config).fit(module, data, data)
    # 25 points in batches of 10: 3 steps per epoch; each epoch ends with one validation batch
    expected = []
    for epoch in (1, 2, 3):
        expected += [(True, Progress(epoch, 3 * (epoch - 1) + b, 3, 3)) for b in range(3)]
        expected.append((False, None))
    assert module.calls == expected
    fractions = [p.fraction for training, p in module.calls if training]
    assert fractions == pytest.approx([k / 9 for k in range(9)])


class DivergesAtBatch(nn.Module):
    """A quadratic loss that becomes NaN from optimisation step ``bad`` on; with ``then_raise``
    the step after that fails with another error, as a distribution would on NaN parameters."""

    def __init__(self, bad: int, then_raise: bool = False):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.bad, self.then_raise, self.steps = bad, then_raise, 0

    def loss(self, batch, progress):
        self.steps += 1
        if self.then_raise and self.steps > self.bad:
            raise ValueError("parameters are NaN")
        loss = (self.w - batch["target"].mean()) ** 2
        if self.steps >= self.bad:
            loss = loss * torch.tensor(float("nan"))
        return loss, {"square": loss.detach()}


@pytest.mark.parametrize("then_raise", [False, True], ids=["nan-to-the-end", "then-an-error"])
def test_divergence_names_the_epoch_and_first_bad_batch(then_raise):
    data = {"target": torch.ones(40, 1)}
    config = TrainConfig(epochs=3, batch_size=10, lr=0.1, patience=None)
    # 4 batches per epoch: step 6 is epoch 2, batch 2
    expected = r"loss became nan at epoch 2, batch 2; parts: square=nan\."
    with pytest.raises(DivergedError, match=expected) as caught:
        Trainer(config).fit(DivergesAtBatch(bad=6, then_raise=then_raise), data)
    assert isinstance(caught.value.__cause__, ValueError) == then_raise


class MeanSquare(nn.Module):
    """loss = (mean target)^2 + 0 w: the gradient is 0, so Adam never moves w."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def loss(self, batch, progress):
        loss = batch["target"].mean() ** 2 + 0 * self.w
        return loss, {"square": loss.detach()}


def test_history_and_validation_loss_are_means_over_batches():
    target = torch.arange(40.0)[:, None]
    config = TrainConfig(epochs=1, batch_size=10, lr=0.1, patience=None, eval_batch_size=15)
    report = Trainer(config).fit(MeanSquare(), {"target": target}, {"target": target})
    # a batch's loss is its mean target squared
    order = torch.randperm(40, generator=torch.Generator().manual_seed(config.seed))
    train_batches = target[order].reshape(4, 10).mean(1) ** 2
    valid_batches = [target[a:b].mean() ** 2 for a, b in ((0, 15), (15, 30), (30, 40))]
    row = report.history[0]
    assert row["loss"] == pytest.approx(float(train_batches.mean()))
    assert row["square"] == pytest.approx(row["loss"])
    assert row["valid_loss"] == pytest.approx(
        float(15 * valid_batches[0] + 15 * valid_batches[1] + 10 * valid_batches[2]) / 40
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"lr": "fast"}, "lr"),
        ({"amsgrad": "yes"}, "amsgrad"),
        ({"patience": 0}, "patience"),
        ({"seed": -1}, "seed"),
        ({"epoch": 3}, "epoch"),
    ],
)
def test_train_settings_reject_bad_values_naming_the_field(settings, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig(**settings)


def test_train_settings_take_yaml_numbers_and_are_frozen():
    config = TrainConfig(lr="1e-3", max_seconds=60)
    assert config.lr == 1e-3 and config.max_seconds == 60.0
    with pytest.raises(ValidationError, match="frozen"):
        config.lr = 1.0


def test_a_fit_is_reproducible_from_its_seed():
    splits = load_dataset("synthetic", n_train=300, n_valid=100, n_test=100)
    probabilities = []
    for _ in range(2):
        model = MxO(hidden=(16,), latent_dim=4, classifier_hidden=(8,), dropout=0.2)
        model.fit(splits.train, splits.valid, trainer=TrainConfig(epochs=3, batch_size=32, seed=11))
        probabilities.append(model.predict_proba(splits.test.xO))
    assert np.array_equal(*probabilities)


@pytest.mark.parametrize("kind", ["linear_svm", "logistic", "mlp"])
def test_downstream_classifier_separates_separable_classes(kind):
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])

    def sample(n):
        labels = rng.integers(0, 3, n)
        return centres[labels] + rng.normal(scale=0.5, size=(n, 2)), labels

    train, valid, (z_test, y_test) = sample(300), sample(100), sample(200)
    result = fit_downstream(kind, train, valid, z_test, seed=0)
    assert result.scores.shape == (200, 3)
    assert error_pct(y_test, result.scores) == 0.0


def test_downstream_selects_hyper_parameters_on_the_validation_split():
    rng = np.random.default_rng(1)
    # Labels depend on feature 0 only; feature 1 is noise. With C tiny the SVM underfits.
    z = rng.normal(size=(600, 2))
    y = (z[:, 0] > 0).astype(int)
    result = fit_downstream(
        "linear_svm", (z[:300], y[:300]), (z[300:400], y[300:400]), z[400:], grid={"C": [1e-6, 1.0]}
    )
    assert result.params == {"C": 1.0}
    assert error_pct(y[400:], result.scores) < 3.0
