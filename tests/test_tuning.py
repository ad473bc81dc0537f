"""Tuning: a study finds the known optimum of a synthetic objective within its budget, asks the
same trials however often it is run or resumed, redoes only a lost trial, and its final runs are
its best trial's configuration over the replicate seeds."""

import math

import numpy as np
import pytest
import yaml
from pydantic import Field
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.config import ModelConfig, PositiveInt, Probability
from mmbench.model import MultimodalModel
from mmbench.records import MODEL_ROLE, TRIAL_ROLE, Record
from mmbench.store import RunStore
from mmbench.suite import load_suite
from mmbench.trainer import FitReport, TrainConfig
from mmbench.tuning import asked_after, plan
from mmbench.tuning_results import budget_caption, chosen_params, current_final_runs

H_BEST, K_BEST = 0.3, 7


def gap(h: float, k: int) -> float:
    """The share of points the known-objective model gets wrong."""
    return min(1.0, abs(h - H_BEST) + abs(k - K_BEST) / 20)


class KnownConfig(ModelConfig):
    h: Probability = Field(0.5, description="a real hyper-parameter; best at 0.3")
    k: PositiveInt = Field(1, description="an integer hyper-parameter; best at 7")


class KnownObjective(MultimodalModel[KnownConfig]):
    """A stand-in model whose results are a known function of its hyper-parameters: it remembers
    the label and the missing modality of every training and validation point, then gets the
    first round(n * gap(h, k)) points of a split wrong and generates the missing modality off by
    h - 0.3 in every coordinate. So its validation error is 100 * round(n * gap) / n percent and
    its validation rmse is |h - 0.3|."""

    name = "known_objective"
    capabilities = frozenset({"classify", "generate"})

    def fit(self, train, valid=None, *, trainer=TrainConfig(), n_classes=None, on_epoch=None):
        self.n_classes_, self.missing_ = n_classes, train.missing[0]
        self.memory_ = {}
        for views in (train, valid):
            observed, missing = views.data[views.observed[0]], views.data[self.missing_]
            for row, label, truth in zip(observed, views.labels, missing):
                self.memory_[row.tobytes()] = (int(label), truth)
        return FitReport(epochs=1, best_epoch=1, stopped_by="closed_form")

    def _remembered(self, xO):
        return [self.memory_.get(row.tobytes()) for row in next(iter(xO.values()))]

    def represent(self, xO):
        return next(iter(xO.values()))

    def predict_proba(self, xO):
        labels = np.array([0 if m is None else m[0] for m in self._remembered(xO)])
        wrong = round(len(labels) * gap(self.config.h, self.config.k))
        labels[:wrong] = (labels[:wrong] + 1) % self.n_classes_
        return np.eye(self.n_classes_)[labels]

    def generate(self, xO):
        width = next(iter(self.memory_.values()))[1].shape[0]
        truth = np.stack([np.zeros(width) if m is None else m[1] for m in self._remembered(xO)])
        return {self.missing_: truth + (self.config.h - H_BEST)}


@pytest.fixture
def known(register_model):
    register_model("known_objective", f"{__name__}:KnownObjective")


def known_suite(
    tmp_path,
    objective="error_pct",
    trials=20,
    sampler="tpe",
    startup=8,
    parallel=1,
    search=None,
    seeds=(0, 1),
):
    suite = {
        "name": "known",
        "seed": 0,
        "seeds": list(seeds),
        "references": [],
        "data": {"name": "synthetic", "options": {"n_train": 100, "n_valid": 200, "n_test": 100}},
        "tune": {
            "objective": objective,
            "trials": trials,
            "epochs": 1,
            "sampler": sampler,
            "startup": startup,
            "parallel": parallel,
        },
        "models": [
            {
                "name": "known_objective",
                "label": "Known",
                "search": search or {"h": {"uniform": [0, 1]}, "k": {"int": [1, 10]}},
            }
        ],
    }
    path = tmp_path / f"known-{sampler}-{objective}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def run_suite(suite, results, *options):
    result = CliRunner().invoke(app, ["run", str(suite), "--results", str(results), *options])
    assert result.exit_code == 0, result.output
    return result


