"""MIR-Flickr loader on a small fixture laid out like Srivastava & Salakhutdinov's distribution."""

import numpy as np
import pytest
import scipy.sparse

from mmbench.data import load_dataset
from mmbench.data.errors import DataError

VOCABULARY = ["sky", "dog", "night", "beach", "red", "nikon"]
# tag counts of the 10 labelled images (rows) over the 6 tags
LABELLED_TAGS = np.array(
    [
        [2, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 3, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 4, 0],
        [1, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 2],
        [1, 1, 1, 1, 1, 1],
    ]
)
# 7 unlabelled images with 0, 1, 2, 3, 2, 1 and 5 distinct tags
UNLABELLED_TAGS = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [5, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 2, 2],
        [0, 0, 3, 0, 0, 0],
        [1, 1, 1, 1, 1, 0],
    ]
)
LABELS = np.eye(4, dtype=np.int64)[np.arange(10) % 4] | (np.arange(10) % 3 == 0)[:, None]


def save_sparse(path, dense):
    sparse = scipy.sparse.csr_matrix(dense)
    np.savez(
        path,
        data=sparse.data,
        indices=sparse.indices,
        indptr=sparse.indptr,
        shape=np.array(sparse.shape),
    )


def image_features(ids, column_1):
    """(n, 5) features: column 0 = image id, column 1 as given, columns 2.. = 7."""
    features = np.full((len(ids), 5), 7.0, dtype=np.float32)
    features[:, 0], features[:, 1] = ids, column_1
    return features


@pytest.fixture
def flickr_dir(tmp_path):
    root = tmp_path / "flickr"
    for folder in ("image/labelled", "image/unlabelled", "text", "splits"):
        (root / folder).mkdir(parents=True)
    # labelled images 0..9 in three files, written out of name order; column 1: 1 (even) or 3 (odd)
    ids = np.arange(10)
    column_1 = np.where(ids % 2 == 0, 1.0, 3.0)
    for name, rows in (
        ("combined-00003_0-of-00100.npy", slice(7, 10)),
        ("combined-00001-of-00100.npy", slice(0, 4)),
        ("combined-00002-of-00100.npy", slice(4, 7)),
    ):
        np.save(root / "image/labelled" / name, image_features(ids[rows], column_1[rows]))
    for name, rows in (
        ("combined-00004-of-00100.npy", slice(3, 7)),
        ("combined-00003_1-of-00100.npy", slice(0, 3)),
    ):
        unlabelled_ids = 100 + np.arange(7)[rows]
        np.save(
            root / "image/unlabelled" / name,
            image_features(unlabelled_ids, np.full(len(unlabelled_ids), 10.0)),
        )
    save_sparse(root / "text/text_all_2000_labelled.npz", LABELLED_TAGS)
    save_sparse(root / "text/text_all_2000_unlabelled.npz", UNLABELLED_TAGS)
    (root / "text/vocab.txt").write_text("\n".join(VOCABULARY) + "\n")
    np.save(root / "labels.npy", LABELS)
    for split, parts in {
        1: ([0, 1, 2, 3], [4, 5, 6], [7, 8, 9]),
        2: ([9, 8, 7, 6], [5, 4], [3, 2, 1, 0]),
    }.items():
        for part, rows in zip(("train", "valid", "test"), parts):
            np.save(root / f"splits/{part}_indices_{split}.npy", np.array(rows))
    return tmp_path


def test_flickr_splits_views_and_multilabels(flickr_dir):
    data = load_dataset("flickr", data_dir_=flickr_dir, split=2, standardize=False)
    # the labelled files are stacked in name order, so image ids follow the rows
    assert data.train.data["image"][:, 0].tolist() == [9, 8, 7, 6]
    assert data.test.data["image"][:, 0].tolist() == [3, 2, 1, 0]
    assert np.array_equal(data.train.labels, LABELS[[9, 8, 7, 6]])
    assert data.multilabel and data.n_classes == 4
    # tags: counts binarised
    assert np.array_equal(data.valid.data["tags"], (LABELLED_TAGS[[5, 4]] > 0).astype(np.float32))
    assert data.train.observed == ("image",) and data.train.missing == ("tags",)
    assert data.train.modality("tags").likelihood == "bernoulli"
    assert data.train.modality("tags").vocabulary == tuple(VOCABULARY)
    assert (data.train.n, data.valid.n, data.test.n) == (4, 2, 4)


def test_flickr_image_features_standardised_on_train(flickr_dir):
    data = load_dataset("flickr", data_dir_=flickr_dir, split=1, unlabelled=True)
    # training rows 0..3 have column 1 = 1, 3, 1, 3: mean 2, std 1
    assert data.train.data["image"][:, 1].tolist() == [-1, 1, -1, 1]
    assert data.test.data["image"][:, 1].tolist() == [1, -1, 1]  # rows 7, 8, 9: 3, 1, 3
    # training ids 0..3: mean 1.5, std sqrt(1.25); a constant column stays centred at 0
    assert np.allclose(data.test.data["image"][:, 0], (np.array([7, 8, 9]) - 1.5) / np.sqrt(1.25))
    assert np.allclose(data.test.data["image"][:, 2], 0)
    # the unlabelled images (column 1 = 10) are scaled with the same statistics
    assert np.allclose(data.info["unlabelled"]["image"][:, 1], 8)


def test_flickr_unlabelled_part_drops_images_with_few_tags(flickr_dir):
    data = load_dataset("flickr", data_dir_=flickr_dir, unlabelled=True, standardize=False)
    kept = [2, 3, 4, 6]  # at least 2 distinct tags
    unlabelled = data.info["unlabelled"]
    assert unlabelled["image"][:, 0].tolist() == [100 + k for k in kept]
    assert np.array_equal(unlabelled["tags"], (UNLABELLED_TAGS[kept] > 0).astype(np.float32))
    assert data.info["n_unlabelled"] == 4
    one_tag = load_dataset(
        "flickr", data_dir_=flickr_dir, unlabelled=True, min_tags=1, standardize=False
    )
    assert one_tag.info["unlabelled"]["image"][:, 0].tolist() == [101, 102, 103, 104, 105, 106]
    two = load_dataset(
        "flickr", seed=3, data_dir_=flickr_dir, unlabelled=True, max_unlabelled=2, standardize=False
    )
    chosen = two.info["unlabelled"]["image"][:, 0]
    assert len(chosen) == 2 and set(chosen.tolist()) <= {100 + k for k in kept}
    assert "unlabelled" not in load_dataset("flickr", data_dir_=flickr_dir).info


def test_flickr_bad_input_is_named(flickr_dir):
    with pytest.raises(
        DataError,
        match=r"splits/train_indices_3\.npy not found in .*flickr; run "
        r"`mmbench data fetch flickr`",
    ):
        load_dataset("flickr", data_dir_=flickr_dir, split=3)
    with pytest.raises(
        DataError,
        match=r"split=6 is not allowed .*split must be an integer >= 1 "
        r"and <= 5",
    ):
        load_dataset("flickr", data_dir_=flickr_dir, split=6)
    (flickr_dir / "flickr/text/vocab.txt").write_text("sky\ndog\n")
    with pytest.raises(DataError, match=r"vocab\.txt lists 2 tags; expected 6"):
        load_dataset("flickr", data_dir_=flickr_dir)
    np.save(flickr_dir / "flickr/labels.npy", LABELS[:9])
    with pytest.raises(DataError, match=r"labels\.npy .*has shape \(9, 4\); expected \(10, n\)"):
        load_dataset("flickr", data_dir_=flickr_dir)
