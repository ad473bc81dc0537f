"""The quickstart suite end to end through the CLI, on a tiny budget."""
import json
import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from mmbench.cli import app
from mmbench.registry import builtin_models, model_class
from mmbench.suite import DEFAULT_REFERENCES, load_suite

QUICKSTART = Path(__file__).parents[1] / "suites" / "quickstart.yaml"


def test_quickstart_runs_records_every_model_and_seed_and_resumes(tmp_path):
    suite = load_suite(QUICKSTART)
    labels = {m.display_label: m.name for m in suite.models}
    models = set(builtin_models()) - set(DEFAULT_REFERENCES)
    assert set(labels.values()) == models, "quickstart runs every model"
    references = {"raw xO": "raw_xo", "mean xM": "mean_xm", "ridge xO→xM": "ridge_xo_xm"}
    assert suite.references == list(DEFAULT_REFERENCES)
    n_runs = (len(labels) + len(references)) * len(suite.seeds)

    results = tmp_path / "results"
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(QUICKSTART), "--smoke", "--results", str(results)])
    assert first.exit_code == 0, first.output
    records = [json.loads(p.read_text()) for p in results.glob("runs/*/record.json")]
    assert len(records) == n_runs and all(r["status"] == "ok" for r in records), first.output
    table = pd.read_csv(results / "results.csv")
    errors = table[table.metric == "error_pct"]
    assert dict(errors.groupby("label").seed.apply(sorted)) == {
        label: suite.seeds for label in [*labels, "raw xO"]}
    assert errors.value.between(0, 100).all()
    generators = {label for label, name in {**labels, **references}.items()
                  if "generate" in model_class(name).capabilities}
    assert set(table[table.metric == "rmse"].label) == generators
    assert {"CMMD", "CCA", "MVAE", "mean xM", "ridge xO→xM"} <= generators
    assert "M-xO" not in generators and "raw xO" not in generators
    # the summary lists the models in the suite's order
    positions = [first.output.index(label + " ") for label in labels]
    assert positions == sorted(positions)

    stamps = {p: p.stat().st_mtime_ns for p in results.glob("runs/*/record.json")}
    again = runner.invoke(app, ["run", str(QUICKSTART), "--smoke", "--results", str(results)])
    assert again.exit_code == 0 and f"{n_runs} already done" in again.output
    assert stamps == {p: p.stat().st_mtime_ns for p in results.glob("runs/*/record.json")}

    # a lost record is redone, and only that one
    lost = next(iter(stamps)).parent
    shutil.rmtree(lost)
    third = runner.invoke(app, ["run", str(QUICKSTART), "--smoke", "--results", str(results)])
    assert third.exit_code == 0 and f"{n_runs - 1} already done" in third.output
    assert len(list(results.glob("runs/*/record.json"))) == n_runs
