"""The README's own-data example: its code writes a file that its suite loads."""

import re
from pathlib import Path

import numpy as np

from mmbench.data import load_dataset
from mmbench.suite import load_suite

README = Path(__file__).resolve().parents[1] / "README.md"


def own_data_example() -> tuple[str, str]:
    """(the python block, the yaml block) of the README's "Your own data" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Your own data") :]
    section = section[: section.index("\n## ")]
    python = re.search(r"```python\n(.*?)```", section, re.S)
    suite = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert python and suite, "the section lost its python or yaml example"
    return python.group(1), suite.group(1)


def test_readme_example_writes_a_file_its_suite_loads(tmp_path, monkeypatch):
    python, suite_text = own_data_example()
    assert len(python.strip().splitlines()) <= 10
    suite_dir, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    suite_dir.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(suite_dir)
    exec(compile(python, "README.md", "exec"), {})
    (suite_dir / "mydata.yaml").write_text(suite_text)
    suite = load_suite(suite_dir / "mydata.yaml")
    monkeypatch.chdir(elsewhere)  # the path is taken from the suite's folder
    data = load_dataset(suite.data.name, base_dir=suite_dir, **suite.data.options)
    with np.load(suite_dir / "mydata.npz") as written:
        labels, image = written["labels"], written["view_image"]
    assert data.n_classes == 3 and data.info["classes"] == [0, 1, 2]
    assert data.train.n + data.valid.n + data.test.n == len(labels) == 600
    assert data.train.observed == ("image",) and data.train.missing == ("tags",)
    assert data.train.modality("image").image_shape == (8, 8)
    assert data.train.modality("tags").likelihood == "bernoulli"
    assert data.train.dim("image") == 64 and data.train.dim("tags") == 20
    every_row = np.concatenate([getattr(data, s).data["image"] for s in ("train", "valid", "test")])
    assert np.allclose(np.sort(every_row[:, 0]), np.sort(image.reshape(600, -1)[:, 0]), atol=1e-6)
