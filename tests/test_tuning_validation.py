"""A tuned suite that cannot be run is refused before any run starts, with one error naming the
model and the field; a valid one expands into studies whose trials and final runs are seeded
and resolved as the schema says."""

import pytest
import yaml
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.records import Coordinates
from mmbench.suite import SuiteError, derive_seed, load_suite, parse_dimension

TINY_MXO = {"hidden": [8], "classifier_hidden": [4]}
LR = {"loguniform": [1.0e-4, 1.0e-2]}


def tuned(models=None, **changes) -> dict:
    suite = {
        "name": "tuned",
        "seeds": [0, 1],
        "references": [],
        "data": {"name": "synthetic", "options": {"n_train": 120, "n_valid": 60, "n_test": 60}},
        "train": {"batch_size": 60},
        "tune": {"objective": "error_pct", "trials": 3, "epochs": 2, "startup": 2},
        "models": models or [{"name": "mxo", "params": TINY_MXO, "search": {"lr": LR}}],
    }
    suite.update(changes)
    return suite


def cmmd(search, **block) -> list[dict]:
    return [{"name": "cmmd", "label": "CMMD", "search": search, **block}]


@pytest.mark.parametrize(
    "suite, expected",
    [
        (
            tuned(cmmd({"omegaa": {"uniform": [0, 1]}})),
            "models.0.search.omegaa: model 'cmmd' has no hyper-parameter or training setting "
            "'omegaa'; hyper-parameters: ['activation', 'alpha',",
        ),
        (
            tuned(cmmd({"omega": {"choice": []}})),
            "models.0.search.omega: empty choice: give at least one value",
        ),
        (
            tuned(cmmd({"omega": {"uniform": [0.5, 0.5]}})),
            "models.0.search.omega: uniform [0.5, 0.5]: need low < high",
        ),
        (
            tuned(cmmd({"lr": {"loguniform": [0, 0.01]}})),
            "models.0.search.lr: loguniform [0, 0.01]: a log range needs low > 0",
        ),
        (
            tuned(cmmd({"omega": {"uniform": [0, 2]}})),
            "models.0.search.omega: uniform [0, 2] includes 2.0, which model 'cmmd' refuses: "
            "omega: Input should be less than or equal to 1, got 2.0",
        ),
        (
            tuned(cmmd({"omega": {"choice": "0:1.5:0.5"}})),
            "models.0.search.omega: choice [0.0, 0.5, 1.0, 1.5] includes 1.5, which model 'cmmd' "
            "refuses: omega: Input should be less than or equal to 1, got 1.5",
        ),
        (
            tuned(cmmd({"latent_dim": {"uniform": [10, 40]}})),
            "models.0.search.latent_dim: latent_dim is an integer, uniform [10, 40] gives real "
            "numbers: use int: [low, high] or a choice",
        ),
        (
            tuned(cmmd({"batch_size": {"int": [0, 100]}})),
            "models.0.search.batch_size: int [0, 100] includes 0, which the trainer refuses: "
            "batch_size: Input should be greater than or equal to 1, got 0",
        ),
        (
            tuned(cmmd({"omega": {"normal": [0, 1]}})),
            "models.0.search.omega: give one of choice, uniform, loguniform, int (e.g. "
            "{loguniform: [1.0e-4, 1.0e-2]}), got {'normal': [0, 1]}",
        ),
        (
            tuned(cmmd({"omega": {"uniform": [0, 1]}}, params={"omega": 0.5})),
            "models.0.search.omega: omega is set in params too; keep one",
        ),
        (
            tuned(cmmd({"lr": LR}, train={"lr": 1e-3})),
            "models.0.search.lr: lr is set in train too; keep one",
        ),
        (
            tuned(tune={"objective": "error_pct", "trials": 0, "epochs": 2}),
            "tune.trials: Input should be greater than or equal to 1",
        ),
        (
            tuned(tune={"objective": "accuracy", "trials": 3, "epochs": 2}),
            "tune.objective: Input should be 'error_pct', 'map_micro_pct', 'map_macro_pct' "
            "or 'rmse'",
        ),
        (
            tuned(tune={"objective": "rmse", "trials": 3, "epochs": 2}),
            "models.0: model 'mxo' cannot generate the missing modalities, so it has no rmse to be "
            "tuned on",
        ),
        (
            tuned(cmmd({"epochs": {"int": [1, 5]}})),
            "models.0.search.epochs: reaches 5, above tune.epochs = 2, the cap of every trial and "
            "final run",
        ),
        (
            tuned(cmmd({"lr": LR}, train={"epochs": 3})),
            "models.0.train.epochs: 3 is above tune.epochs = 2, the cap of every trial and "
            "final run",
        ),
        (
            tuned(train={"epochs": 100}),
            "train.epochs: 100 is above tune.epochs = 2, the cap of every trial and final run",
        ),
        (
            tuned(
                [
                    {"name": "mxo", "params": TINY_MXO, "search": {"lr": LR}},
                    {"name": "cca", "params": {"n_components": 2}},
                ]
            ),
            "models.1: model 'cca' has no search space: a tuned suite gives every model the same "
            "budget, so give it one",
        ),
        (
            tuned(cmmd({"lr": LR}, grid={"omega": [0.1, 0.5]})),
            "models.0.grid: model 'CMMD' is tuned: search its axes instead",
        ),
        (
            {**{k: v for k, v in tuned().items() if k != "tune"}},
            "models.0.search: a search space needs the suite's tune block",
        ),
    ],
)
def test_a_tuned_suite_that_cannot_run_names_the_model_and_the_field(tmp_path, suite, expected):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    lines = str(error.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: "), lines
    assert expected in lines[0]
    # the command line refuses it before any run, with exit code 2
    results = tmp_path / "results"
    refused = CliRunner().invoke(app, ["run", str(path), "--results", str(results)])
    assert refused.exit_code == 2 and expected in " ".join(refused.output.split())
    assert not results.exists()


def test_an_objective_the_data_cannot_give_is_refused_before_any_run(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump(tuned(tune={"objective": "map_macro_pct", "trials": 3, "epochs": 2}))
    )
    results = tmp_path / "results"
    refused = CliRunner().invoke(app, ["run", str(path), "--results", str(results)])
    assert refused.exit_code == 2
    assert (
        "tuned: tune.objective map_macro_pct: the labels are single-label (one class per "
        "point): tune on error_pct"
    ) in " ".join(refused.output.split())
    assert "to run now" not in refused.output  # no round is announced
    assert not (results / "runs").exists()


def test_missing_data_is_refused_before_any_round_is_announced(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tuned(data={"name": "mnist_svhn"})))
    (tmp_path / "no_data").mkdir()
    results = tmp_path / "results"
    refused = CliRunner().invoke(
        app, ["run", str(path), "--results", str(results), "--data-dir", str(tmp_path / "no_data")]
    )
    assert refused.exit_code == 2, refused.output
    assert (
        "error: data set mnist_svhn, needed by 2 of the 2 pending run(s), cannot be loaded: "
        "MNIST digits, IDX files (LeCun et al.): train-images-idx3-ubyte.gz (or "
        f"train-images-idx3-ubyte) not found in {tmp_path / 'no_data' / 'mnist'}; run "
        "`mmbench data fetch mnist` to download it"
    ) in " ".join(refused.output.split())
    assert "to run now" not in refused.output  # the preflight comes before the first round
    assert not (results / "runs").exists()


