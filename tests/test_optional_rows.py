"""The optional (commented-out) model rows of the paper suites: uncommented they give a valid
suite, and the throughput benchmark reads exactly those blocks."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from mmbench.suite import load_suite

ROOT = Path(__file__).parents[1]
SUITES = ["xrmb_folds", "xrmb_speakers", "flickr"]


@pytest.fixture(scope="module")
def throughput():
    """benchmarks/throughput.py as a module (benchmarks/ is not a package)."""
    path = ROOT / "benchmarks" / "throughput.py"
    spec = importlib.util.spec_from_file_location("throughput", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["throughput"]


def uncommented(text: str) -> str:
    """The suite text with its optional rows uncommented as a user would: from the first
    "# - name" line on, "# " removed after each line's indentation."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.lstrip().startswith("# - name"))
    return (
        "\n".join(lines[:first] + [re.sub(r"^(\s*)# ", r"\1", line) for line in lines[first:]])
        + "\n"
    )


@pytest.mark.parametrize("name", SUITES)
def test_uncommented_optional_rows_make_a_valid_suite_that_the_benchmark_reads(
    name, throughput, tmp_path
):
    path = ROOT / "suites" / f"{name}.yaml"
    text = path.read_text()
    rows = throughput.optional_rows(text)
    assert [row["name"] for row in rows] == ["mopoe", "mmvae_plus", "jmvae"]
    plain = load_suite(path)
    suite_file = tmp_path / path.name
    suite_file.write_text(uncommented(text))
    suite = load_suite(suite_file)  # validates every model's params and train settings
    assert [m.name for m in suite.models] == [m.name for m in plain.models] + [
        row["name"] for row in rows
    ]
    for block, row in zip(suite.models[len(plain.models) :], rows):
        assert block.label == row["label"] and block.params == row["params"]
    assert set(throughput.suite_models(f"suites/{name}.yaml")) == {m.name for m in suite.models}


def test_a_suite_without_optional_rows_has_none(throughput):
    assert throughput.optional_rows((ROOT / "suites" / "quickstart.yaml").read_text()) == []
