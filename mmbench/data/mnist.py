"""Digit data sets built from the public MNIST and SVHN files.

- ``mnist_noisy``: Wang et al.'s 2-view MNIST (rotated digit observed, noisy same-class digit
  missing), built from the IDX files or read from their prepared ``MNIST.mat``.
- ``mnist_svhn``: MNIST observed, SVHN missing, paired by class as in Shi et al.'s MMVAE.
- ``mnist3``: MNIST, rotated MNIST and SVHN of one class (CMMD paper Sec. 4.3.1).

Pixels are float32 in [0, 1]; images are flattened row by row (SVHN as height, width, channel).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from mmbench.data import register_dataset
from mmbench.data.embedded import noisy_two_view, rotate_images, stratified_split
from mmbench.data.errors import DataError
from mmbench.data.formats import check_label_range, check_shape, column, read_idx, read_mat
from mmbench.data.options import Count, Fraction, Seed
from mmbench.data.sources import locate_one
from mmbench.views import DataSplits, Modality, Views

MNIST_SHAPE = (28, 28)
SVHN_SHAPE = (32, 32, 3)
SPLITS = ("train", "valid", "test")
_IDX_PREFIX = {"train": "train", "test": "t10k"}

MaxAngle = Annotated[
    float,
    Field(ge=0, le=180, description=("rotations are drawn from U[-max_angle, max_angle] degrees")),
]
PairsPerImage = Annotated[Count, Field(description="random pairings of each image (Shi et al.)")]
MaxPerClass = Annotated[Count, Field(description="images of each class used for pairing")]
ValidFraction = Annotated[
    Fraction,
    Field(description=("share of the training images of each class held out for validation pairs")),
]
Pairs = Annotated[Count | None, Field(description="pairs kept, drawn at random (null: all)")]


def read_mnist(data_dir: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``part`` ("train" or "test"): uint8 images (n, 28, 28) and int64 digits (n,)."""
    images_path = locate_one(data_dir, "mnist", f"{_IDX_PREFIX[part]}-images-idx3-ubyte.gz")
    labels_path = locate_one(data_dir, "mnist", f"{_IDX_PREFIX[part]}-labels-idx1-ubyte.gz")
    images, labels = read_idx(images_path), read_idx(labels_path)
    check_shape(images, (None, *MNIST_SHAPE), str(images_path))
    check_shape(labels, (len(images),), f"{labels_path} (one label per image of {images_path})")
    check_label_range(labels, 0, 9, str(labels_path))
    return images, labels.astype(np.int64)