def by_role(results, role) -> list[Record]:
    return [r for r in RunStore(results).records() if r.role == role]


def trial_table(results) -> dict[int, tuple[str, dict, float]]:
    """Trial number -> (run id, searched values, validation objective), from the records."""
    return {
        r.tuning.trial: (r.run_id, r.tuning.params, r.metrics) for r in by_role(results, TRIAL_ROLE)
    }


@pytest.mark.parametrize("sampler, trials, tolerance", [("tpe", 24, 0.02), ("random", 60, 0.06)])
def test_a_study_finds_the_known_optimum_within_its_budget(
    tmp_path, known, sampler, trials, tolerance
):
    suite = known_suite(tmp_path, sampler=sampler, trials=trials)
    results = tmp_path / "results"
    run_suite(suite, results)
    trials_run = by_role(results, TRIAL_ROLE)
    assert len(trials_run) == trials
    for record in trials_run:  # the objective is the known function, on validation only
        h, k = record.tuning.params["h"], record.tuning.params["k"]
        wrong = round(200 * gap(h, k))  # of the 200 validation points
        assert record.metrics == {
            "valid_error_pct": pytest.approx(100 * wrong / 200),
            "valid_rmse": pytest.approx(abs(h - H_BEST), abs=1e-6),
        }
    finals = by_role(results, MODEL_ROLE)
    assert sorted(r.coordinates.seed for r in finals) == [0, 1]
    (chosen,) = {tuple(sorted(r.tuning.params.items())) for r in finals}
    h, k = dict(chosen)["h"], dict(chosen)["k"]
    assert k == K_BEST and abs(h - H_BEST) <= tolerance, chosen
    assert chosen_params(finals) == {"Known": {"h": [h], "k": [k]}}
    assert budget_caption(finals) == (
        f"Tuned on validation error_pct: {trials} trials x 1 epochs per model "
        f"({'TPE' if sampler == 'tpe' else 'random search'})"
    )


def test_final_runs_are_the_best_trial_over_the_seeds(tmp_path, known):
    results = tmp_path / "results"
    run_suite(
        known_suite(tmp_path, objective="rmse", trials=10, startup=4, seeds=(0, 1, 2)), results
    )
    table = trial_table(results)
    # the best trial by the records' validation rmse, the earliest among ties
    best = min(table, key=lambda n: (table[n][2]["valid_rmse"], n))
    best_id, best_values, best_metrics = table[best]
    finals = by_role(results, MODEL_ROLE)
    assert sorted(r.coordinates.seed for r in finals) == [0, 1, 2]
    for record in finals:
        assert record.tuning.best_trial == best_id and record.tuning.trial is None
        assert record.tuning.best_value == best_metrics["valid_rmse"]
        assert record.tuning.params == best_values
        params = record.config.model.params
        assert (params["h"], params["k"]) == (best_values["h"], best_values["k"])
        assert record.coordinates.grid == {}  # one series per label in the tables
        assert "rmse" in record.metrics and "valid_rmse" in record.metrics  # test and validation
    assert current_final_runs(results) == {r.run_id for r in finals}


