"""Fixtures shared by the model tests: a slice of the embedded digits, with two or three views,
the check of a model trained on it, and registering a model for one test."""

from dataclasses import replace
from importlib.metadata import EntryPoint

import numpy as np
import pytest

from mmbench import registry
from mmbench.data import load_dataset
from mmbench.views import Modality


@pytest.fixture
def register_model(monkeypatch):
    """``register_model(name, "module:Class")`` adds a ``mmbench.models`` entry point for this
    test only, as a plug-in's installed metadata would."""

    def register(name: str, target: str) -> None:
        found = registry.entry_points
        extra = EntryPoint(name, target, registry.GROUP)
        monkeypatch.setattr(registry, "entry_points", lambda group: [*found(group=group), extra])

    return register


@pytest.fixture(scope="session")
def digits():
    """1,000 points of each split of ``mnist_embedded``: x1 observed, x2 missing."""
    splits = load_dataset("mnist_embedded", seed=0)
    index = np.arange(1000)
    return [getattr(splits, s).subset(index) for s in ("train", "valid", "test")]


@pytest.fixture(scope="session")
def digits_three_views(digits):
    """The same points with x3 = the inverted observed digit (Bernoulli), observed beside x1."""

    def with_third_view(views):
        data = {**views.data, "x3": 1.0 - views.data["x1"]}
        modalities = {**views.modalities, "x3": Modality("bernoulli", (28, 28))}
        return replace(views, data=data, modalities=modalities, observed=("x1", "x3"))

    return [with_third_view(v) for v in digits]


@pytest.fixture(scope="session")
def check_trained_on_digits():
    """The check shared by the generative models' tests: after ``report = model.fit(...)`` on
    ``digits``, losses are finite and fall, and represent / generate / posteriors on ``test``
    have the documented shapes."""

    def check(model, report, test, latent_dim):
        assert all(np.isfinite(v) for row in report.history for v in row.values())
        assert report.history[-1]["loss"] < report.history[0]["loss"]
        assert model.represent(test.xO).shape == (test.n, latent_dim)
        generated = model.generate(test.xO)
        assert list(generated) == ["x2"] and generated["x2"].shape == (test.n, 784)
        posteriors = model.posteriors(test)
        assert posteriors.z_given_xO.mean.shape == (test.n, latent_dim)
        return posteriors

    return check
