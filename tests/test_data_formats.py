"""File readers against files written here in the real formats.

The writers below (IDX, MATLAB v5 and v7.3) are also the fixture writers of the other data tests.
"""

import gzip
import struct

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse

from mmbench.data.errors import DataError
from mmbench.data.formats import (
    check_label_range,
    check_shape,
    column,
    read_idx,
    read_mat,
    read_sparse_npz,
)


def write_idx(path, array, compress=False):
    """An IDX file of unsigned bytes: magic 0x00000803-style header, big-endian dims, data."""
    array = np.asarray(array, dtype=np.uint8)
    content = (
        struct.pack(">HBB", 0, 0x08, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )
    with gzip.open(path, "wb") if compress else open(path, "wb") as stream:
        stream.write(content)


def write_mat(path, variables, version="5"):
    """A MATLAB file: v5 with scipy, or v7.3 as MATLAB writes it (HDF5 behind a 512-byte header,
    every array stored with its axes reversed)."""
    if version == "5":
        scipy.io.savemat(path, variables)
        return
    with h5py.File(path, "w", userblock_size=512) as stored:
        for name, value in variables.items():
            stored.create_dataset(name, data=np.asarray(value).T)
            stored[name].attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as raw:
        raw.write(
            b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
            b"HDF5 schema 1.00 ."
        )


def test_idx_round_trip_gzip_and_raw(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", images, compress=True)
    write_idx(tmp_path / "a", images)
    assert read_idx(tmp_path / "a.gz").shape == (2, 3, 4)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), images)
    assert np.array_equal(read_idx(tmp_path / "a"), images)
    # the header's big-endian dimension 258 must not be read as 513 (little-endian)
    long_labels = np.arange(258) % 10
    write_idx(tmp_path / "labels", long_labels)
    assert np.array_equal(read_idx(tmp_path / "labels"), long_labels)


def test_idx_errors_name_the_file_and_the_problem(tmp_path):
    (tmp_path / "text").write_bytes(b"not an idx file at all")
    with pytest.raises(DataError, match=r"text: not an IDX file"):
        read_idx(tmp_path / "text")
    write_idx(tmp_path / "short", np.zeros((5, 4)))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(
        DataError, match=r"short: the header promises shape \(5, 4\).*17.*truncated"
    ):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_mat_v5_and_v73_give_matlab_orientation(tmp_path, version):
    matrix = np.arange(12, dtype=np.float64).reshape(4, 3)  # 4 rows, 3 columns
    images = np.arange(2 * 2 * 3 * 5).reshape(2, 2, 3, 5).astype(np.uint8)  # H x W x C x N
    labels = np.array([[1], [2], [10], [3]], dtype=np.float64)  # MATLAB column vector
    write_mat(tmp_path / "f.mat", {"M": matrix, "X": images, "y": labels}, version)
    stored = read_mat(tmp_path / "f.mat", ["M", "X", "y"])
    assert stored["M"].shape == (4, 3) and np.array_equal(stored["M"], matrix)
    assert stored["X"].shape == (2, 2, 3, 5) and np.array_equal(stored["X"], images)
    assert column(stored["y"], "y").tolist() == [1, 2, 10, 3]


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_mat_missing_key_names_it_and_what_is_there(tmp_path, version):
    write_mat(tmp_path / "f.mat", {"X1": np.zeros((2, 2)), "X2": np.zeros((2, 2))}, version)
    with pytest.raises(
        DataError,
        match=r"f\.mat: no variable\(s\) \['XTe1'\]; the file has "
        r"\['X1', 'X2'\]",
    ):
        read_mat(tmp_path / "f.mat", ["X1", "XTe1"])


def test_mat_that_is_no_mat_file(tmp_path):
    (tmp_path / "f.mat").write_bytes(b"\x00" * 300)
    with pytest.raises(DataError, match=r"f\.mat: not a readable MATLAB"):
        read_mat(tmp_path / "f.mat", ["X"])


def test_sparse_npz_is_the_stored_matrix(tmp_path):
    dense = np.array([[0, 2, 0], [1, 0, 0], [0, 0, 0], [3, 1, 1]], dtype=np.float32)
    sparse = scipy.sparse.csr_matrix(dense)
    np.savez(
        tmp_path / "t.npz",
        data=sparse.data,
        indices=sparse.indices,
        indptr=sparse.indptr,
        shape=np.array(sparse.shape),
    )
    assert np.array_equal(read_sparse_npz(tmp_path / "t.npz").toarray(), dense)
    np.savez(tmp_path / "bad.npz", data=sparse.data, indices=sparse.indices)
    with pytest.raises(DataError, match=r"bad\.npz: no variable\(s\) \['indptr', 'shape'\]"):
        read_sparse_npz(tmp_path / "bad.npz")


def test_shape_and_label_checks_say_what_was_expected():
    with pytest.raises(DataError, match=r"f: X1 has shape \(3, 5\); expected \(n, 784\)"):
        check_shape(np.zeros((3, 5)), (None, 784), "f: X1")
    check_shape(np.zeros((3, 784)), (None, 784), "f: X1")
    with pytest.raises(DataError, match=r"f: y holds labels 0..9; expected integers 1..10"):
        check_label_range(np.arange(10), 1, 10, "f: y")
    with pytest.raises(DataError, match=r"expected a vector"):
        column(np.zeros((2, 2)), "f: y")
