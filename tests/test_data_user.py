"""Your own data from .npz and .parquet files: layouts, splits, and every bad input refused with
one clear error naming the file."""

import pickle
import re
import sys

import numpy as np
import pandas as pd
import pytest

from mmbench.data import load_dataset
from mmbench.data.errors import DataError

N = 30
# train rows 0..19: 14 dogs, 6 cats; valid 20..23: dog, cat, dog, cat; test 24..29: 4 dogs, 2 cats
LABELS = np.array(["dog"] * 14 + ["cat"] * 6 + ["dog", "cat"] * 2 + ["dog"] * 4 + ["cat"] * 2)
SPLIT = np.array(["train"] * 20 + ["valid"] * 4 + ["test"] * 6)


def views():
    """view a: images (n, 2, 3) whose first pixel is the sample id; view b: (n, 4) in [0, 1]."""
    a = np.zeros((N, 2, 3))
    a[:, 0, 0] = np.arange(N)
    a[:, 1, 2] = 5.0
    b = np.tile([0.0, 0.25, 0.5, 1.0], (N, 1))
    return a, b


def write_parquet(path, a, b, labels, split=None):
    columns = {f"a__{i}": a.reshape(N, -1)[:, i] for i in range(6)}
    columns.update({f"b__{i}": b[:, i] for i in range(4)})
    columns["labels"] = labels
    if split is not None:
        columns["split"] = split
    pd.DataFrame(columns).to_parquet(path)


def test_npz_with_split_column(tmp_path):
    a, b = views()
    np.savez(
        tmp_path / "mine.npz",
        view_a=a,
        view_b=b,
        labels=LABELS,
        split=SPLIT,
        groups=np.arange(N) % 3,
    )
    data = load_dataset("npz", path=str(tmp_path / "mine.npz"), observed=["a"], bernoulli=["b"])
    assert (data.train.n, data.valid.n, data.test.n) == (20, 4, 6)
    assert data.train.data["a"][:, 0].tolist() == list(range(20))  # rows in file order
    assert data.train.data["a"][0].tolist() == [0, 0, 0, 0, 0, 5]  # images flattened row by row
    assert data.train.modality("a").image_shape == (2, 3)
    assert data.train.modality("b").likelihood == "bernoulli"
    assert data.train.modality("a").likelihood == "gaussian"
    assert data.train.missing == ("b",)
    # classes in sorted order: cat -> 0, dog -> 1
    assert data.train.labels.tolist() == [1] * 14 + [0] * 6
    assert data.test.labels.tolist() == [1] * 4 + [0] * 2
    assert data.info["classes"] == ["cat", "dog"] and data.n_classes == 2
    assert data.test.groups.tolist() == [24 % 3, 25 % 3, 26 % 3, 27 % 3, 28 % 3, 29 % 3]


def test_npz_without_split_gets_a_seeded_stratified_split(tmp_path):
    a, b = views()
    np.savez(tmp_path / "mine.npz", view_a=a, view_b=b, labels=LABELS)
    options = dict(
        path=str(tmp_path / "mine.npz"), observed=["b"], valid_fraction=0.1, test_fraction=0.2
    )
    data = load_dataset("npz", seed=0, **options)
    # 20 dogs -> 14 / 2 / 4, 10 cats -> 7 / 1 / 2
    assert np.bincount(data.train.labels).tolist() == [7, 14]
    assert np.bincount(data.valid.labels).tolist() == [1, 2]
    assert np.bincount(data.test.labels).tolist() == [2, 4]
    ids = [set(getattr(data, s).data["a"][:, 0].tolist()) for s in ("train", "valid", "test")]
    assert set().union(*ids) == set(range(N)) and sum(map(len, ids)) == N
    again, other = load_dataset("npz", seed=0, **options), load_dataset("npz", seed=1, **options)
    assert np.array_equal(again.test.data["a"], data.test.data["a"])
    assert not np.array_equal(other.test.data["a"], data.test.data["a"])


def test_parquet_matches_the_npz_layout(tmp_path):
    a, b = views()
    write_parquet(tmp_path / "mine.parquet", a, b, LABELS, SPLIT)
    data = load_dataset("parquet", path=str(tmp_path / "mine.parquet"), observed=["a"])
    assert (data.train.n, data.valid.n, data.test.n) == (20, 4, 6)
    assert data.train.dim("a") == 6 and data.train.dim("b") == 4
    assert np.array_equal(data.valid.data["a"], a.reshape(N, -1)[20:24].astype(np.float32))
    assert np.array_equal(data.test.data["b"], b[24:].astype(np.float32))
    assert data.test.labels.tolist() == [1] * 4 + [0] * 2


