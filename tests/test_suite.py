"""Suite files: schema errors name the file, the field path and what is allowed; grids expand as
products or zips; seeds are derived from the suite seed and a run's coordinates; --dry-run and
--cell address runs by a stable index."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.config import TrainConfig, TrainSettings
from mmbench.data import available_datasets
from mmbench.records import Coordinates, Resources
from mmbench.registry import make_model, model_class
from mmbench.runner import smoke_version
from mmbench.suite import Suite, SuiteError, grid_values, load_suite

SUITES = Path(__file__).parents[1] / "suites"
TINY_MXO = {"hidden": [8], "latent_dim": 4, "classifier_hidden": [4]}


def write_suite(tmp_path, suite: dict | str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(suite if isinstance(suite, str) else yaml.safe_dump(suite))
    return path


def base(**changes) -> dict:
    suite = {
        "name": "tiny",
        "seeds": [0],
        "data": {"name": "synthetic", "options": {"n_train": 120, "n_valid": 60, "n_test": 60}},
        "train": {"epochs": 2, "batch_size": 60, "lr": 1.0e-3},
        "models": [{"name": "mxo", "params": TINY_MXO}],
        "references": [],
    }  # the model runs only (reference rows: test_references.py)
    suite.update(changes)
    return suite


@pytest.mark.parametrize(
    "suite, expected",
    [
        (
            base(seedz=[1]),
            "seedz: unknown field; allowed: ['data', 'description', 'device', "
            "'display_names', 'downstream', 'models', 'name', 'references', "
            "'resources', 'seed', 'seeds', 'train', 'tune']",
        ),
        (
            base(models=[{"name": "mxo", "parms": {}}]),
            "models.0.parms: unknown field; allowed: ['grid', 'grid_mode', 'label', 'name', "
            "'params', 'resources', 'search', 'train']",
        ),
        (base(resources={"cpus": 0}), "resources.cpus: Input should be greater than or equal to 1"),
        (
            base(models=[{"name": "mxo", "resources": {"gpu": 1}}]),
            "models.0.resources.gpu: unknown field; allowed: ['cpus', 'gpus']",
        ),
        (
            base(models=[{"name": "cmmd", "grid": {"omegaa": [0.1]}}]),
            "models.0.grid: model 'cmmd' has no hyper-parameter(s) ['omegaa']; "
            "allowed: ['activation', 'alpha',",
        ),
        (
            base(models=[{"name": "cmmd", "grid": {"omega": "0:2:0.5"}}]),
            "models.0.grid.omega: Input should be less than or equal to 1, got 1.5; allowed: real "
            "[0, 1] (at grid point {'omega': 1.5})",
        ),
        (
            base(models=[{"name": "cmmd", "params": {"latent_dim": 0}}]),
            "models.0.params.latent_dim: Input should be greater than or equal to 1, got 0",
        ),
        (
            base(models=[{"name": "cmmd", "params": {"latent_dim": 4.5}}]),
            "models.0.params.latent_dim: Input should be a valid integer, got 4.5",
        ),
        (
            base(models=[{"name": "cmmd", "params": {"omega": "high"}}]),
            "models.0.params.omega: Input should be a number, got 'high'",
        ),
        (
            base(models=[{"name": "cmmd", "params": {"kl": "offical"}}]),
            "models.0.params.kl: Input should be 'paper' or 'official', got 'offical'",
        ),
        (
            base(models=[{"name": "cmmd", "params": {"prior_hidden": [64, 0]}}]),
            "models.0.params.prior_hidden.1: Input should be greater than or equal to 1, got 0",
        ),
        (
            base(models=[{"name": "cmmd", "params": {"decoder_variance": "learned"}}]),
            "models.0.params.decoder_variance: Input should be 'input' or 'shared' or a number "
            "> 0, got 'learned'",
        ),
        (
            base(
                models=[
                    {"name": "dcca", "params": {"latent_dim": 4}, "grid": {"n_components": [2, 6]}}
                ]
            ),
            "models.0.grid.n_components: Input should be at most latent_dim = 4 (or None for all), "
            "got 6 (at grid point {'n_components': 6})",
        ),
        (
            base(models=[{"name": "mmvae_iwae", "params": {"objective": "elbo", "looser": True}}]),
            "models.0.params.looser: Input should be false with the elbo objective",
        ),
        (
            base(models=[{"name": "cmmd", "params": {"omega": 0.1}, "grid": {"omega": [0.2]}}]),
            "models.0.grid: ['omega'] set both in params and in grid; keep one",
        ),
        (
            base(models=[{"name": "mxo", "train": {"epochs": 0}}]),
            "models.0.train.epochs: Input should be greater than or equal to 1, got 0",
        ),
        (
            base(models=[{"name": "mxo", "train": {"device": "cuda"}}]),
            "models.0.train: unknown field(s) ['device']; allowed: ['amsgrad', 'batch_size',",
        ),
        (base(train={"seed": 3}), "train.seed: unknown field; allowed: ['amsgrad', 'batch_size',"),
        (
            base(models=[{"name": "mxo", "train": {"epoch": 3}}]),
            "models.0.train: unknown field(s) ['epoch']; allowed: ['amsgrad', 'batch_size',",
        ),
        (
            base(
                models=[
                    {
                        "name": "cmmd",
                        "grid_mode": "zip",
                        "grid": {"omega": [0.1, 0.2], "alpha": [1.0]},
                    }
                ]
            ),
            "models.0.grid: grid_mode zip needs axes of one length, got {'alpha': 1, 'omega': 2}",
        ),
        (
            base(models=[{"name": "cmmd", "grid": {"omega": "1:0:0.1"}}]),
            "models.0.grid.omega: grid axis '1:0:0.1': need step > 0 and stop >= start",
        ),
        (
            base(models=[{"name": "mxo"}, {"name": "mxo", "params": {"latent_dim": 3}}]),
            "models: label(s) ['mxo'] used by several model blocks; give each block its own label",
        ),
        (base(models=[{"name": "nosuch"}]), "models.0.name: unknown model 'nosuch'; available: ["),
        (base(models=[]), "models: List should have at least 1 item"),
        (
            base(data={"name": "synthetic", "options": {"n_trian": 5}}),
            "data.options: data set 'synthetic' has no option(s) ['n_trian']; allowed: "
            "['correlations',",
        ),
        (
            base(data={"name": "synthetic", "grid": {"fold": [1, 2]}}),
            "data.grid: data set 'synthetic' has no option(s) ['fold']; allowed:",
        ),
        (base(data={"name": "nosuch"}), "data.name: unknown data set 'nosuch'; available: ["),
        (base(train={"epochs": 2, "lr": -1}), "train.lr: Input should be greater than 0"),
        (base(seeds=[0, 0]), "seeds: replicate seeds [0, 0] repeat a seed; each must be distinct"),
        (
            base(downstream={"classifier": "svm"}),
            "downstream.classifier: Input should be 'linear_svm', 'logistic' or 'mlp'",
        ),
        ({k: v for k, v in base().items() if k != "name"}, "name: required field missing"),
        ("- just\n- a list\n", "a suite is a YAML mapping with keys ['data', 'description',"),
    ],
)
def test_malformed_suites_name_the_file_the_field_and_what_is_allowed(tmp_path, suite, expected):
    path = write_suite(tmp_path, suite)
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    lines = str(error.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert any(expected in line for line in lines), str(error.value)


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    """PyYAML reads 1e-4 (no dot) as a string; a real-valued setting takes it as the number."""
    text = yaml.safe_dump(base(models=[{"name": "dcca", "params": {"reg1": 1.0}}]))
    text = text.replace("reg1: 1.0", "reg1: 1e-4").replace("lr: 0.001", "lr: 1e-3")
    assert "reg1: 1e-4" in text and "lr: 1e-3" in text
    suite = load_suite(write_suite(tmp_path, text))
    assert suite.train.lr == 1e-3
    (run,) = suite.runs()
    assert make_model("dcca", run.config.model.params).config.reg1 == 1e-4


def test_the_train_block_is_the_trainers_settings_without_device_and_seed():
    assert set(TrainConfig.model_fields) - set(TrainSettings.model_fields) == {"device", "seed"}
    assert Suite.model_fields["train"].annotation is TrainSettings


def test_a_range_gives_its_values_with_the_stop_included():
    assert grid_values("0:1:0.1") == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert grid_values("10:50:10") == [10, 20, 30, 40, 50]
    assert all(isinstance(v, int) for v in grid_values("10:50:10"))  # integer hyper-parameters
    assert grid_values([3, 1]) == [3, 1]


def test_grids_expand_as_products_or_zips(tmp_path):
    suite = base(
        seeds=[0, 1, 2],
        data={"name": "synthetic", "grid": {"n_classes": [2, 3]}},
        models=[
            {"name": "cmmd", "grid": {"omega": "0:1:0.1", "latent_dim": [2, 4]}},
            {
                "name": "mxo",
                "label": "zipped",
                "grid_mode": "zip",
                "grid": {"latent_dim": [2, 4, 8], "dropout": [0.0, 0.1, 0.2]},
            },
        ],
    )
    runs = load_suite(write_suite(tmp_path, suite)).runs()
    # data points x (cmmd: 11 x 2 product + mxo: 3 zipped) x seeds
    assert len(runs) == 2 * (11 * 2 + 3) * 3
    assert len({r.run_id for r in runs}) == len(runs)
    zipped = {
        (r.coordinates.grid["latent_dim"], r.coordinates.grid["dropout"])
        for r in runs
        if r.label == "zipped"
    }
    assert zipped == {(2, 0.0), (4, 0.1), (8, 0.2)}
    first = runs[0]
    assert first.coordinates == Coordinates(
        data={"n_classes": 2}, model="cmmd", grid={"omega": 0.0, "latent_dim": 2}, seed=0
    )
    assert first.config.data.options["n_classes"] == 2
    assert first.config.model.params["omega"] == 0.0


def test_seeds_derive_from_the_suite_seed_and_coordinates_only(tmp_path):
    one = load_suite(write_suite(tmp_path, base(seeds=[0, 1]))).runs()
    again = load_suite(write_suite(tmp_path, base(seeds=[0, 1]))).runs()
    assert [r.run_id for r in one] == [r.run_id for r in again]
    train_seeds = [r.config.train_seed for r in one]
    assert len(set(train_seeds)) == 2 and all(0 <= s < 2**31 for s in train_seeds)
    # another suite seed gives other training seeds, so other runs
    other = load_suite(write_suite(tmp_path, base(seeds=[0, 1], seed=7))).runs()
    assert not {r.run_id for r in other} & {r.run_id for r in one}
    # adding a model changes nothing about the runs already there
    more = base(seeds=[0, 1], models=[{"name": "cmmd"}, {"name": "mxo", "params": TINY_MXO}])
    grown = load_suite(write_suite(tmp_path, more)).runs()
    assert {r.run_id for r in one} <= {r.run_id for r in grown}


def test_overrides_and_smoke_budget(tmp_path):
    suite = base(
        train={"epochs": 50, "lr": 1e-3, "patience": 5},
        models=[{"name": "mxo", "params": TINY_MXO, "train": {"lr": 1e-4}}],
    )
    (run,) = load_suite(write_suite(tmp_path, suite)).runs()
    assert (run.config.train["lr"], run.config.epochs) == (1e-4, 50)
    assert run.config.model.params["hidden"] == [8]  # overrides over the defaults
    smoke = smoke_version(run)
    assert (smoke.config.epochs, smoke.config.smoke) == (2, True)
    assert smoke.run_id != run.run_id


def test_resources_override_per_model_and_never_change_run_ids(tmp_path):
    models = [
        {"name": "mxo", "params": {"hidden": [8]}},
        {"name": "mxo", "label": "gpu", "params": {"hidden": [4]}, "resources": {"gpus": 1}},
        {"name": "mxo", "label": "wide", "params": {"hidden": [2]}, "resources": {"cpus": 4}},
    ]
    plain = load_suite(write_suite(tmp_path, base(models=models))).runs()
    assert [r.resources for r in plain] == [Resources(), Resources(gpus=1), Resources(cpus=4)]
    given = load_suite(write_suite(tmp_path, base(models=models, resources={"cpus": 2}))).runs()
    assert [r.resources for r in given] == [
        Resources(cpus=2),
        Resources(cpus=2, gpus=1),
        Resources(cpus=4),
    ]
    assert [r.run_id for r in given] == [r.run_id for r in plain]


def test_dry_run_lists_stable_indices_and_cell_runs_only_that_run(tmp_path):
    suite = write_suite(tmp_path, base(seeds=[0, 1, 2]))
    results = tmp_path / "out"
    runner = CliRunner()
    plan = runner.invoke(app, ["run", str(suite), "--dry-run", "--results", str(results)])
    assert plan.exit_code == 0, plan.output
    assert "3 runs: 3 pending" in plan.output
    ids = [r.run_id for r in load_suite(suite).runs()]
    cell = runner.invoke(app, ["run", str(suite), "--cell", "1", "--results", str(results)])
    assert cell.exit_code == 0, cell.output
    records = [json.loads(p.read_text()) for p in results.glob("runs/*/record.json")]
    assert [r["run_id"] for r in records] == [ids[1]]
    plan = runner.invoke(app, ["run", str(suite), "--dry-run", "--results", str(results)])
    rows = [line for line in plan.output.splitlines() if ids[1] in line]
    assert len(rows) == 1 and rows[0].split("│")[1].strip() == "1" and "ok" in rows[0]
    assert "3 runs: 1 ok, 2 pending" in plan.output
    outside = runner.invoke(app, ["run", str(suite), "--cell", "3", "--results", str(results)])
    assert outside.exit_code == 2 and "the suite has runs 0..2" in outside.output


def unwritten(raw: dict) -> list[str]:
    """The data set and models a suite names that this checkout does not have (yet)."""
    missing = [] if raw["data"]["name"] in available_datasets() else [raw["data"]["name"]]
    for block in raw["models"]:
        try:
            model_class(block["name"])
        except (ImportError, KeyError):
            missing.append(block["name"])
    return missing


@pytest.mark.parametrize("path", sorted(SUITES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_validate_and_expand(path):
    raw = yaml.safe_load(path.read_text())
    if unwritten(raw):
        pytest.skip(f"{path.name} names {unwritten(raw)}, not in this checkout")
    suite = load_suite(path)
    runs = suite.runs()
    blocks = {b.get("label", b["name"]) for b in raw["models"]}
    # a tuned suite's models run as studies (trials, then final runs), not as fixed runs
    expanded = {r.label for r in runs if r.role == "model"} | {s.label for s in suite.studies()}
    assert expanded == blocks
    assert {r.label for r in runs if r.role == "reference"} == {"raw xO", "mean xM", "ridge xO→xM"}
    assert len({r.run_id for r in runs}) == len(runs)
