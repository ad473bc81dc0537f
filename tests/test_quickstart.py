"""The quickstart suite end to end through the CLI, on a tiny budget: every model tuned (two
trials each on the smoke budget), then its best trial on a replicate seed."""

import json
import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.registry import builtin_models, model_class
from mmbench.suite import DEFAULT_REFERENCES, load_suite
from mmbench.tuning import SMOKE_TRIALS

QUICKSTART = Path(__file__).parents[1] / "suites" / "quickstart.yaml"


def test_quickstart_tunes_and_records_every_model_and_resumes(tmp_path):
    suite = load_suite(QUICKSTART)
    labels = {m.display_label: m.name for m in suite.models}
    models = set(builtin_models()) - set(DEFAULT_REFERENCES)
    assert set(labels.values()) == models, "quickstart runs every model"
    assert suite.tune is not None and all(m.search for m in suite.models), "and tunes each"
    references = {"raw xO": "raw_xo", "mean xM": "mean_xm", "ridge xO→xM": "ridge_xo_xm"}
    assert suite.references == list(DEFAULT_REFERENCES)
    n_finals = len(labels)  # one replicate seed keeps the test short
    n_runs = n_finals + len(labels) * SMOKE_TRIALS + len(references)
    results = tmp_path / "results"
    command = ["run", str(QUICKSTART), "--smoke", "--seeds", "0", "--results", str(results)]
    runner = CliRunner()
    first = runner.invoke(app, command)
    assert first.exit_code == 0, first.output
    records = [json.loads(p.read_text()) for p in results.glob("runs/*/record.json")]
    assert len(records) == n_runs and all(r["status"] == "ok" for r in records), first.output
    assert sum(r["role"] == "model" for r in records) == n_finals
    assert sum(r["role"] == "reference" for r in records) == len(references)
    table = pd.read_csv(results / "results.csv")
    table = table[table.role != "trial"]
    errors = table[table.metric == "error_pct"]
    assert dict(errors.groupby("label").seed.apply(sorted)) == {
        label: [0] for label in [*labels, "raw xO"]
    }
    assert errors.value.between(0, 100).all()
    generators = {
        label
        for label, name in {**labels, **references}.items()
        if "generate" in model_class(name).capabilities
    }
    assert set(table[table.metric == "rmse"].label) == generators
    assert {"CMMD", "CCA", "MVAE", "mean xM", "ridge xO→xM"} <= generators
    assert "M-xO" not in generators and "raw xO" not in generators
    # the summary lists the models in the suite's order
    positions = [first.output.index(label + " ") for label in labels]
    assert positions == sorted(positions)

    stamps = {p: p.stat().st_mtime_ns for p in results.glob("runs/*/record.json")}
    again = runner.invoke(app, command)
    assert again.exit_code == 0 and "to run now" not in again.output
    assert stamps == {p: p.stat().st_mtime_ns for p in results.glob("runs/*/record.json")}

    # a lost record is redone, and only that one
    lost = next(p for p in stamps if json.loads(p.read_text())["role"] == "model").parent
    shutil.rmtree(lost)
    third = runner.invoke(app, command)
    assert third.exit_code == 0 and "0 trial(s) and 1 other run(s) to run now" in third.output
    assert len(list(results.glob("runs/*/record.json"))) == n_runs