def test_parquet_multilabel_columns(tmp_path):
    a, b = views()
    frame = pd.DataFrame(
        {
            "a__0": a[:, 0, 0],
            "b__1": b[:, 1],
            "b__0": b[:, 0],
            "labels__0": np.arange(N) % 2,
            "labels__1": np.ones(N, dtype=int),
        }
    )
    frame.to_parquet(tmp_path / "multi.parquet")
    data = load_dataset("parquet", path=str(tmp_path / "multi.parquet"), observed=["a"])
    assert data.multilabel and data.n_classes == 2
    assert data.train.data["b"][0].tolist() == [0.0, 0.25]  # feature order from the column names
    everything = np.concatenate([data.train.labels, data.valid.labels, data.test.labels])
    assert sorted(map(tuple, everything.tolist())) == sorted((i % 2, 1) for i in range(N))


def test_standardize_option_uses_training_rows(tmp_path):
    a, b = views()
    np.savez(tmp_path / "mine.npz", view_a=a, view_b=b, labels=LABELS, split=SPLIT)
    data = load_dataset("npz", path=str(tmp_path / "mine.npz"), observed=["a"], standardize=["a"])
    # training ids 0..19: mean 9.5, std sqrt((20^2 - 1) / 12)
    std = np.sqrt((20**2 - 1) / 12)
    assert np.allclose(data.test.data["a"][:, 0], (np.arange(24, 30) - 9.5) / std, atol=1e-5)
    assert np.allclose(data.test.data["b"], b[24:])  # b is left alone


def test_relative_path_is_found_in_the_data_directory(tmp_path):
    a, b = views()
    np.savez(tmp_path / "mine.npz", view_a=a, view_b=b, labels=LABELS)
    data = load_dataset("npz", data_dir_=tmp_path, path="mine.npz", observed=["a"])
    assert data.train.n + data.valid.n + data.test.n == N


def test_relative_path_is_looked_for_in_the_base_directory_first(tmp_path, monkeypatch):
    a, b = views()
    suite_dir, data_dir, work_dir = tmp_path / "suite", tmp_path / "data", tmp_path / "work"
    for folder, first_id in ((suite_dir, 100), (data_dir, 200), (work_dir, 300)):
        folder.mkdir()
        marked = a.copy()
        marked[:, 0, 0] += first_id
        np.savez(folder / "mine.npz", view_a=marked, view_b=b, labels=LABELS, split=SPLIT)
    monkeypatch.chdir(work_dir)

    def first_id(**where):
        data = load_dataset("npz", path="mine.npz", observed=["a"], **where)
        return data.train.data["a"][0, 0]

    assert first_id(base_dir=suite_dir, data_dir_=data_dir) == 100
    assert first_id(data_dir_=data_dir) == 300  # no base directory: the working directory
    (work_dir / "mine.npz").unlink()
    assert first_id(data_dir_=data_dir) == 200
    with pytest.raises(
        DataError,
        match=rf"npz: file gone\.npz not found \(looked in "
        rf"{re.escape(str(suite_dir / 'gone.npz'))}, "
        rf"{re.escape(str(work_dir / 'gone.npz'))}, "
        rf"{re.escape(str(data_dir / 'gone.npz'))}\)",
    ):
        load_dataset("npz", path="gone.npz", observed=["a"], base_dir=suite_dir, data_dir_=data_dir)


def test_user_file_errors_are_named(tmp_path):
    a, b = views()
    np.savez(tmp_path / "mine.npz", view_a=a, view_b=b, labels=LABELS)
    path = str(tmp_path / "mine.npz")
    with pytest.raises(DataError, match=r"the option observed is required"):
        load_dataset("npz", path=path)
    with pytest.raises(DataError, match=r"observed names \['x'\]"):
        load_dataset("npz", path=path, observed=["x"])
    with pytest.raises(DataError, match=r"view 'a' has values outside \[0, 1\]"):
        load_dataset("npz", path=path, observed=["b"], bernoulli=["a"])
    np.savez(
        tmp_path / "split.npz", view_a=a, labels=LABELS, split=np.array(["train", "tset"] * 15)
    )
    with pytest.raises(DataError, match=r"split holds \['tset'\]; expected only"):
        load_dataset("npz", path=str(tmp_path / "split.npz"), observed=["a"])
    frame = pd.DataFrame({"a__0": a[:, 0, 0], "a__2": a[:, 0, 1], "labels": LABELS})
    frame.to_parquet(tmp_path / "gap.parquet")
    with pytest.raises(DataError, match=r"view 'a' has no column\(s\) \['a__1'\]"):
        load_dataset("parquet", path=str(tmp_path / "gap.parquet"), observed=["a"])


