"""Bad values are refused when the suite loads, before anything runs: each error names the field
path, the value and what is allowed (issue 15's value cases, one by one); grids are counted
before they are expanded; names that become paths stay inside their folder."""

import numpy as np
import pytest
import yaml
from handmade_results import write_run
from typer.testing import CliRunner

import mmbench.suite
from mmbench.cli import app
from mmbench.suite import MAX_RUNS, SuiteError, axis_length, load_suite

TINY = {
    "name": "valid",
    "seeds": [0, 1],
    "data": {"name": "synthetic", "options": {"n_train": 200, "n_valid": 100, "n_test": 100}},
    "models": [{"name": "cmmd"}],
}


def suite_file(tmp_path, **changes):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def refused(tmp_path, **changes) -> str:
    """The one-line error (file name stripped) of loading TINY with ``changes``."""
    path = suite_file(tmp_path, **changes)
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    (line,) = str(error.value).splitlines()
    assert line.startswith(f"{path}: ")
    return line.removeprefix(f"{path}: ")


def flat(text: str) -> str:
    """Console output as one line (rich wraps long lines at spaces)."""
    return " ".join(text.split())


def cmmd(**params):
    return [{"name": "cmmd", "params": params}]


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            dict(models=cmmd(latent_dim=-4)),
            "models.0.params.latent_dim: Input should be greater "
            "than or equal to 1, got -4; allowed: int >= 1",
        ),
        (
            dict(models=cmmd(latent_dim=4.5)),
            "models.0.params.latent_dim: Input should be a valid "
            "integer, got 4.5; allowed: int >= 1",
        ),
        (
            dict(models=cmmd(dropout=2.0)),
            "models.0.params.dropout: Input should be less than 1, got 2.0; allowed: real [0, 1)",
        ),
        (
            dict(models=cmmd(activation="nope")),
            "models.0.params.activation: Input should be 'relu', "
            "'softplus', 'tanh', 'elu', 'sigmoid' or 'silu', got 'nope'",
        ),
        (
            dict(models=cmmd(omega="high")),
            "models.0.params.omega: Input should be a number, got 'high'; allowed: real [0, 1]",
        ),
        (
            dict(train={"epochs": True}),
            "train.epochs: Input should be a valid integer, got True; allowed: int >= 1",
        ),
        (
            dict(models=[{"name": "cmmd", "train": {"epochs": True}}]),
            "models.0.train.epochs: Input should be a valid integer, got True; allowed: int >= 1",
        ),
        (
            dict(device="tpu"),
            "device: device 'tpu' is none of cpu, cuda, cuda:N (N a GPU index) or mps",
        ),
        (dict(device="cuda:x"), "device: device 'cuda:x' is none of cpu, cuda, cuda:N"),
        (dict(seed=True), "seed: Input should be a valid integer, got True"),
        (dict(seeds=[0, 1.0]), "seeds.1: Input should be a valid integer, got 1.0"),
        (
            dict(resources={"cpus": True}),
            "resources.cpus: Input should be a valid integer, got True; allowed: int >= 1 or None",
        ),
        (
            dict(data={"name": "mnist_embedded", "options": {"valid_fraction": 1.5}}),
            "data.options: data set 'mnist_embedded': valid_fraction=1.5 is not allowed (input "
            "should be less than 1); valid_fraction must be a number > 0 and < 1",
        ),
        (
            dict(
                data={
                    "name": "mnist_embedded",
                    "options": {"valid_fraction": 0.9, "test_fraction": 0.9},
                }
            ),
            "data.options: data set 'mnist_embedded': valid_fraction + test_fraction = 0.9 + 0.9 "
            "= 1.8 leaves no rows for training; their sum must be < 1",
        ),
        (
            dict(name="../elsewhere"),
            "name: suite name '../elsewhere' cannot be used in a file name: "
            "use 1 to 100 letters, digits, '_', '.' or '-', not starting with '.'",
        ),
        (
            dict(name="/tmp/absolute"),
            "name: suite name '/tmp/absolute' cannot be used in a file name",
        ),
        (
            dict(references=["raw_x0"]),
            "references: unknown reference row(s) ['raw_x0']; allowed: "
            "['mean_xm', 'raw_xo', 'ridge_xo_xm'] ([] for none)",
        ),
        (dict(references="raw_xo"), "references: Input should be a valid list, got 'raw_xo'"),
        (
            dict(models=cmmd(preset="oficial")),
            "models.0.params.preset: Input should be 'paper' or 'official', got 'oficial'",
        ),
        (
            dict(
                data={
                    "name": "xrmb",
                    "options": {"protocol": "folds", "fold": 1, "parts": ["trian"]},
                }
            ),
            "data.options: data set 'xrmb': parts[0]='trian' is not allowed (input should be "
            "'train', 'tune' or 'test')",
        ),
        (
            dict(data={"name": "xrmb", "options": {"protocol": "speakers", "parts": ["test"]}}),
            "data.options: data set 'xrmb': protocol speakers trains on the train part, which "
            "parts=['test'] leaves out; add train",
        ),
    ],
)
def test_values_that_cannot_run_are_refused_at_load_with_field_value_and_allowed(
    tmp_path, changes, expected
):
    assert refused(tmp_path, **changes).startswith(expected)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1", "mps"])