def read_svhn(data_dir: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """SVHN ``part`` ("train" or "test"): uint8 images (n, 32, 32, 3) and int64 digits (n,).

    The file stores ``X`` as 32x32x3xN and ``y`` with 10 for the digit 0.
    """
    path = locate_one(data_dir, "svhn", f"{part}_32x32.mat")
    stored = read_mat(path, ("X", "y"))
    labels = column(stored["y"], f"{path}: y")
    check_shape(stored["X"], (*SVHN_SHAPE, len(labels)), f"{path}: X (one image per label in y)")
    check_label_range(labels, 1, 10, f"{path}: y")
    return np.moveaxis(stored["X"], -1, 0), digits_from_1_to_10(labels)


def digits_from_1_to_10(labels: np.ndarray) -> np.ndarray:
    """Digit classes 0..9 from the MATLAB convention 1..10 where 10 stands for the digit 0."""
    return np.asarray(labels).astype(np.int64) % 10


def _pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images (n, ...) as float32 rows (n, prod(...)) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


# --- noisy 2-view MNIST --------------------------------------------------------------------------


def _noisy_views(x1: np.ndarray, x2: np.ndarray, labels: np.ndarray) -> Views:
    return Views(
        {"x1": x1, "x2": x2},
        ("x1",),
        ("x2",),
        labels,
        modalities={
            "x1": Modality("bernoulli", MNIST_SHAPE),
            "x2": Modality("gaussian", MNIST_SHAPE),
        },
    )


@register_dataset("mnist_noisy")
def mnist_noisy(
    seed: Seed = 0,
    data_dir: Path | None = None,
    source: Annotated[
        Literal["idx", "mat"],
        Field(
            description=(
                "build the views from the MNIST IDX files, or read Wang et al.'s MNIST.mat"
            )
        ),
    ] = "idx",
    n_valid: Annotated[
        Count, Field(description=("last training digits that form the tune split (idx)"))
    ] = 10000,
    max_angle: MaxAngle = 45.0,
) -> DataSplits:
    """Wang et al.'s noisy 2-view MNIST: 50,000 / 10,000 / 10,000 train / tune / test digits.

    x1 (observed, 784-D): the digit rotated by an angle from U[-max_angle, max_angle] degrees;
    x2 (missing, 784-D): another digit of the same class (from the same split) plus U[0, 1) noise
    per pixel, clipped to [0, 1].

    source: "idx" builds the views from the MNIST IDX files with ``seed`` (the last ``n_valid``
        training digits form the tune split, as in Wang et al.); "mat" reads Wang et al.'s
        ``MNIST.mat`` (keys X1, X2, XV1, XV2, XTe1, XTe2, trainLabel, tuneLabel, testLabel;
        pixels column-major; labels 1..10 with 10 for the digit 0); seed, n_valid and
        max_angle do not apply to it.
    """
    assert data_dir is not None  # load_dataset passes the data directory
    if source == "mat":
        train, valid, test = _read_wang_mnist(data_dir)
        return DataSplits("mnist_noisy", train, valid, test, n_classes=10, info={"source": "mat"})
    train_images, train_labels = read_mnist(data_dir, "train")
    test_images, test_labels = read_mnist(data_dir, "test")
    if not 0 < n_valid < len(train_images):
        raise DataError(
            f"mnist_noisy: n_valid={n_valid} must lie in 1..{len(train_images) - 1} "
            f"(the training file has {len(train_images)} digits)"
        )
    cut = len(train_images) - n_valid
    parts = {
        "train": (train_images[:cut], train_labels[:cut]),
        "valid": (train_images[cut:], train_labels[cut:]),
        "test": (test_images, test_labels),
    }
    rng = np.random.default_rng(seed)
    views = {}
    for split, (images, labels) in parts.items():
        x1, x2 = noisy_two_view(images.astype(np.float32) / 255.0, labels, rng, max_angle)
        views[split] = _noisy_views(x1, x2, labels)
    return DataSplits(
        "mnist_noisy",
        views["train"],
        views["valid"],
        views["test"],
        n_classes=10,
        info={"source": "idx", "seed": seed, "max_angle": max_angle},
    )


def _read_wang_mnist(data_dir: Path) -> list[Views]:
    """Train, tune and test :class:`Views` of Wang et al.'s ``MNIST.mat``."""
    path = locate_one(data_dir, "mnist_wang", "MNIST.mat")
    keys = {
        "train": ("X1", "X2", "trainLabel"),
        "valid": ("XV1", "XV2", "tuneLabel"),
        "test": ("XTe1", "XTe2", "testLabel"),
    }
    stored = read_mat(path, [k for split in SPLITS for k in keys[split]])
    views = []
    for split in SPLITS:
        view1_key, view2_key, label_key = keys[split]
        labels = column(stored[label_key], f"{path}: {label_key}")
        check_label_range(labels, 1, 10, f"{path}: {label_key}")
        for key in (view1_key, view2_key):
            check_shape(stored[key], (len(labels), 784), f"{path}: {key} (one row per label)")
        views.append(
            _noisy_views(
                _row_major(stored[view1_key]),
                _row_major(stored[view2_key]),
                digits_from_1_to_10(labels),
            )
        )
    return views


def _row_major(columns_first: np.ndarray) -> np.ndarray:
    """Rows of 784 pixels stored column by column (MATLAB) as float32 rows stored row by row."""
    n = len(columns_first)
    images = np.reshape(columns_first, (n, *MNIST_SHAPE), order="F")
    return np.ascontiguousarray(images, dtype=np.float32).reshape(n, -1)


# --- MNIST-SVHN pairing --------------------------------------------------------------------------


def pair_by_class(
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    pairs_per_image: int,
    max_per_class: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Shi et al.'s (MMVAE) random pairing of two labelled collections by class.

    For each class c: n_c = min(#a of class c, #b of class c, max_per_class); the first n_c
    members of each (in file order) are paired under ``pairs_per_image`` independent random
    permutations of both, so each of them appears in exactly ``pairs_per_image`` pairs.
    Returns positions into a (k,) and into b (k,), k = pairs_per_image * sum_c n_c, class by class.
    """
    into_a: list[np.ndarray] = []
    into_b: list[np.ndarray] = []
    for label in np.intersect1d(labels_a, labels_b):
        members_a = np.flatnonzero(labels_a == label)
        members_b = np.flatnonzero(labels_b == label)
        n = min(len(members_a), len(members_b), max_per_class)
        for members, into in ((members_a, into_a), (members_b, into_b)):
            permutations = np.argsort(rng.random((pairs_per_image, n)), axis=1)
            into.append(members[:n][permutations].reshape(-1))
    if not into_a:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(into_a), np.concatenate(into_b)


def random_member_of_class(
    candidate_labels: np.ndarray, wanted: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """For each class in ``wanted`` (k,), the position of a candidate of that class drawn
    uniformly at random (with replacement) from ``candidate_labels`` (n,)."""
    order = np.argsort(candidate_labels, kind="stable")
    counts = np.bincount(candidate_labels, minlength=int(wanted.max(initial=0)) + 1)
    if np.any(counts[wanted] == 0):
        absent = np.unique(wanted[counts[wanted] == 0]).tolist()
        raise DataError(f"no candidate image of class(es) {absent}")
    starts = np.cumsum(counts) - counts
    offsets = (rng.random(len(wanted)) * counts[wanted]).astype(np.int64)
    return order[starts[wanted] + offsets]


@dataclass(frozen=True)
class DigitPairs:
    """MNIST-SVHN pairs of one split.

    part: which files the split draws from ("train" files for train and valid, "test" files).
    mnist / svhn: (k,) positions of the paired images in those files.
    mnist_pool: positions of every MNIST image the split may use (for 3-modality MNIST).
    mnist_images, mnist_digits, svhn_images: the whole files of ``part``.
    """

    part: str
    mnist: np.ndarray
    svhn: np.ndarray
    mnist_pool: np.ndarray
    mnist_images: np.ndarray
    mnist_digits: np.ndarray
    svhn_images: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """(k,) digit of each pair."""
        return self.mnist_digits[self.mnist]

    def pixels(self) -> dict[str, np.ndarray]:
        """{"mnist": (k, 784), "svhn": (k, 3072)} float32 pixels in [0, 1] of the pairs."""
        return {
            "mnist": _pixels(self.mnist_images[self.mnist]),
            "svhn": _pixels(self.svhn_images[self.svhn]),
        }


def _pair_digits(
    data_dir: Path,
    rng: np.random.Generator,
    pairs_per_image: int,
    max_per_class: int,
    valid_fraction: float,
    sizes: dict[str, int | None],
) -> dict[str, DigitPairs]:
    """The MNIST-SVHN pairs of each split, {split: DigitPairs}, in the order of ``SPLITS``.

    Validation images are held out from the training files (stratified, ``valid_fraction`` of
    each) before pairing, so no image is in both a training and a validation pair. A split with
    more pairs than ``sizes[split]`` keeps that many, drawn at random (None keeps every pair).
    """
    files = {
        part: (read_mnist(data_dir, part), read_svhn(data_dir, part)) for part in ("train", "test")
    }
    (_, mnist_train_labels), (_, svhn_train_labels) = files["train"]
    mnist_fit, mnist_valid = stratified_split(
        mnist_train_labels, (1 - valid_fraction, valid_fraction), rng
    )
    svhn_fit, svhn_valid = stratified_split(
        svhn_train_labels, (1 - valid_fraction, valid_fraction), rng
    )
    (mnist_test, _), (svhn_test, _) = files["test"]
    pools = {
        "train": ("train", mnist_fit, svhn_fit),
        "valid": ("train", mnist_valid, svhn_valid),
        "test": ("test", np.arange(len(mnist_test)), np.arange(len(svhn_test))),
    }
    pairs = {}
    for split, (part, mnist_pool, svhn_pool) in pools.items():
        (mnist_images, mnist_labels), (svhn_images, svhn_labels) = files[part]
        into_mnist, into_svhn = pair_by_class(
            mnist_labels[mnist_pool], svhn_labels[svhn_pool], pairs_per_image, max_per_class, rng
        )
        keep = _subsample(len(into_mnist), sizes[split], rng)
        pairs[split] = DigitPairs(
            part,
            mnist_pool[into_mnist[keep]],
            svhn_pool[into_svhn[keep]],
            mnist_pool,
            mnist_images,
            mnist_labels,
            svhn_images,
        )
    return pairs


def _subsample(n: int, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``size`` of ``n`` items drawn without replacement (all when fewer)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _pairs_digest(pairs: dict[str, dict[str, np.ndarray]]) -> str:
    """sha256 of every pairing index, so a record identifies its pairing without storing it."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for name, index in pairs[split].items():
            digest.update(f"{split}/{name}".encode())
            digest.update(np.ascontiguousarray(index, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _paired_splits(
    name: str,
    views: dict[str, Views],
    indices: dict[str, dict[str, np.ndarray]],
    pairs: dict[str, DigitPairs],
    seed: int,
    pairs_per_image: int,
) -> DataSplits:
    """The splits of a paired-digits data set, with the pairing recorded in ``info``."""
    return DataSplits(
        name,
        views["train"],
        views["valid"],
        views["test"],
        n_classes=10,
        info={
            "seed": seed,
            "pairs_per_image": pairs_per_image,
            "pair_files": {s: pairs[s].part for s in SPLITS},
            "pairs": indices,
            "pairs_sha256": _pairs_digest(indices),
        },
    )


_DIGIT_MODALITIES = {
    "mnist": Modality("bernoulli", MNIST_SHAPE),
    "mnist_rotated": Modality("bernoulli", MNIST_SHAPE),
    "svhn": Modality("bernoulli", SVHN_SHAPE),
}


@register_dataset("mnist_svhn")
def mnist_svhn(
    seed: Seed = 0,
    data_dir: Path | None = None,
    pairs_per_image: PairsPerImage = 20,
    max_per_class: MaxPerClass = 10000,
    valid_fraction: ValidFraction = 0.1,
    n_train: Pairs = 80000,
    n_valid: Pairs = 10000,
    n_test: Pairs = 20000,
) -> DataSplits:
    """MNIST (observed "mnist", 784-D) paired with an SVHN digit of the same class (missing
    "svhn", 32x32x3 -> 3072-D), both Bernoulli in [0, 1].

    Pairing as in MMVAE (Shi et al.): per class n = min(#MNIST, #SVHN, max_per_class) images of
    each, ``pairs_per_image`` random permutations (20 in their README, 30 in their code), from
    ``seed``. Test pairs come from the test files; validation pairs from ``valid_fraction`` of the
    training images of each class, held out before pairing. Keeping every pair would give about
    1.1 million training pairs (17 GB as float32), so ``n_train`` / ``n_valid`` / ``n_test`` pairs
    are drawn at random, as the CMMD code does (80,000 / - / 20,000); None keeps every pair.

    ``info["pairs"]`` holds, per split, the positions of the paired images in the MNIST and SVHN
    files ("train" files for train and valid); ``info["pairs_sha256"]`` identifies them.
    """
    assert data_dir is not None  # load_dataset passes the data directory
    pairs = _pair_digits(
        data_dir,
        np.random.default_rng(seed),
        pairs_per_image,
        max_per_class,
        valid_fraction,
        {"train": n_train, "valid": n_valid, "test": n_test},
    )
    views = {
        split: Views(
            paired.pixels(), ("mnist",), ("svhn",), paired.labels, modalities=_DIGIT_MODALITIES
        )
        for split, paired in pairs.items()
    }
    indices = {
        split: {"mnist": paired.mnist, "svhn": paired.svhn} for split, paired in pairs.items()
    }
    return _paired_splits("mnist_svhn", views, indices, pairs, seed, pairs_per_image)


def _observed_proper_subset(options: dict) -> str | None:
    """Rule of ``mnist3``: at least one modality observed and at least one missing."""
    if set(options["observed"]) == set(_DIGIT_MODALITIES):
        return (
            f"observed={list(options['observed'])} leaves no modality missing; observe one "
            "or two of 'mnist', 'mnist_rotated', 'svhn'"
        )
    return None


@register_dataset("mnist3", rules=(_observed_proper_subset,))
def mnist3(
    seed: Seed = 0,
    data_dir: Path | None = None,
    observed: Annotated[
        tuple[Literal["mnist", "mnist_rotated", "svhn"], ...],
        Field(min_length=1, description="the modalities available at test time"),
    ] = ("mnist",),
    pairs_per_image: PairsPerImage = 20,
    max_per_class: MaxPerClass = 10000,
    valid_fraction: ValidFraction = 0.1,
    n_train: Pairs = 30000,
    n_valid: Pairs = 3000,
    n_test: Pairs = 7000,
    max_angle: MaxAngle = 45.0,
) -> DataSplits:
    """3-modality MNIST (CMMD paper Sec. 4.3.1): "mnist" (784-D), "mnist_rotated" (784-D) and
    "svhn" (3072-D) of one class per sample, all Bernoulli in [0, 1].

    mnist and svhn are paired as in ``mnist_svhn``; mnist_rotated is another MNIST digit of the
    same class from the same split, rotated by U[-max_angle, max_angle] degrees.
    observed: ("mnist",) leaves two modalities missing, ("mnist", "mnist_rotated") one.
    Default sizes follow the CMMD code (30,000 training and 7,000 test samples).
    """
    assert data_dir is not None  # load_dataset passes the data directory
    observed = tuple(observed)
    missing = tuple(m for m in _DIGIT_MODALITIES if m not in observed)
    rng = np.random.default_rng(seed)
    pairs = _pair_digits(
        data_dir,
        rng,
        pairs_per_image,
        max_per_class,
        valid_fraction,
        {"train": n_train, "valid": n_valid, "test": n_test},
    )
    views, indices = {}, {}
    for split, paired in pairs.items():
        labels = paired.labels
        pool = paired.mnist_pool
        rotated = pool[random_member_of_class(paired.mnist_digits[pool], labels, rng)]
        angles = rng.uniform(-max_angle, max_angle, size=len(labels))
        rotated_pixels = rotate_images(
            paired.mnist_images[rotated].astype(np.float32) / 255.0, angles
        )
        pixels = paired.pixels()
        data = {
            "mnist": pixels["mnist"],
            "mnist_rotated": rotated_pixels.reshape(len(labels), -1),
            "svhn": pixels["svhn"],
        }
        views[split] = Views(data, observed, missing, labels, modalities=_DIGIT_MODALITIES)
        indices[split] = {"mnist": paired.mnist, "mnist_rotated": rotated, "svhn": paired.svhn}
    return _paired_splits("mnist3", views, indices, pairs, seed, pairs_per_image)
