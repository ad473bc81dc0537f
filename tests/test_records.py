"""Typed runs and records: run ids hash the config JSON exactly as they always have, record.json
written by earlier versions loads and resumes, the JSON layout round-trips, and the reports and
the command line start without torch."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from handmade_results import write_run
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.records import (
    Coordinates,
    DataChoice,
    DownstreamSettings,
    FitSummary,
    ModalityInfo,
    ModelChoice,
    Record,
    Run,
    RunConfig,
    Timings,
    run_id,
)
from mmbench.stats import GaussianStats, Generations, PosteriorStats, spread
from mmbench.store import RunStore

REPOSITORY = Path(__file__).parents[1]
# Written by mmbench before runs and records had types (commit 429a8b1): the quickstart's CCA
# run on seed 0 with --smoke, and a CCA run that failed (n_components -3).
LEGACY = Path(__file__).parent / "legacy_results"
LEGACY_OK, LEGACY_FAILED = "a5186c814bb3", "f632f0568154"


def legacy_json(run: str) -> dict:
    return json.loads((LEGACY / "runs" / run / "record.json").read_text())


@pytest.fixture
def legacy(tmp_path):
    """A copy of the legacy results directory, free to be written to."""
    return Path(shutil.copytree(LEGACY, tmp_path / "legacy"))


def sha256_12(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def test_run_id_hashes_the_config_json_and_the_role_only_when_not_a_model_run():
    as_json = {
        "data": {"name": "synthetic", "options": {"n_classes": 3}},
        "model": {"name": "mxo", "params": {"hidden": [8]}},
        "train": {"epochs": 2, "seed": 7},
        "downstream": {"classifier": "linear_svm", "grid": None, "max_train": None},
        "seed": 1,
    }
    config = RunConfig(
        DataChoice("synthetic", {"n_classes": 3}),
        ModelChoice("mxo", {"hidden": [8]}),
        {"epochs": 2, "seed": 7},
        DownstreamSettings(),
        seed=1,
    )
    assert config.to_json() == as_json
    coordinates = Coordinates({}, "mxo", {}, 1)
    assert Run(config, "M-xO", coordinates).run_id == sha256_12(as_json)
    trial = Run(config, "M-xO", coordinates, role="trial")
    assert trial.run_id == sha256_12({**as_json, "role": "trial"}) != sha256_12(as_json)
    smoke = RunConfig.from_json({**as_json, "smoke": True})
    assert smoke.smoke and run_id(smoke) == sha256_12({**as_json, "smoke": True})


def test_legacy_records_load_and_write_back_the_same_json():
    for run in (LEGACY_OK, LEGACY_FAILED):
        stored = legacy_json(run)
        record = Record.from_json(stored)
        assert record.run_id == run == run_id(record.config)  # the config hashes as it did
        written = json.loads(json.dumps(record.to_json()))
        assert written == {**stored, "role": "model"}  # only the new field is added
        assert [key for key in written if key != "role"] == list(stored)  # in the same order
    ok = Record.from_json(legacy_json(LEGACY_OK))
    failed = Record.from_json(legacy_json(LEGACY_FAILED))
    assert ok.ok and ok.metrics["error_pct"] == pytest.approx(35.546875)
    assert ok.fit.stopped_by == "closed_form" and ok.timings.train_seconds > 0
    assert ok.modalities["x1"] == ModalityInfo("bernoulli", (28, 28))
    assert ok.config.smoke and ok.config.epochs == 2 and ok.coordinates.model == "cca"
    assert failed.status == "failed" and failed.metrics == {} and failed.fit is None
    assert failed.error == "ValueError: cca: n_components must be >= 1, got -3"


def test_a_full_record_round_trips_through_its_json():
    config = RunConfig(
        DataChoice("xrmb", {"protocol": "folds", "fold": 2}),
        ModelChoice("cmmd", {"omega": 0.5, "hidden": [8, 8]}),
        {"epochs": 3, "lr": 1e-3, "seed": 11},
        DownstreamSettings("mlp", {"alpha": [0.1]}, 100),
        seed=2,
        smoke=True,
    )
    run = Run(config, "CMMD", Coordinates({"fold": 2}, "cmmd", {"omega": 0.5}, 2), role="trial")
    record = Record.of(
        run,
        status="ok",
        started=1.0,
        finished=2.0,
        environment={"torch": "x"},
        metrics={"error_pct": 12.5},
        timings=Timings(3.0, 0.25),
        fit=FitSummary(3, 2, -1.5, "patience", [{"epoch": 1, "loss": 0.5}]),
        diagnostics={"kl": [0.1]},
        downstream_params={"alpha": 0.1},
        metrics_by_group={"7": {"error_pct": 10.0}},
        data_info={"n": 5},
        modalities={"x1": ModalityInfo("gaussian", (2, 3))},
        artifacts=("generated.npz",),
    )
    text = json.dumps(record.to_json())
    assert Record.from_json(json.loads(text)) == record
    assert json.loads(text)["role"] == "trial"


def test_the_store_reads_typed_records_skips_staging_and_reports_a_broken_file(tmp_path):
    kept = write_run(
        tmp_path,
        label="CMMD",
        model="cmmd",
        seed=0,
        metrics={"error_pct": 1.0},
        arrays={"representation": {"z": np.ones((2, 3)), "labels": np.zeros(2)}},
    )
    store = RunStore(tmp_path)
    (record,) = store.records()
    assert record.run_id == kept and record.artifacts == ("representation.npz",)
    assert store.has(kept, "representation") and not store.has(kept, "posteriors")
    np.testing.assert_array_equal(store.arrays(kept, "representation")["z"], np.ones((2, 3)))
    staging = tmp_path / "runs" / f".{kept}.123.tmp"  # left behind by a killed process
    staging.mkdir()
    (staging / "record.json").write_text("{")
    assert [r.run_id for r in store.records()] == [kept]
    broken = tmp_path / "runs" / "0123456789ab"
    broken.mkdir()
    (broken / "record.json").write_text(json.dumps({"run_id": "0123456789ab"}))
    assert [r.run_id for r in store.records()] == [kept]  # reported and left out
    assert store.unreadable == {broken / "record.json": "the field 'label' is missing"}
    result = CliRunner().invoke(app, ["table", str(tmp_path)])
    assert result.exit_code == 0
    assert (
        "0123456789ab/record.json cannot be read: the field 'label' is missing"
        in result.output.replace("\n", "")
    )


# The quickstart as it was when the legacy records were written (before it was tuned), CCA only
LEGACY_QUICKSTART = {
    "name": "quickstart",
    "seed": 0,
    "seeds": [0, 1, 2],
    "data": {
        "name": "mnist_embedded",
        "options": {"seed": 0, "valid_fraction": 0.2, "test_fraction": 0.2},
    },
    "train": {"epochs": 40, "batch_size": 100, "lr": 1.0e-3, "patience": 10},
    "downstream": {"classifier": "linear_svm"},
    "models": [
        {"name": "cca", "label": "CCA", "params": {"n_components": 20, "reg1": 0.1, "reg2": 0.1}}
    ],
}


def test_legacy_results_make_tables_and_count_as_done(legacy, tmp_path):
    table = CliRunner().invoke(app, ["table", str(legacy), "--no-paper"])
    assert table.exit_code == 0, table.output
    assert "| CCA | 35.55 |" in table.output  # 35.546875, the legacy record's error (no mark)
    suite = tmp_path / "quickstart.yaml"
    suite.write_text(json.dumps(LEGACY_QUICKSTART))
    plan = CliRunner().invoke(
        app,
        ["run", str(suite), "--models", "cca", "--smoke", "--results", str(legacy), "--dry-run"],
    )
    assert plan.exit_code == 0, plan.output
    row = next(line for line in plan.output.splitlines() if LEGACY_OK in line)
    assert row.split("│")[-2].strip() == "ok"
    assert "3 runs: 1 ok, 2 pending" in plan.output


def test_stored_statistics_round_trip_through_their_arrays():
    rng = np.random.default_rng(0)
    posteriors = PosteriorStats(
        GaussianStats(rng.random((4, 2)), rng.random((4, 2))), decoder_logvar=rng.random((4, 3))
    )
    back = PosteriorStats.from_arrays(posteriors.to_arrays())
    np.testing.assert_array_equal(back.z_given_xO.mean, posteriors.z_given_xO.mean)
    assert back.z_given_xM is None and back.decoder_logvar.shape == (4, 3)
    generations = Generations(
        generated={"x2": rng.random((3, 2))},
        truth={"x2": np.ones((3, 2))},
        observed={"x1": np.zeros((3, 5))},
        vocabulary={"x2": np.array(["sky", "sea"])},
        index=np.arange(3),
    )
    arrays = generations.to_arrays()
    assert sorted(arrays) == ["generated.x2", "index", "observed.x1", "truth.x2", "vocabulary.x2"]
    back = Generations.from_arrays(arrays)
    assert back.vocabulary["x2"].tolist() == ["sky", "sea"] and back.index.tolist() == [0, 1, 2]


def test_spread_picks_points_evenly_over_the_split():
    assert spread(4, 3).tolist() == [0, 2, 3]  # round(0, 1.5, 3), halves to even
    assert spread(101, 5).tolist() == [0, 25, 50, 75, 100]
    assert spread(3, 64).tolist() == [0, 1, 2]  # never more points than the split has


TORCH_FREE = """
import sys
from pathlib import Path
import mmbench.cli
heavy = sorted({"torch", "pandas", "matplotlib", "sklearn"} & set(sys.modules))
assert not heavy, f"import mmbench.cli imported {heavy}"
import mmbench.cli.report, mmbench.report.collapse, mmbench.report.figures, mmbench.report.runs
import mmbench.report.style, mmbench.report.tables, mmbench.results
from mmbench.cli import app
for args in (["table", sys.argv[1], "--no-paper"],
             ["collapse", sys.argv[2], "--points", "3", "--out", sys.argv[3]],
             ["figure", "tsne", sys.argv[2], "--out", sys.argv[3]]):
    try:
        app(args)
    except SystemExit as end:
        assert end.code == 0, (args, end.code)
assert "torch" not in sys.modules, "a report imported torch"
assert (Path(sys.argv[3]) / "collapse.pdf").is_file() and (Path(sys.argv[3]) / "tsne.png").is_file()
print("torch-free")
"""


def test_reports_and_the_command_line_start_without_torch(legacy, tmp_path):
    results = tmp_path / "handmade"
    rng = np.random.default_rng(0)
    zeros = np.zeros((20, 2), dtype=np.float32)
    write_run(
        results,
        label="CMMD",
        model="cmmd",
        seed=0,
        metrics={"error_pct": 1.0},
        arrays={
            "posteriors": {"z_given_xO.mean": zeros, "z_given_xO.logvar": zeros},
            "representation": {"z": rng.random((20, 3)), "labels": np.arange(20) % 2},
        },
    )
    done = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(legacy), str(results), str(tmp_path / "figures")],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "torch-free" in done.stdout