# --- bad contents: one clear error naming the file ---------------------------------------------


def refused(path, loader="npz", **options):
    """The message of the DataError that loading ``path`` raises."""
    with pytest.raises(DataError) as raised:
        load_dataset(loader, path=str(path), **{"observed": ["a"], **options})
    message = str(raised.value)
    assert "allow_pickle" not in message
    return message


def two_views(n=N, labels=LABELS, **replaced):
    """{"view_a": (n, 3), "view_b": (n, 2), "labels": labels} with entries replaced."""
    rng = np.random.default_rng(0)
    arrays = {
        "view_a": rng.normal(size=(n, 3)),
        "view_b": rng.normal(size=(n, 2)),
        "labels": labels,
    }
    arrays.update(replaced)
    return {key: value for key, value in arrays.items() if value is not None}


@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_values_that_are_not_finite_are_refused_with_view_row_and_column(tmp_path, bad, shown):
    arrays = two_views()
    arrays["view_b"][7, 1] = bad
    arrays["view_b"][9, 0] = bad
    np.savez(tmp_path / "bad.npz", **arrays)
    assert refused(tmp_path / "bad.npz") == (
        f"{tmp_path / 'bad.npz'}: view 'b' holds {shown} at row 7, column 1 (2 value(s) in all); "
        "every value must be a finite number: drop or impute those rows"
    )


def test_float64_values_beyond_float32_are_refused(tmp_path):
    arrays = two_views()
    arrays["view_a"][3, 2] = 1e39
    np.savez(tmp_path / "big.npz", **arrays)
    assert refused(tmp_path / "big.npz") == (
        f"{tmp_path / 'big.npz'}: view 'a' holds 1e+39 at row 3, column 2 (1 value(s) in all), "
        "beyond the float32 range (±3.4e+38) that models compute in; rescale the view"
    )
    image = np.zeros((N, 2, 3))
    image[4, 1, 2] = np.nan
    np.savez(tmp_path / "image.npz", **two_views(view_a=image))
    assert "view 'a' holds nan at row 4, position (1, 2)" in refused(tmp_path / "image.npz")


def test_a_view_needs_columns_numbers_and_one_row_per_label(tmp_path):
    np.savez(tmp_path / "empty_view.npz", **two_views(view_b=np.zeros((N, 0))))
    assert refused(tmp_path / "empty_view.npz") == (
        f"{tmp_path / 'empty_view.npz'}: view 'b' has shape (30, 0), no columns; a view needs at "
        "least one value per row"
    )
    np.savez(tmp_path / "short.npz", **two_views(view_b=np.zeros((N - 1, 2))))
    assert refused(tmp_path / "short.npz") == (
        f"{tmp_path / 'short.npz'}: view 'b' (one row per label) has shape (29, 2); expected "
        "(30, 2)"
    )
    np.savez(tmp_path / "words.npz", **two_views(view_b=np.full((N, 2), "x")))
    assert refused(tmp_path / "words.npz") == (
        f"{tmp_path / 'words.npz'}: view 'b' holds <U1 values; a view must hold numbers"
    )


def test_zero_rows_are_refused(tmp_path):
    np.savez(tmp_path / "none.npz", view_a=np.zeros((0, 3)), labels=np.zeros(0))
    assert refused(tmp_path / "none.npz") == (
        f"{tmp_path / 'none.npz'}: no rows (labels has shape (0,)); the file needs one row per "
        "sample"
    )