def test_the_same_study_asks_the_same_trials_and_a_lost_trial_alone_is_redone(tmp_path, known):
    suite = known_suite(tmp_path, trials=8, startup=3, parallel=2)
    first, second = tmp_path / "first", tmp_path / "second"
    run_suite(suite, first)
    run_suite(suite, second)
    table = trial_table(first)
    assert trial_table(second) == table and sorted(table) == list(range(8))
    assert len({run_id for run_id, _, _ in table.values()}) == 8

    store = RunStore(first)
    stamps = {r.run_id: r.finished for r in store.records()}
    lost_id = table[5][0]
    staging = store.runs / f".{lost_id}.12345.tmp"  # what a kill -9 mid-write leaves
    (store.path(lost_id)).rename(staging)
    dry = CliRunner().invoke(app, ["run", str(suite), "--results", str(first), "--dry-run"])
    # trial 7 is asked from the results of trials 0-6: it waits for trial 5 to be redone
    assert "8 trials: 6 ok, 1 pending, 1 waiting; 2 final runs: 2 waiting" in " ".join(
        dry.output.split()
    ), dry.output
    run_suite(suite, first)
    after = {r.run_id: r.finished for r in store.records()}
    assert set(after) == set(stamps)
    assert [run_id for run_id in after if after[run_id] != stamps[run_id]] == [lost_id]
    assert trial_table(first) == table


def test_trials_wait_only_for_the_trials_they_are_asked_after(tmp_path, known):
    tune = load_suite(known_suite(tmp_path, trials=9, startup=3, parallel=2)).tune
    assert [asked_after(tune, n) for n in range(9)] == [0, 0, 0, 3, 3, 5, 5, 7, 7]
    rand = load_suite(known_suite(tmp_path, trials=4, sampler="random")).tune
    assert [asked_after(rand, n) for n in range(4)] == [0, 0, 0, 0]


def test_dry_run_and_cell_follow_the_order_of_the_study(tmp_path, known):
    suite = known_suite(tmp_path, trials=4, startup=2, seeds=(0,))
    results = tmp_path / "results"
    runner = CliRunner()
    dry = runner.invoke(app, ["run", str(suite), "--results", str(results), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "4 trials: 2 pending, 2 waiting; 1 final runs: 1 waiting" in " ".join(dry.output.split())
    # line 2 is trial 2: asked from trials 0 and 1, which have not run
    early = runner.invoke(app, ["run", str(suite), "--results", str(results), "--cell", "2"])
    assert early.exit_code == 2
    assert "trial(s) [0, 1] have no record yet: run cell(s) [0, 1] first" in " ".join(
        early.output.split()
    )
    assert not (results / "runs").exists()  # nothing ran
    for cell in ("0", "1", "2", "3"):
        runner.invoke(app, ["run", str(suite), "--results", str(results), "--cell", cell])
    assert len(by_role(results, TRIAL_ROLE)) == 4 and not by_role(results, MODEL_ROLE)
    final = runner.invoke(app, ["run", str(suite), "--results", str(results), "--cell", "4"])
    assert final.exit_code == 0, final.output
    (record,) = by_role(results, MODEL_ROLE)
    # the cells ran the very trials a whole run asks
    whole = tmp_path / "whole"
    run_suite(suite, whole)
    assert trial_table(whole) == trial_table(results)
    assert [r.run_id for r in by_role(whole, MODEL_ROLE)] == [record.run_id]


def test_a_failed_trial_counts_as_the_worst_and_the_study_goes_on(tmp_path, known, monkeypatch):
    suite = known_suite(tmp_path, trials=6, startup=3)
    results = tmp_path / "results"
    original = KnownObjective.fit

    def fit_failing_above(self, *args, **kwargs):  # diverges for large h
        if self.config.h > 0.5:
            raise RuntimeError("loss became nan on purpose")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(KnownObjective, "fit", fit_failing_above)
    run_suite(suite, results)
    trials = by_role(results, TRIAL_ROLE)
    failed = [r for r in trials if not r.ok]
    assert len(trials) == 6 and failed, "the budget should reach h > 0.5"
    assert all(r.tuning.params["h"] > 0.5 for r in failed)
    (state,) = plan(load_suite(suite), RunStore(results))
    assert all(t.value == math.inf for t in state.trials if not t.record.ok)
    assert state.best.record.ok and len(by_role(results, MODEL_ROLE)) == 2