@pytest.mark.parametrize(
    "raw, kind, edges",
    [
        ({"choice": [10, 20, 40]}, "choice", (10, 20, 40)),
        ({"choice": "0:1:0.25"}, "choice", (0.0, 0.25, 0.5, 0.75, 1.0)),
        ({"choice": [[512], [512, 512]]}, "choice", ([512], [512, 512])),
        ({"uniform": [0, 1]}, "uniform", (0.0, 1.0)),
        (
            {"loguniform": ["1e-4", 1.0e-2]},
            "loguniform",
            (1e-4, 1e-2),
        ),  # YAML 1.1 reads 1e-4 as text
        ({"int": [10, 50]}, "int", (10, 50)),
    ],
)
def test_search_dimensions_read_as_written(raw, kind, edges):
    dimension = parse_dimension(raw)
    assert dimension.kind == kind and dimension.edges == edges


def test_a_tuned_suite_expands_into_studies_of_seeded_trials_and_final_runs(tmp_path):
    path = tmp_path / "suite.yaml"
    suite_dict = tuned(
        [
            {
                "name": "mxo",
                "label": "M-xO",
                "params": TINY_MXO,
                "train": {"lr": 0.01},
                "search": {"latent_dim": {"choice": [2, 4]}, "patience": {"choice": [None, 5]}},
            }
        ],
        data={
            "name": "synthetic",
            "grid": {"seed": [0, 1]},
            "options": {"n_train": 120, "n_valid": 60, "n_test": 60},
        },
    )
    path.write_text(yaml.safe_dump(suite_dict))
    suite = load_suite(path)
    assert suite.runs() == []  # a tuned model has no fixed runs
    studies = suite.studies()
    assert [(s.name, s.data_point) for s in studies] == [
        ("M-xO (seed=0)", {"seed": 0}),
        ("M-xO (seed=1)", {"seed": 1}),
    ]
    study = studies[1]
    trial = suite.trial_run(study, 2, {"latent_dim": 4, "patience": None})
    assert trial.role == "trial" and trial.name == "M-xO trial 2"
    assert trial.config.model.params["latent_dim"] == 4
    train = trial.config.train
    # the cap stands in for the suite's epochs; the block's train and the searched settings apply
    assert (train["epochs"], train["lr"], train["patience"], train["batch_size"]) == (
        2,
        0.01,
        None,
        60,
    )
    assert train["seed"] == derive_seed(0, Coordinates({"seed": 1}, "mxo", {"trial": 2}, 0))
    assert trial.coordinates == Coordinates(
        {"seed": 1}, "mxo", {"latent_dim": 4, "patience": None}, 0
    )
    assert trial.tuning.trial == 2 and trial.tuning.params == {"latent_dim": 4, "patience": None}
    other = suite.trial_run(study, 3, {"latent_dim": 4, "patience": None})
    assert other.run_id != trial.run_id  # same values, another trial: another run
    finals = suite.final_runs(study, {"latent_dim": 4, "patience": None}, trial.run_id, 12.5)
    assert [r.coordinates.seed for r in finals] == [0, 1] and {r.role for r in finals} == {"model"}
    for final in finals:
        # seeded as an untuned model block's runs are
        coordinates = Coordinates({"seed": 1}, "mxo", {}, final.coordinates.seed)
        assert final.coordinates == coordinates
        assert final.config.train["seed"] == derive_seed(0, coordinates)
        assert final.config.model.params == trial.config.model.params
        assert final.tuning.best_trial == trial.run_id and final.tuning.best_value == 12.5
        assert final.tuning.budget == "3 trials x 2 epochs"
