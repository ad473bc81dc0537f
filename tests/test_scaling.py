"""benchmarks/scaling.py's suite estimates count what a suite trains: a tuned model's trials and
final runs, an untuned model's runs and the reference rows, each at its epochs."""

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml
from rich.console import Console

ROOT = Path(__file__).parents[1]
RATE = 1000.0  # samples/s that every measurement is replaced by
# mnist_embedded at valid 0.2, test 0.2: 3,000 training and 1,000 validation rows, so a torch
# epoch takes (3000 + 1000 / 3) / 1000 = 10 / 3 s and a closed-form fit 3000 / 1000 = 3 s
EPOCH_S = 10 / 3
FIT_S = 3.0
REFERENCES = ("raw xO", "mean xM", "ridge xO→xM")


@pytest.fixture
def scaling(monkeypatch):
    """benchmarks/scaling.py as a module (benchmarks/ is not a package), its rate measurement
    replaced by the constant RATE; the measured blocks' (model, params) are in ``measured``."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # scaling imports throughput
    path = ROOT / "benchmarks" / "scaling.py"
    spec = importlib.util.spec_from_file_location("scaling", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "scaling", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    module.measured = []

    def block_rate(name, params, spec, train, n_train, args):
        module.measured.append((name, params))
        return RATE

    monkeypatch.setattr(module, "block_rate", block_rate)
    return module


def estimate(scaling, tmp_path, suite: dict) -> dict:
    file = tmp_path / "suite.yaml"
    file.write_text(yaml.safe_dump(suite, allow_unicode=True))
    args = Namespace(suites=str(file), xrmb_frames_per_speaker=55_000)
    rows = scaling.suite_estimates(args, Console(quiet=True))
    return {row.label: row for row in rows}


DATA = {"name": "mnist_embedded", "grid": {"seed": [0, 1]}}  # two data points


def test_tuned_suite_counts_trials_and_final_runs(scaling, tmp_path):
    """Per model, 2 data points x 3 trials = 6 trials and 2 data points x 2 seeds = 4 final runs;
    epochs: the cap 5, the model's own 3, the cap where epochs is searched, one fit for CCA."""
    lr = {"loguniform": [1.0e-4, 1.0e-2]}
    rows = estimate(
        scaling,
        tmp_path,
        {
            "name": "tiny_tuned",
            "seeds": [0, 1],
            "data": DATA,
            "tune": {"objective": "error_pct", "trials": 3, "epochs": 5, "startup": 1},
            "models": [
                {
                    "name": "mxo",
                    "params": {"hidden": [64]},
                    "search": {"latent_dim": {"choice": [4, 8]}, "lr": lr},
                },
                {"name": "mvae", "train": {"epochs": 3}, "search": {"lr": lr}},
                {"name": "vcca", "search": {"epochs": {"choice": [2, 4]}, "lr": lr}},
                {"name": "cca", "search": {"n_components": {"choice": [2, 4]}}},
            ],
        },
    )
    # label: (trials, trial epochs, runs, epochs, trial seconds, run seconds), by hand
    expected = {
        "mxo": (6, 5, 4, 5, 6 * 5 * EPOCH_S, 4 * 5 * EPOCH_S),  # 100 s, 66.7 s
        "mvae": (6, 3, 4, 3, 6 * 3 * EPOCH_S, 4 * 3 * EPOCH_S),  # 60 s, 40 s
        "vcca": (6, 5, 4, 5, 6 * 5 * EPOCH_S, 4 * 5 * EPOCH_S),  # 100 s, 66.7 s
        "cca": (6, 1, 4, 1, 6 * FIT_S, 4 * FIT_S),  # 18 s, 12 s
        **{label: (0, 0, 4, 1, 0.0, 4 * FIT_S) for label in REFERENCES},  # 12 s each
    }
    assert list(rows) == list(expected)
    for label, (trials, trial_epochs, runs, epochs, trial_s, run_s) in expected.items():
        row = rows[label]
        assert (row.trials, row.trial_epochs, row.runs, row.epochs) == (
            trials,
            trial_epochs,
            runs,
            epochs,
        ), label
        assert row.trial_hours * 3600 == pytest.approx(trial_s), label
        assert row.run_hours * 3600 == pytest.approx(run_s), label
        assert row.hours == pytest.approx(row.trial_hours + row.run_hours), label
    total_s = sum(row.hours for row in rows.values()) * 3600
    assert total_s == pytest.approx(100 + 200 / 3 + 60 + 40 + 100 + 200 / 3 + 18 + 12 + 3 * 12)
    # measured at the fixed params: the searched latent size at its default
    mxo = next(params for name, params in scaling.measured if name == "mxo")
    assert mxo["hidden"] == [64]


def test_untuned_suite_counts_its_runs(scaling, tmp_path):
    """Untuned: no trials; runs = 2 data points x 3 grid points x 2 seeds = 12 of 7 epochs."""
    rows = estimate(
        scaling,
        tmp_path,
        {
            "name": "tiny_untuned",
            "seeds": [0, 1],
            "data": DATA,
            "train": {"epochs": 7},
            "models": [{"name": "mxo", "grid": {"latent_dim": [4, 8, 16]}}],
        },
    )
    row = rows["mxo"]
    assert (row.trials, row.trial_hours, row.runs, row.epochs) == (0, 0.0, 12, 7)
    assert row.hours * 3600 == pytest.approx(12 * 7 * EPOCH_S)  # 280 s
    assert rows["raw xO"].runs == 4
