"""Readers for the file formats the public data sets come in, and shape checks with clear errors.

- IDX (MNIST): big-endian header, unsigned bytes; gzip-compressed or not.
- MATLAB .mat: v5 (``scipy.io.loadmat``) or v7.3 (HDF5, read with ``h5py``). Arrays come back in
  MATLAB's orientation (rows, columns, ...) whatever the version.
- Sparse CSR matrices saved as ``.npz`` with arrays ``data``, ``indices``, ``indptr``, ``shape``
  (MIR-Flickr tags).
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmbench.data.errors import DataError

if TYPE_CHECKING:  # h5py and scipy are imported where a file is read: loading a suite needs neither
    import scipy.sparse

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UNSIGNED_BYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array stored in an IDX file (gzip-compressed or not), shaped as its header says,
    e.g. (60000, 28, 28) for MNIST training images and (60000,) for their labels."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
    with gzip.open(path, "rb") if compressed else open(path, "rb") as stream:
        try:
            content = stream.read()
        except (OSError, EOFError) as error:
            raise DataError(
                f"{path}: cannot decompress ({error}); the file is damaged, "
                "delete it and fetch it again"
            ) from None
    if len(content) < 4:
        raise DataError(f"{path}: {len(content)} bytes is too short for an IDX file")
    zero, type_code, ndim = struct.unpack(">HBB", content[:4])
    if zero != 0 or type_code != _IDX_UNSIGNED_BYTE or ndim == 0:
        raise DataError(
            f"{path}: not an IDX file of unsigned bytes (header "
            f"{content[:4].hex()}; expected 0000 08 followed by the number of "
            "dimensions)"
        )
    header_size = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", content[4:header_size])
    values = np.frombuffer(content, dtype=np.uint8, offset=header_size)
    if values.size != int(np.prod(dims)):
        raise DataError(
            f"{path}: the header promises shape {dims} ({int(np.prod(dims))} values) "
            f"but the file holds {values.size}; it is truncated, fetch it again"
        )
    return values.reshape(dims)


def read_mat(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Variables ``keys`` of a MATLAB file, v5 or v7.3, in MATLAB's orientation.

    A v7.3 file is HDF5, which stores a MATLAB array of shape (rows, columns, ...) with its axes
    reversed; they are reversed back here so that both versions give the same shapes.
    """
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as stored:
            _require_keys(path, keys, [k for k in stored if not k.startswith("#")])
            return {key: np.asarray(stored[key]).T for key in keys}
    try:
        contents = scipy.io.loadmat(path, variable_names=list(keys))
    except (
        scipy.io.matlab.MatReadError,
        ValueError,
        TypeError,
        OSError,
        NotImplementedError,
    ) as error:
        raise DataError(f"{path}: not a readable MATLAB v5 or v7.3 file ({error})") from None
    if any(key not in contents for key in keys):
        _require_keys(path, keys, [name for name, _, _ in scipy.io.whosmat(path)])
    return {key: contents[key] for key in keys}


def _require_keys(path: Path, keys: Sequence[str], present: Sequence[str]) -> None:
    missing = [key for key in keys if key not in present]
    if missing:
        raise DataError(
            f"{path}: no variable(s) {missing}; the file has {sorted(present)}, "
            f"expected {list(keys)}"
        )


def read_sparse_npz(path: Path) -> scipy.sparse.csr_matrix:
    """A CSR matrix saved as ``data``, ``indices``, ``indptr`` and ``shape`` arrays in an .npz."""
    import scipy.sparse

    with np.load(path) as stored:
        _require_keys(path, ("data", "indices", "indptr", "shape"), list(stored.keys()))
        shape = tuple(int(s) for s in stored["shape"])
        try:
            return scipy.sparse.csr_matrix(
                (stored["data"], stored["indices"], stored["indptr"]), shape=shape
            )
        except ValueError as error:
            raise DataError(
                f"{path}: data/indices/indptr do not form a CSR matrix of shape {shape} ({error})"
            ) from None


def check_shape(array: np.ndarray, expected: tuple[int | None, ...], where: str) -> None:
    """Raise a :class:`DataError` unless ``array`` has shape ``expected`` (None: any length).

    ``where`` names the array, e.g. ``"/data/MNIST.mat: X1"``.
    """
    matches = array.ndim == len(expected) and all(
        e is None or e == s for e, s in zip(expected, array.shape)
    )
    if not matches:
        wanted = "(" + ", ".join("n" if e is None else str(e) for e in expected) + ")"
        raise DataError(f"{where} has shape {array.shape}; expected {wanted}")


def column(array: np.ndarray, where: str) -> np.ndarray:
    """A MATLAB vector, stored (n, 1), (1, n) or (n,), as a 1-D array (n,)."""
    if array.ndim == 1 or (array.ndim == 2 and 1 in array.shape):
        return array.reshape(-1)
    raise DataError(f"{where} has shape {array.shape}; expected a vector (n, 1)")


def check_label_range(labels: np.ndarray, low: int, high: int, where: str) -> None:
    """Raise a :class:`DataError` unless every label is an integer in [low, high]."""
    if labels.size and (
        labels.min() < low or labels.max() > high or not np.all(labels == np.round(labels))
    ):
        raise DataError(
            f"{where} holds labels {labels.min()}..{labels.max()}; expected integers {low}..{high}"
        )
