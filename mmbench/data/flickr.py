"""MIR-Flickr as distributed by Srivastava & Salakhutdinov: image features observed, tags missing,
38 labels per image (multi-label).

Files, in ``<data dir>/flickr/``: ``image/labelled/combined-*.npy`` (25,000 x 3857 image features,
several files concatenated in sorted name order), ``text/text_all_2000_labelled.npz`` (tag counts,
25,000 x 2000, sparse CSR), ``text/vocab.txt`` (the 2000 tags), ``labels.npy`` (25,000 x 38),
``splits/{train,valid,test}_indices_{1..5}.npy`` (10,000 / 5,000 / 10,000 rows of the labelled
set), and the unlabelled part ``image/unlabelled/combined-*.npy`` with
``text/text_all_2000_unlabelled.npz`` (about 975,000 images).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import Field

from mmbench.data import register_dataset
from mmbench.data.errors import DataError
from mmbench.data.formats import check_shape, read_sparse_npz
from mmbench.data.options import Count, Seed
from mmbench.data.sources import locate, locate_one
from mmbench.views import DataSplits, Modality, Views

if TYPE_CHECKING:  # scipy is imported where a file is read
    import scipy.sparse

N_SPLITS = 5


def read_feature_files(paths: list[Path], rows: np.ndarray | None = None) -> np.ndarray:
    """The rows (all, or the sorted positions ``rows``) of .npy matrices stacked in the order of
    ``paths``, as float32 (n, d). Files are memory-mapped, so only the wanted rows are read."""
    matrices = [np.load(path, mmap_mode="r") for path in paths]
    for path, matrix in zip(paths, matrices):
        check_shape(matrix, (None, matrices[0].shape[1]), f"{path} (as wide as {paths[0].name})")
    if rows is None:
        return np.concatenate([np.asarray(m, dtype=np.float32) for m in matrices])
    starts = np.cumsum([0] + [len(m) for m in matrices])
    pieces = []
    for matrix, start, stop in zip(matrices, starts[:-1], starts[1:]):
        mine = rows[(rows >= start) & (rows < stop)] - start
        pieces.append(np.asarray(matrix[mine], dtype=np.float32))
    return np.concatenate(pieces)


def read_tags(path: Path) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    """Tag indicators from a CSR .npz of tag counts: the binarised matrix is returned as a CSR
    matrix of bool, with the number of distinct tags per image (n,)."""
    present = read_sparse_npz(path) > 0
    return present, np.diff(present.indptr)


def read_vocabulary(path: Path, n_tags: int) -> tuple[str, ...]:
    """The tags of ``vocab.txt``, one per line (the first word of the line)."""
    words = tuple(
        line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    )
    if len(words) != n_tags:
        raise DataError(
            f"{path} lists {len(words)} tags; expected {n_tags}, one per column of the tag matrix"
        )
    return words


def _zscore_with(train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function that z-scores arrays with the mean and std of ``train`` (n, d); features with
    zero training variance are only centred."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return lambda array: ((array - mean) / std).astype(np.float32)


@register_dataset("flickr")
def flickr(
    seed: Seed = 0,
    data_dir: Path | None = None,
    split: Annotated[
        int,
        Field(
            ge=1, le=N_SPLITS, description=("which of the 5 published train / valid / test splits")
        ),
    ] = 1,
    standardize: Annotated[
        bool, Field(description=("z-score the image features with training statistics"))
    ] = True,
    unlabelled: Annotated[
        bool, Field(description=("also return the unlabelled images (two-stage training)"))
    ] = False,
    min_tags: Annotated[
        int, Field(ge=0, description=("unlabelled images with fewer distinct tags are left out"))
    ] = 2,
    max_unlabelled: Annotated[
        Count | None, Field(description=("unlabelled images kept, drawn at random (null: all)"))
    ] = None,
) -> DataSplits:
    """MIR-Flickr: "image" (observed, 3857-D, Gaussian) and "tags" (missing, 2000-D {0, 1},
    Bernoulli; tag counts binarised), 38 labels per image.

    split: which of the 5 published train / valid / test splits (10,000 / 5,000 / 10,000).
    standardize: z-score the image features with the statistics of the training split.
    unlabelled: also return the unlabelled images, for the first stage of two-stage training
        (CMMD paper Sec. 4.3.3, without labels), as ``info["unlabelled"] = {"image": (m, 3857),
        "tags": (m, 2000)}`` float32 arrays, standardised like the labelled images. Images with
        fewer than ``min_tags`` distinct tags are left out of it (as in the paper; the labelled
        set keeps every image). ``max_unlabelled`` keeps that many at random (None: all,
        about 23 GB as float32).
    """
    assert data_dir is not None  # load_dataset passes the data directory
    images = read_feature_files(locate(data_dir, "flickr", "image/labelled/combined-*.npy"))
    tags_path = locate_one(data_dir, "flickr", "text/text_all_2000_labelled.npz")
    tags, _ = read_tags(tags_path)
    labels_path = locate_one(data_dir, "flickr", "labels.npy")
    labels = np.load(labels_path)
    n = len(images)
    check_shape(tags, (n, None), f"{tags_path} (one row per labelled image)")
    check_shape(labels, (n, None), f"{labels_path} (one row per labelled image)")
    if not np.isin(labels, (0, 1)).all():
        raise DataError(
            f"{labels_path} holds values other than 0 and 1; expected label indicators (n, 38)"
        )
    vocabulary = read_vocabulary(locate_one(data_dir, "flickr", "text/vocab.txt"), tags.shape[1])
    parts = {part: _split_indices(data_dir, part, split, n) for part in ("train", "valid", "test")}
    zscore = _zscore_with(images[parts["train"]]) if standardize else (lambda array: array)
    everything = Views(
        {"image": zscore(images), "tags": tags.toarray().astype(np.float32)},
        ("image",),
        ("tags",),
        labels.astype(np.int64),
        modalities={
            "image": Modality("gaussian"),
            "tags": Modality("bernoulli", vocabulary=vocabulary),
        },
    )
    info: dict[str, object] = {"split": split, "standardized": standardize}
    if unlabelled:
        unlabelled_images = _unlabelled(
            data_dir, zscore, min_tags, max_unlabelled, np.random.default_rng(seed)
        )
        info.update(
            unlabelled=unlabelled_images,
            n_unlabelled=len(unlabelled_images["image"]),
            min_tags=min_tags,
        )
    return DataSplits(
        "flickr",
        everything.subset(parts["train"]),
        everything.subset(parts["valid"]),
        everything.subset(parts["test"]),
        n_classes=labels.shape[1],
        info=info,
    )


def _split_indices(data_dir: Path, part: str, split: int, n: int) -> np.ndarray:
    path = locate_one(data_dir, "flickr", f"splits/{part}_indices_{split}.npy")
    indices = np.load(path)
    check_shape(indices, (None,), str(path))
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise DataError(
            f"{path} holds rows {indices.min()}..{indices.max()}; expected rows of "
            f"the {n} labelled images (0..{n - 1})"
        )
    return indices.astype(np.int64)


def _unlabelled(
    data_dir: Path,
    zscore: Callable[[np.ndarray], np.ndarray],
    min_tags: int,
    max_unlabelled: int | None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The unlabelled images with at least ``min_tags`` tags:
    {"image": (m, d), "tags": (m, 2000)}."""
    image_paths = locate(data_dir, "flickr", "image/unlabelled/combined-*.npy")
    tags_path = locate_one(data_dir, "flickr", "text/text_all_2000_unlabelled.npz")
    tags, tag_counts = read_tags(tags_path)
    n_images = sum(len(np.load(p, mmap_mode="r")) for p in image_paths)
    check_shape(
        tags,
        (n_images, None),
        f"{tags_path} (one row per unlabelled image in {image_paths[0].parent})",
    )
    rows = np.flatnonzero(tag_counts >= min_tags)
    if max_unlabelled is not None and max_unlabelled < len(rows):
        rows = np.sort(rng.choice(rows, size=max_unlabelled, replace=False))
    return {
        "image": zscore(read_feature_files(image_paths, rows)),
        "tags": tags[rows].toarray().astype(np.float32),
    }
