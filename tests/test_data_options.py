"""Data-set options checked from the loaders' declarations, before any file is read."""

import math

import pytest

from mmbench.data import (
    available_datasets,
    check_options,
    dataset_options,
    describe_dataset_options,
    load_dataset,
)
from mmbench.data.errors import DataError
from mmbench.data.options import OptionError


def refused(name, options):
    """The message of the OptionError that check_options raises."""
    with pytest.raises(OptionError) as raised:
        check_options(name, options)
    return str(raised.value)


def test_values_out_of_range_name_the_option_the_value_and_what_is_allowed():
    assert refused("npz", {"path": "x.npz", "observed": ["a"], "valid_fraction": 1.5}) == (
        "data set 'npz': valid_fraction=1.5 is not allowed (input should be less than 1); "
        "valid_fraction must be a number > 0 and < 1 (share of the rows drawn into the "
        "validation split, for files without a split)"
    )
    assert (
        "n_train=-5 is not allowed (input should be greater than or equal to 1); n_train "
        "must be an integer >= 1 (training samples)" in refused("synthetic", {"n_train": -5})
    )
    assert "fold=5 is not allowed" in refused("xrmb", {"fold": 5})
    assert "max_angle=200.0 is not allowed" in refused("mnist_noisy", {"max_angle": 200.0})


def test_fractions_must_leave_training_rows():
    assert refused("mnist_embedded", {"valid_fraction": 0.9, "test_fraction": 0.9}) == (
        "data set 'mnist_embedded': valid_fraction + test_fraction = 0.9 + 0.9 = 1.8 leaves no "
        "rows for training; their sum must be < 1"
    )
    assert "= 1 leaves no rows" in refused(
        "npz", {"path": "x", "observed": ["a"], "valid_fraction": 0.5, "test_fraction": 0.5}
    )
    # xrmb's fractions are of different sets (training frames, one speaker's frames)
    check_options("xrmb", {"valid_fraction": 0.5, "test_fraction": 0.6})


@pytest.mark.parametrize(
    "option, value, expected",
    [
        (
            "seed",
            "a",
            "seed='a' is not allowed (input should be a valid integer); seed must be an "
            "integer >= 0",
        ),
        ("seed", True, "seed=True is not allowed (input should be a valid integer)"),
        ("seed", 1.0, "seed=1.0 is not allowed (input should be a valid integer)"),
        ("seed", -1, "seed=-1 is not allowed (input should be greater than or equal to 0)"),
        (
            "valid_fraction",
            True,
            "valid_fraction=True is not allowed (input should be a valid number)",
        ),
        ("valid_fraction", "0.2", "valid_fraction='0.2' is not allowed"),
        (
            "valid_fraction",
            math.nan,
            "valid_fraction=nan is not allowed (input should be a finite number)",
        ),
    ],
)
def test_types_are_strict(option, value, expected):
    assert expected in refused("mnist_embedded", {option: value})


def test_choices_and_lists():
    assert refused("xrmb", {"protocol": "fold"}) == (
        "data set 'xrmb': protocol='fold' is not allowed (input should be 'folds', 'speakers' or "
        "'per_speaker'); protocol must be one of 'folds', 'speakers', 'per_speaker' (the CMMD "
        "paper's protocol: Table 1 folds, Table 6 speakers, Sec. 4.4 one speaker)"
    )
    assert "standardize[1]='x1' is not allowed" in refused(
        "xrmb", {"standardize": ["acoustic", "x1"]}
    )
    assert (
        "observed='a' is not allowed (input should be a valid tuple); observed must be a "
        "list (at least 1) whose items are each a string"
        in refused("npz", {"path": "x", "observed": "a"})
    )
    assert "observed=() is not allowed (tuple should have at least 1 item" in refused(
        "npz", {"path": "x", "observed": []}
    )
    assert "split=True is not allowed" in refused("flickr", {"split": True})
    assert "unlabelled=1 is not allowed (input should be a valid boolean)" in refused(
        "flickr", {"unlabelled": 1}
    )
    assert "max_unlabelled=0 is not allowed" in refused("flickr", {"max_unlabelled": 0})
    check_options("flickr", {"max_unlabelled": None, "split": 5, "unlabelled": True})


