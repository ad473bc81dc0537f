"""The Python API and the pieces ``mmbench run`` is made of: overrides, the preflight, threads,
progress lines and ETA, the content digest of a user's file, the README's "From Python" example,
and the paper's figures shipped in the wheel."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import mmbench
from mmbench import api, progress
from mmbench.data.errors import DataError
from mmbench.executors import run_threads
from mmbench.records import (
    Coordinates,
    DataChoice,
    DownstreamSettings,
    FitSummary,
    ModelChoice,
    Record,
    Resources,
    Run,
    RunConfig,
)
from mmbench.runner import load_run_data
from mmbench.suite import SuiteError, apply_overrides, load_suite

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RAW = {
    "name": "x",
    "data": {"name": "synthetic"},
    "train": {"epochs": 5},
    "models": [{"name": "cmmd", "label": "CMMD"}, {"name": "mxo"}, {"name": "cmmd"}],
}


def test_overrides_set_dotted_paths_by_index_label_or_name_read_as_yaml():
    raw, paths = apply_overrides(
        RAW,
        [
            "train.epochs=7",
            "models.CMMD.params.omega=0.3",
            "models.mxo.grid.latent_dim=[2, 4]",
            "seeds=[0,1]",
            "train.patience=null",
            "device=cuda:1",
            "models.2.params={latent_dim: 3}",
        ],
    )
    assert raw["train"] == {"epochs": 7, "patience": None}
    assert raw["models"][0]["params"] == {"omega": 0.3}
    assert raw["models"][1]["grid"] == {"latent_dim": [2, 4]}
    assert raw["models"][2]["params"] == {"latent_dim": 3}
    assert raw["seeds"] == [0, 1] and raw["device"] == "cuda:1"
    assert RAW["train"] == {"epochs": 5} and "params" not in RAW["models"][0]  # a copy
    assert set(paths) == {
        "train.epochs",
        "models.0.params.omega",
        "models.1.grid.latent_dim",
        "seeds",
        "train.patience",
        "device",
        "models.2.params",
    }


@pytest.mark.parametrize(
    "override, message",
    [
        ("models.cmmd.params.omega=1", "'cmmd' names items [0, 2]; use the index or the label"),
        ("models.3.label=y", "models has items 0..2, not 3"),
        ("name.first=y", "name is 'x', not a mapping or a list"),
        ("=3", "is not KEY=VALUE"),
        ("train.epochs=[1", "the value '[1' is not valid YAML"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(SuiteError, match=re.escape(message)):
        apply_overrides(RAW, [override], "s.yaml")


def test_validation_errors_say_which_override_set_the_field(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(RAW))
    with pytest.raises(
        SuiteError,
        match=re.escape(
            "s.yaml: models.1.params.latent_dim: Input should be greater than or equal to 1, "
            "got 0; allowed: int >= 1 (set by the override models.mxo.params.latent_dim=0)"
        ),
    ):
        load_suite(path, ["models.mxo.params.latent_dim=0"])
    suite = api.as_suite(load_suite(path, ["seeds=[3]"]), ["train.epochs=2"])  # a Suite, again
    assert (suite.seeds, suite.train.epochs) == ([3], 2)
    assert (suite.file, suite.base_dir) == (str(path), str(tmp_path))
    assert suite.overrides == ("seeds=[3]", "train.epochs=2")


def test_threads_come_from_the_flag_then_the_suite_then_the_executor():
    config = RunConfig(
        DataChoice("synthetic"), ModelChoice("mxo"), {"epochs": 1}, DownstreamSettings(), 0
    )
    plain = Run(config, "m", Coordinates({}, "mxo", {}, 0))
    sized = Run(config, "m", Coordinates({}, "mxo", {}, 0), Resources(cpus=3))
    assert run_threads(plain, None, 2) == 2
    assert run_threads(sized, None, 2) == 3
    assert run_threads(sized, 1, 2) == 1


def _record(
    epochs: int,
    stopped_by: str,
    started: float = 0.0,
    finished: float = 66.0,
    error: str | None = None,
) -> tuple[Run, Record]:
    config = RunConfig(
        DataChoice("synthetic"), ModelChoice("mxo"), {"epochs": 40}, DownstreamSettings(), 0
    )
    run = Run(config, "CMMD", Coordinates({"fold": 1}, "cmmd", {}, 0))
    fit = FitSummary(epochs, epochs, 1.0, stopped_by)
    status = "failed" if error else "ok"
    return run, Record.of(
        run, status=status, started=started, finished=finished, fit=fit, error=error
    )


def test_a_finished_run_shows_its_real_end():
    assert (
        progress.how_it_ended(*_record(23, "early_stopping"))
        == "ok in 1m06s, 23/40 epochs (early stopping)"
    )
    assert progress.how_it_ended(*_record(40, "epochs")) == "ok in 1m06s, 40/40 epochs"
    assert (
        progress.how_it_ended(*_record(1, "closed_form", finished=0.4))
        == "ok in 0.4 s (closed form)"
    )
    assert progress.duration(3725) == "1h02m"


def test_suite_line_counts_and_eta_from_finished_durations():
    clock = progress.SuiteClock(n_todo=8, concurrency=2)
    assert clock.line() == "0 done, 8 pending; ETA after the first run"
    clock.count(_record(40, "epochs", 0.0, 10.0)[1])
    clock.count(_record(40, "epochs", 0.0, 20.0)[1])
    clock.count(None)  # lost
    # mean 15 s over 5 pending runs, 2 at once: 37.5 s
    assert clock.line() == "3 done (1 lost), 5 pending; 15 s per run, ETA 38 s"


def test_epoch_lines_come_at_most_every_interval(monkeypatch, capsys):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    lines = progress.EpochLines("CMMD seed 0", every=30.0)
    for second, epoch in ((10, 1), (29, 2), (31, 3), (45, 4), (61, 5), (100, 6)):
        now[0] = 1000.0 + second
        lines(epoch, 40, {"loss": 2.0, "valid_loss": 2.5})
    printed = capsys.readouterr().out.splitlines()
    assert [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in printed] == [
        "epoch  CMMD seed 0: 3/40, loss 2, valid loss 2.5",
        "epoch  CMMD seed 0: 5/40, loss 2, valid loss 2.5",
        "epoch  CMMD seed 0: 6/40, loss 2, valid loss 2.5",
    ]


def _npz(path: Path, shift: float) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=100)
    np.savez(
        path,
        view_a=rng.normal(size=(100, 3)) + shift,
        view_b=rng.normal(size=(100, 2)),
        labels=labels,
    )


def test_a_user_file_edited_after_the_runs_were_listed_fails_them(tmp_path):
    _npz(tmp_path / "d.npz", 0.0)
    suite = {
        "name": "own",
        "data": {"name": "npz", "options": {"path": "d.npz", "observed": ["a"]}},
        "models": [{"name": "mxo"}],
        "references": ["mean_xm"],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    run, reference = load_suite(tmp_path / "s.yaml").runs()
    assert run.base_dir == reference.base_dir == str(tmp_path)
    assert reference.role == "reference"
    assert reference.config.data.digest == run.config.data.digest is not None
    assert load_run_data(run.config, base_dir=run.base_dir).train.n > 0
    _npz(tmp_path / "d.npz", 1.0)
    with pytest.raises(DataError, match="its content changed since the runs were listed"):
        load_run_data(run.config, base_dir=run.base_dir)


def test_preflight_names_the_data_configuration_and_the_runs_it_would_fail(tmp_path):
    _npz(tmp_path / "good.npz", 0.0)
    np.savez(
        tmp_path / "bad.npz",
        view_a=np.zeros((100, 3)),
        view_b=np.zeros((100, 2)),
        labels=np.zeros(100, dtype=int),
    )  # a single class
    suite = api.as_suite(
        {
            "name": "p",
            "seeds": [0, 1],
            "data": {
                "name": "npz",
                "options": {"observed": ["a"]},
                "grid": {"path": [str(tmp_path / "good.npz"), str(tmp_path / "bad.npz")]},
            },
            "models": [{"name": "mxo"}],
        }
    )
    runs = suite.runs()  # the model runs, then the 3 reference rows of each file and seed
    api.check_data(runs[:2], keep=False)  # the good file's model runs
    with pytest.raises(api.PreflightError) as error:
        api.check_data(runs)
    message = str(error.value)
    assert message.startswith(
        f"data set npz (observed=['a'], path={tmp_path / 'bad.npz'}), "
        "needed by 8 of the 16 pending run(s), cannot be loaded: "
    )
    assert "labels hold a single class (0)" in message
    with pytest.raises(DataError, match=r"file gone\.npz not found"):
        api.as_suite(
            {
                "name": "q",
                "data": {"name": "npz", "options": {"path": "gone.npz", "observed": ["a"]}},
                "models": [{"name": "mxo"}],
            }
        ).runs()
    with pytest.raises(api.PreflightError, match="'gpu' is not a device"):
        api.check_device("gpu")


def test_import_mmbench_is_light_and_every_name_resolves():
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mmbench; print(sorted({'torch', 'pandas', 'numpy', "
            "'sklearn', 'pydantic'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
    for name in mmbench.__all__:
        assert getattr(mmbench, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        mmbench.nosuch  # noqa: B018
    assert mmbench.make_model("mxo", latent_dim=3).config.latent_dim == 3


def from_python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From Python") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the section lost its example"
    return found.group(1)


def test_readme_from_python_example_runs(tmp_path, monkeypatch):
    (tmp_path / "suites").mkdir()
    shutil.copy(REPO / "suites" / "quickstart.yaml", tmp_path / "suites")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        namespace: dict = {}
        exec(compile(from_python_example(), "README.md", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    records, results = namespace["records"], namespace["results"]
    assert [r.label for r in records] == ["CMMD", "M-xO"] and all(r.ok for r in records)
    reported = {r.run_id for r in results.records if r.role != "trial"}
    assert reported == {r.run_id for r in records}  # the final runs of the tuned quickstart
    assert {r.environment["threads"] for r in records} == {1}
    assert all(r.config.train["batch_size"] == 64 for r in records)
    errors = namespace["errors"]
    assert sorted(errors.label) == ["CMMD", "M-xO"] and errors.value.between(0, 100).all()
    test = namespace["test"]
    proba = namespace["proba"]
    assert proba.shape == (test.n, 10) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert namespace["generated"]["x2"].shape == (test.n, 64)
    x1 = namespace["x1"]  # x2 is a linear map of x1, which CCA recovers up to its ridge
    assert np.abs(namespace["x2_hat"] - 2 * x1[:, :3]).max() < 0.2
    assert (tmp_path / "results" / "quickstart-smoke" / "suite.json").is_file()


def test_the_wheel_ships_the_papers_figures_and_table_finds_them(tmp_path):
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("mmbench", "cmmd", "baselines"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / file, source)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            tmp_path / "dist",
            source,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("mmbench-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assert "mmbench/reference/cmmd_paper_results.csv" in names
    assert f"mmbench-{mmbench.__version__}.dist-info/entry_points.txt" in names

    sys.path.insert(0, str(REPO / "tests"))
    try:
        from handmade_results import write_run
    finally:
        sys.path.remove(str(REPO / "tests"))
    results = tmp_path / "results"
    for seed in (0, 1):
        write_run(
            results,
            label="CMMD",
            model="cmmd",
            seed=seed,
            metrics={"error_pct": 30.0},
            options={"protocol": "folds"},
            data_grid={"fold": 1},
        )
    # the installed files alone, away from the checkout
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mmbench, sys; from mmbench.cli import "
            "app; print(mmbench.__file__); app(['table', sys.argv[1]])",
            str(results),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(str(tmp_path / "site" / "mmbench"))
    assert "CMMD (paper)" in shown.stdout and "30.00" in shown.stdout