def test_devices_torch_can_name_are_accepted(tmp_path, device):
    assert load_suite(suite_file(tmp_path, device=device)).device == device


def test_a_grid_is_counted_before_it_is_expanded(tmp_path, monkeypatch):
    assert axis_length("0:1:0.1") == 11 and axis_length([1, 2]) == 2
    assert axis_length("0:1:0.000000001") == 1_000_000_001  # not made: counted

    # a refused grid is never expanded (the bug: 6 GB of values in 90 s, no output)
    def expanded(value):
        raise AssertionError(f"expanded {value!r}")

    monkeypatch.setattr(mmbench.suite, "grid_values", expanded)
    line = refused(tmp_path, models=[{"name": "cmmd", "grid": {"omega": "0:1:0.000000001"}}])
    assert line == (
        "models.0.grid: 1,000,000,001 grid points (omega: 1,000,000,001 values), "
        f"more than the limit of {MAX_RUNS:,}; check the grids (e.g. a "
        "'start:stop:step' axis with a tiny step), or pass --allow-large to run them "
        "all"
    )
    line = refused(tmp_path, data={"name": "synthetic", "grid": {"seed": "0:1e12:1"}})
    assert line.startswith(
        "data.grid: 1,000,000,000,001 grid points (seed: 1,000,000,000,001 values)"
    )
    assert refused(tmp_path, models=[{"name": "cmmd", "grid": {"omega": "0:inf:1"}}]) == (
        "models.0.grid.omega: grid axis '0:inf:1': start, stop and step must be finite numbers"
    )


def test_a_suite_of_too_many_runs_needs_allow_large(tmp_path, monkeypatch):
    # 3 data points x (2 + 1 model points + 1 reference row) x 2 seeds = 24 runs, each grid
    # within the limit
    monkeypatch.setattr(mmbench.suite, "MAX_RUNS", 10)
    changes = dict(
        data={"name": "synthetic", "grid": {"seed": [0, 1, 2]}},
        models=[{"name": "cmmd", "grid": {"omega": [0.1, 0.2]}}, {"name": "mxo"}],
        references=["raw_xo"],
    )
    assert refused(tmp_path, **changes).startswith(
        "(top level): 24 runs (data points x (model points + reference rows) x seeds = "
        "3 x (2 + 1 + 1) x 2), more than the limit of 10;"
    )
    path = suite_file(tmp_path, **changes)
    assert len(load_suite(path, allow_large=True).runs()) == 24
    cli = CliRunner()
    result = cli.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2 and "--allow-large" in result.output
    result = cli.invoke(app, ["run", str(path), "--dry-run", "--allow-large"])
    assert result.exit_code == 0 and "24 runs: 24 pending" in result.output


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--seeds", "abc"],
            "error: --seeds 'abc': expected comma-separated integers, e.g. --seeds 0,1",
        ),
        (["--seeds", "7"], "error: seeds [7] not in suite 'valid' (it has [0, 1])"),
        (
            ["--device", "tpu"],
            "error: --device: device 'tpu' is none of cpu, cuda, cuda:N (N a GPU index) or mps",
        ),
    ],
)
def test_bad_run_options_exit_2_with_one_line(tmp_path, options, message):
    for dry_run in ([], ["--dry-run"]):
        result = CliRunner().invoke(
            app,
            [
                "run",
                str(suite_file(tmp_path)),
                "--results",
                str(tmp_path / "out"),
                *options,
                *dry_run,
            ],
        )
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert flat(result.output).startswith(message), result.output
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_an_unsafe_view_name_in_stored_generations_writes_nothing_outside(tmp_path):
    """Records written before view names were checked (or by hand) may hold any name."""
    results = tmp_path / "results"
    truth = np.zeros((2, 4))
    write_run(
        results,
        label="CMMD",
        model="cmmd",
        seed=0,
        metrics={"error_pct": 1.0},
        arrays={"generated": {"truth.../../escaped": truth, "generated.../../escaped": truth}},
    )
    result = CliRunner().invoke(app, ["figure", "generations", str(results)])
    assert result.exit_code == 2
    assert "view name '../../escaped' cannot be used in a file name" in flat(result.output)
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p.parts[0] == "results" and "figures" not in p.parts for p in written)