def test_rules_across_options():
    assert refused("xrmb", {"protocol": "per_speaker"}).endswith(
        "protocol per_speaker needs the option speaker (e.g. one of [7, 16, 20, 21, 23, 28, 31, "
        "35])"
    )
    assert "speaker=99 is not one of the test speakers" in refused(
        "xrmb", {"protocol": "speakers", "speaker": 99}
    )
    assert "leaves no modality missing" in refused(
        "mnist3", {"observed": ["mnist", "mnist_rotated", "svhn"]}
    )
    assert "len(correlations) = 2 <= min(d1, d2)" in refused(
        "synthetic", {"correlations": [0.5, 0.4], "n_classes": 3}
    )


def test_unknown_and_missing_options():
    assert refused("xrmb", {"folds": 2}).startswith(
        "data set 'xrmb': no option 'folds'; the options are seed, protocol, fold, fold_train,"
    )
    assert refused("npz", {"observed": ["a"]}) == (
        "data set 'npz': the option path is required (your .npz / .parquet file; a relative "
        "path is looked for in the suite's folder, the working directory, then the data "
        "directory)"
    )
    # every problem at once
    assert refused("xrmb", {"fold": 0, "seed": "a"}).count("is not allowed") == 2
    # the injected ones are no options
    assert "no option 'data_dir'" in refused("xrmb", {"data_dir": "/tmp"})


def test_an_option_error_is_a_data_error_and_a_type_error():
    error = OptionError("x")
    assert isinstance(error, DataError) and isinstance(error, TypeError)


def test_load_dataset_checks_options_before_reading_any_file(tmp_path):
    # no XRMB files in tmp_path: the option is refused first, not the missing file
    with pytest.raises(OptionError, match=r"valid_fraction=1\.5 is not allowed"):
        load_dataset("xrmb", data_dir_=tmp_path, valid_fraction=1.5)
    with pytest.raises(DataError, match="not found"):
        load_dataset("xrmb", data_dir_=tmp_path, valid_fraction=0.5)


def test_lists_become_tuples_and_good_options_pass():
    assert check_options("npz", {"path": "x.npz", "observed": ["a"], "bernoulli": ["b"]}) == {
        "path": "x.npz",
        "observed": ("a",),
        "bernoulli": ("b",),
    }
    assert check_options("synthetic", {"correlations": [0.9, 0.5, 0.2], "d1": 3}) == {
        "correlations": (0.9, 0.5, 0.2),
        "d1": 3,
    }
    assert check_options("mnist_svhn", {"n_train": None, "valid_fraction": 0.25}) == {
        "n_train": None,
        "valid_fraction": 0.25,
    }


@pytest.mark.parametrize(
    "name",
    [
        "digits_embedded",
        "flickr",
        "mnist3",
        "mnist_embedded",
        "mnist_noisy",
        "mnist_svhn",
        "npz",
        "parquet",
        "synthetic",
        "xrmb",
    ],
)
def test_every_loader_declares_each_option_with_a_doc_and_valid_defaults(name):
    assert name in available_datasets()
    specs = describe_dataset_options(name)
    assert specs and all(spec.doc and spec.allowed for spec in specs)
    defaults = {spec.name: spec.default for spec in specs if not spec.required}
    required = {"path": "x.npz", "observed": ["a"]} if name in ("npz", "parquet") else {}
    check_options(name, {**defaults, **required})
    assert set(dataset_options(name)) == {spec.name for spec in specs}
    assert "data_dir" not in dataset_options(name) and "base_dir" not in dataset_options(name)


def test_dataset_options_marks_required_options():
    assert dataset_options("npz")["path"] is ...
    assert dataset_options("npz")["valid_fraction"] == 0.1