def test_missing_and_fractional_labels_and_a_single_class_are_refused(tmp_path):
    labels = np.arange(N) % 3.0
    labels[[5, 8]] = np.nan
    np.savez(tmp_path / "nan.npz", **two_views(labels=labels))
    assert refused(tmp_path / "nan.npz") == (
        f"{tmp_path / 'nan.npz'}: labels are missing (NaN, inf or None) in 2 of 30 rows, first at "
        "row 5; give every row a class, or drop the unlabelled rows"
    )
    pd.DataFrame({"a__0": np.zeros(N), "labels": ["x", None] * 15}).to_parquet(
        tmp_path / "none.parquet"
    )
    assert "labels are missing (NaN, inf or None) in 15 of 30 rows, first at row 1" in refused(
        tmp_path / "none.parquet", "parquet"
    )
    n = 600
    np.savez(tmp_path / "target.npz", **two_views(n, np.random.default_rng(1).random(n)))
    assert refused(tmp_path / "target.npz").startswith(
        f"{tmp_path / 'target.npz'}: labels hold fractional numbers (e.g. 0.511822; 600 distinct "
        "values in 600 rows); labels are classes: use integers or strings, or bin a continuous "
        "target into classes"
    )
    np.savez(tmp_path / "one.npz", **two_views(labels=np.array(["dog"] * N)))
    assert refused(tmp_path / "one.npz") == (
        f"{tmp_path / 'one.npz'}: labels hold a single class ('dog') in all 30 rows; "
        "classification needs at least 2 classes"
    )
    indicators = np.zeros((N, 2))
    indicators[6, 1] = 2
    np.savez(tmp_path / "multi.npz", **two_views(labels=indicators))
    assert refused(tmp_path / "multi.npz") == (
        f"{tmp_path / 'multi.npz'}: labels: 2-D labels must be 0/1 indicators (n, n_labels); "
        "row 6, column 1 holds 2.0"
    )


def test_every_split_needs_rows_of_two_classes(tmp_path):
    n = 600
    np.savez(tmp_path / "ids.npz", **two_views(n, np.arange(n)))  # one row per class
    assert refused(tmp_path / "ids.npz") == (
        f"{tmp_path / 'ids.npz'}: after the split (random with valid_fraction 0.1 and "
        "test_fraction 0.2, stratified by class, seed 0) the valid split holds 0 row(s) of 0 "
        "class(es); every split needs at least 2 rows of at least 2 classes: 600 of the 600 "
        "classes have fewer than 10 rows, too few to reach every split; merge small classes or "
        "add rows"
    )
    np.savez(
        tmp_path / "split.npz",
        **two_views(split=SPLIT, labels=np.array(["dog", "cat"] * 12 + ["dog"] * 6)),
    )
    assert refused(tmp_path / "split.npz") == (
        f"{tmp_path / 'split.npz'}: after the split (from the file's split column) the test split "
        "holds 6 row(s) of 1 class(es); every split needs at least 2 rows of at least 2 classes: "
        "move rows of more classes into it in the split column"
    )


def test_view_names_that_are_unsafe_in_file_names_are_refused(tmp_path):
    np.savez(tmp_path / "climb.npz", **{**two_views(), "view_../../evil": np.zeros((N, 2))})
    assert refused(tmp_path / "climb.npz") == (
        f"{tmp_path / 'climb.npz'}: view name '../../evil' cannot be used in a file name: use 1 "
        "to 100 letters, digits, '_', '.' or '-', not starting with '.' (figures are written per "
        "view); rename that view in the file"
    )
    pd.DataFrame({"a__0": np.zeros(N), "/etc/x__0": np.zeros(N), "labels": LABELS}).to_parquet(
        tmp_path / "abs.parquet"
    )
    assert "view name '/etc/x' cannot be used in a file name" in refused(
        tmp_path / "abs.parquet", "parquet"
    )


def npz_bytes(tmp_path, compressed=False):
    (np.savez_compressed if compressed else np.savez)(tmp_path / "scratch.npz", **two_views())
    return (tmp_path / "scratch.npz").read_bytes()


def test_damaged_npz_files_give_one_error_naming_the_file(tmp_path):
    write_again = "write it again with numpy.savez(path, view_<name>=..., labels=...)"
    good = npz_bytes(tmp_path)
    (tmp_path / "empty.npz").write_bytes(b"")
    assert refused(tmp_path / "empty.npz") == (
        f"{tmp_path / 'empty.npz'}: the file is empty (0 bytes); {write_again}"
    )
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    assert refused(tmp_path / "truncated.npz") == (
        f"{tmp_path / 'truncated.npz'}: the .npz file is damaged or truncated (File is not a zip "
        f"file); {write_again}"
    )
    for compressed in (False, True):
        flipped = bytearray(npz_bytes(tmp_path, compressed))
        flipped[len(flipped) // 3] ^= 0xFF
        (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
        assert refused(tmp_path / "flipped.npz").startswith(
            f"{tmp_path / 'flipped.npz'}: the .npz file is damaged or truncated ("
        )


def test_files_that_are_no_npz_say_what_they_are(tmp_path):
    write_again = "write it again with numpy.savez(path, view_<name>=..., labels=...)"
    (tmp_path / "table.npz").write_text("a,b\n1,2\n")
    assert refused(tmp_path / "table.npz") == (
        f"{tmp_path / 'table.npz'}: not a .npz file (it starts with the bytes b'a,b\\n1,2\\n'); "
        f"{write_again}"
    )
    with open(tmp_path / "pickled.npz", "wb") as stream:
        pickle.dump({"view_a": [1]}, stream)
    assert "not a .npz file (it starts with the bytes b'\\x80" in refused(tmp_path / "pickled.npz")
    np.save(tmp_path / "one.npy", np.zeros((N, 2)))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    assert (
        "not a .npz file (it is a single .npy array; save the views and labels together with "
        "numpy.savez)" in refused(tmp_path / "one.npz")
    )
    pd.DataFrame({"a__0": np.zeros(N), "labels": LABELS}).to_parquet(tmp_path / "p.npz")
    assert "not a .npz file (it is a parquet file: use the data set parquet)" in refused(
        tmp_path / "p.npz"
    )
    np.savez(tmp_path / "objects.npz", **two_views(labels=np.array(["a", None] * 15, dtype=object)))
    assert refused(tmp_path / "objects.npz") == (
        f"{tmp_path / 'objects.npz'}: array 'labels' holds Python objects (dtype object), which "
        "mmbench does not load (unpickling can run code); save it as numbers or strings, e.g. "
        "labels.astype(str)"
    )


def test_damaged_parquet_files_give_one_error_naming_the_file(tmp_path, monkeypatch):
    write_again = "write it again with pandas.DataFrame.to_parquet"
    pd.DataFrame({"a__0": np.zeros(N), "labels": LABELS}).to_parquet(tmp_path / "good.parquet")
    good = (tmp_path / "good.parquet").read_bytes()
    (tmp_path / "empty.parquet").write_bytes(b"")
    assert refused(tmp_path / "empty.parquet", "parquet") == (
        f"{tmp_path / 'empty.parquet'}: the file is empty (0 bytes); {write_again}"
    )
    (tmp_path / "truncated.parquet").write_bytes(good[: len(good) // 2])
    assert refused(tmp_path / "truncated.parquet", "parquet") == (
        f"{tmp_path / 'truncated.parquet'}: the parquet file is truncated (it does not end with "
        f"the parquet footer); {write_again}"
    )
    damaged = good[:4] + b"\x00" * (len(good) - 8) + good[-4:]
    (tmp_path / "damaged.parquet").write_bytes(damaged)
    assert refused(tmp_path / "damaged.parquet", "parquet").startswith(
        f"{tmp_path / 'damaged.parquet'}: the parquet file cannot be read ("
    )
    with open(tmp_path / "views.parquet", "wb") as stream:  # np.savez would add .npz to a name
        np.savez(stream, **two_views())
    assert (
        "not a .parquet file (it is a zip archive, as .npz files are: use the data set npz)"
        in refused(tmp_path / "views.parquet", "parquet")
    )
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if the extra were not installed
    assert refused(tmp_path / "good.parquet", "parquet") == (
        f"{tmp_path / 'good.parquet'}: reading .parquet files needs pyarrow: pip install "
        "'mmbench[parquet]'"
    )


def test_every_loader_gets_its_modality_names_checked(monkeypatch):
    from mmbench.data import _LOADERS, _registered, register_dataset
    from mmbench.views import DataSplits, Views

    def escaping() -> DataSplits:
        views = Views({"../up": np.zeros((4, 1))}, ("../up",), (), np.arange(4) % 2)
        return DataSplits("escaping", views, views, views, n_classes=2)

    _registered("synthetic")  # the built-in loaders are registered
    monkeypatch.setitem(_LOADERS, "escaping", None)
    register_dataset("escaping")(escaping)
    with pytest.raises(
        DataError,
        match=r"data set 'escaping': modality name '\.\./up' cannot be "
        r"used in a file name",
    ):
        load_dataset("escaping")
