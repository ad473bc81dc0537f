"""MNIST-based data sets from small fixtures in the real formats (IDX, SVHN .mat, Wang's
MNIST.mat)."""

import numpy as np
import pytest
from test_data_formats import write_idx, write_mat

from mmbench.data import load_dataset
from mmbench.data.errors import DataError
from mmbench.data.mnist import pair_by_class

# Fixture digits: class counts chosen so that every split size below is computed by hand.
MNIST_TRAIN_LABELS = np.array([0] * 10 + [1] * 5)  # 15 training digits
MNIST_TEST_LABELS = np.array([0] * 3 + [1] * 2)
SVHN_TRAIN_DIGITS = np.array([0] * 5 + [1] * 10)
SVHN_TEST_DIGITS = np.array([0] * 2 + [1] * 4)


def mnist_images(labels, first_id):
    """uint8 digits (n, 28, 28): pixel (0, 0) holds a unique id, every other pixel 100 * class."""
    images = np.full((len(labels), 28, 28), 0, dtype=np.uint8)
    images += (100 * labels).astype(np.uint8)[:, None, None]
    images[:, 0, 0] = first_id + np.arange(len(labels))
    return images


def svhn_images(digits, first_id):
    """uint8 SVHN images (32, 32, 3, n) as the .mat stores them; pixel (0, 0, 0) is a unique id,
    pixel (r, c, ch) elsewhere is (r + 2c + 3ch) % 256 so the layout can be checked."""
    r, c, ch = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    pattern = ((r + 2 * c + 3 * ch) % 256).astype(np.uint8)
    stored = np.repeat(pattern[..., None], len(digits), axis=3)
    stored[0, 0, 0, :] = first_id + np.arange(len(digits))
    return stored


@pytest.fixture
def digits_dir(tmp_path):
    """A data directory with MNIST (training files gzipped, test files not) and SVHN (v5 .mat)."""
    (tmp_path / "mnist").mkdir()
    write_idx(
        tmp_path / "mnist/train-images-idx3-ubyte.gz",
        mnist_images(MNIST_TRAIN_LABELS, 0),
        compress=True,
    )
    write_idx(tmp_path / "mnist/train-labels-idx1-ubyte.gz", MNIST_TRAIN_LABELS, compress=True)
    write_idx(tmp_path / "mnist/t10k-images-idx3-ubyte", mnist_images(MNIST_TEST_LABELS, 100))
    write_idx(tmp_path / "mnist/t10k-labels-idx1-ubyte", MNIST_TEST_LABELS)
    (tmp_path / "svhn").mkdir()
    for part, digits, first_id in (("train", SVHN_TRAIN_DIGITS, 0), ("test", SVHN_TEST_DIGITS, 50)):
        stored_labels = np.where(digits == 0, 10, digits).reshape(-1, 1)  # SVHN writes 0 as 10
        write_mat(
            tmp_path / f"svhn/{part}_32x32.mat",
            {"X": svhn_images(digits, first_id), "y": stored_labels},
        )
    return tmp_path


# --- noisy MNIST from IDX -----------------------------------------------------------------------


def test_mnist_noisy_from_idx_splits_views_and_labels(digits_dir):
    data = load_dataset("mnist_noisy", seed=0, data_dir_=digits_dir, n_valid=5, max_angle=0.0)
    # training file: first 10 digits train, last 5 tune; test file: 5 digits
    assert (data.train.n, data.valid.n, data.test.n) == (10, 5, 5)
    assert data.train.labels.tolist() == [0] * 10
    assert data.valid.labels.tolist() == [1] * 5
    assert data.test.labels.tolist() == [0, 0, 0, 1, 1]
    # rotation by 0 degrees leaves view 1 the digit itself, in file order
    expected_x1 = mnist_images(MNIST_TRAIN_LABELS, 0)[:10].reshape(10, -1) / 255.0
    assert np.allclose(data.train.data["x1"], expected_x1, atol=1e-6)
    # view 2: a class-1 digit (pixels 100/255) plus U[0, 1) noise, clipped to [0, 1]
    x2 = data.valid.data["x2"][:, 1:]
    assert x2.min() >= 100 / 255 - 1e-6 and x2.max() <= 1.0
    assert np.mean(x2 == 1.0) == pytest.approx(100 / 255, abs=0.05)  # P(noise >= 1 - 100/255)
    assert data.train.observed == ("x1",) and data.train.missing == ("x2",)
    assert data.train.modality("x1").image_shape == (28, 28)


def test_mnist_noisy_is_reproducible_from_its_seed(digits_dir):
    a = load_dataset("mnist_noisy", seed=4, data_dir_=digits_dir, n_valid=5)
    b = load_dataset("mnist_noisy", seed=4, data_dir_=digits_dir, n_valid=5)
    c = load_dataset("mnist_noisy", seed=5, data_dir_=digits_dir, n_valid=5)
    assert np.array_equal(a.train.data["x1"], b.train.data["x1"])
    assert np.array_equal(a.test.data["x2"], b.test.data["x2"])
    assert not np.array_equal(a.train.data["x1"], c.train.data["x1"])
    # rotated by up to 45 degrees: the corners of the uniform class-1 digits turn black
    corners = a.valid.data["x1"].reshape(5, 28, 28)[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.all(corners.max(axis=1) < 100 / 255 - 0.05)


def test_missing_mnist_file_says_what_where_and_how(tmp_path):
    with pytest.raises(DataError) as error:
        load_dataset("mnist_noisy", data_dir_=tmp_path)
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "mnist") in message
    assert "mmbench data fetch mnist" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in message


def test_mnist_labels_out_of_range_are_named(digits_dir):
    write_idx(digits_dir / "mnist/t10k-labels-idx1-ubyte", np.array([0, 0, 12, 1, 1]))
    with pytest.raises(
        DataError,
        match=r"t10k-labels-idx1-ubyte holds labels 0..12; expected "
        r"integers 0..9",
    ):
        load_dataset("mnist_noisy", data_dir_=digits_dir, n_valid=5)


# --- Wang et al.'s MNIST.mat --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_wang_mat_is_column_major_with_10_for_zero(tmp_path, version):
    rng = np.random.default_rng(0)
    sizes = {"train": 6, "tune": 3, "test": 4}
    images = {part: rng.random((n, 28, 28)) for part, n in sizes.items()}
    digits = {"train": [0, 1, 9, 0, 5, 3], "tune": [2, 0, 7], "test": [0, 0, 4, 8]}
    variables = {}
    for part, (k1, k2, kl) in {
        "train": ("X1", "X2", "trainLabel"),
        "tune": ("XV1", "XV2", "tuneLabel"),
        "test": ("XTe1", "XTe2", "testLabel"),
    }.items():
        # MATLAB flattens each 28x28 image column by column
        variables[k1] = np.stack([image.T.reshape(-1) for image in images[part]])
        variables[k2] = 1 - variables[k1]
        variables[kl] = np.array([[10 if d == 0 else d] for d in digits[part]])
    (tmp_path / "mnist_wang").mkdir()
    write_mat(tmp_path / "mnist_wang/MNIST.mat", variables, version)
    data = load_dataset("mnist_noisy", data_dir_=tmp_path, source="mat")
    assert np.allclose(data.train.data["x1"], images["train"].reshape(6, -1))
    assert np.allclose(data.test.data["x2"], 1 - images["test"].reshape(4, -1))
    assert data.train.labels.tolist() == digits["train"]
    assert data.valid.labels.tolist() == digits["tune"]
    assert data.test.labels.tolist() == digits["test"]


def test_wang_mat_wrong_width_and_labels_are_named(tmp_path):
    (tmp_path / "mnist_wang").mkdir()
    variables = {k: np.zeros((2, 784)) for k in ("X1", "X2", "XV1", "XV2", "XTe1", "XTe2")}
    variables.update({k: np.array([[1], [2]]) for k in ("trainLabel", "tuneLabel", "testLabel")})
    variables["XTe2"] = np.zeros((2, 783))
    write_mat(tmp_path / "mnist_wang/MNIST.mat", variables)
    with pytest.raises(
        DataError,
        match=r"MNIST\.mat: XTe2 .*has shape \(2, 783\); expected "
        r"\(2, 784\)",
    ):
        load_dataset("mnist_noisy", data_dir_=tmp_path, source="mat")
    variables["XTe2"] = np.zeros((2, 784))
    variables["tuneLabel"] = np.array([[0], [3]])
    write_mat(tmp_path / "mnist_wang/MNIST.mat", variables)
    with pytest.raises(DataError, match=r"tuneLabel holds labels 0..3; expected integers 1..10"):
        load_dataset("mnist_noisy", data_dir_=tmp_path, source="mat")


def test_wang_mat_missing_has_no_download_but_says_where_to_get_it(tmp_path):
    with pytest.raises(
        DataError,
        match=r"MNIST\.mat not found in .*mnist_wang; it has no public "
        r"download: obtain it from .*dcca\.tgz",
    ):
        load_dataset("mnist_noisy", data_dir_=tmp_path, source="mat")


# --- MNIST-SVHN pairing -------------------------------------------------------------------------


def test_pair_by_class_counts_and_classes():
    labels_a = np.array([0, 0, 0, 1, 1, 2])  # class 2 has no partner in b
    labels_b = np.array([1, 1, 1, 0, 0, 3])
    into_a, into_b = pair_by_class(labels_a, labels_b, 4, 100, np.random.default_rng(0))
    # class 0: min(3, 2) = 2 images of each, class 1: min(2, 3) = 2 -> (2 + 2) * 4 pairs
    assert len(into_a) == len(into_b) == 16
    assert np.array_equal(labels_a[into_a], labels_b[into_b])
    # the first n of each class in file order, each in exactly 4 pairs
    assert np.bincount(into_a, minlength=6).tolist() == [4, 4, 0, 4, 4, 0]
    assert np.bincount(into_b, minlength=6).tolist() == [4, 4, 0, 4, 4, 0]
    capped, _ = pair_by_class(labels_a, labels_b, 4, 1, np.random.default_rng(0))
    assert np.bincount(capped, minlength=6).tolist() == [4, 0, 0, 4, 0, 0]


def test_pair_by_class_draws_random_partners_from_its_seed():
    zeros = np.zeros(50, dtype=np.int64)
    a, b = pair_by_class(zeros, zeros, 20, 100, np.random.default_rng(0))
    # each image meets ~18 different partners in 20 random pairs, not one fixed partner
    assert len(set(zip(a.tolist(), b.tolist()))) > 700
    again = pair_by_class(zeros, zeros, 20, 100, np.random.default_rng(0))
    other = pair_by_class(zeros, zeros, 20, 100, np.random.default_rng(1))
    assert np.array_equal(again[1], b) and not np.array_equal(other[1], b)


def test_mnist_svhn_pairs_by_class_with_hand_counted_sizes(digits_dir):
    data = load_dataset(
        "mnist_svhn",
        seed=0,
        data_dir_=digits_dir,
        pairs_per_image=3,
        valid_fraction=0.2,
        n_train=None,
        n_valid=None,
        n_test=None,
    )
    # held out for validation (20% per class): MNIST 2 of 10 zeros, 1 of 5 ones; SVHN 1 of 5
    # zeros, 2 of 10 ones. Per class n = min(#MNIST, #SVHN), 3 pairs per image:
    # train 3 * (min(8, 4) + min(4, 8)) = 24, valid 3 * (min(2, 1) + min(1, 2)) = 6,
    # test 3 * (min(3, 2) + min(2, 4)) = 12
    assert (data.train.n, data.valid.n, data.test.n) == (24, 6, 12)
    pairs = data.info["pairs"]
    for split, files_labels in (
        ("train", (MNIST_TRAIN_LABELS, SVHN_TRAIN_DIGITS)),
        ("valid", (MNIST_TRAIN_LABELS, SVHN_TRAIN_DIGITS)),
        ("test", (MNIST_TEST_LABELS, SVHN_TEST_DIGITS)),
    ):
        mnist_labels, svhn_digits = files_labels
        views = getattr(data, split)
        # each pair is of one class, and the label is that class
        assert np.array_equal(
            mnist_labels[pairs[split]["mnist"]], svhn_digits[pairs[split]["svhn"]]
        )
        assert np.array_equal(views.labels, mnist_labels[pairs[split]["mnist"]])
        # every paired image is in exactly 3 pairs
        assert set(np.unique(pairs[split]["mnist"], return_counts=True)[1]) == {3}
        assert set(np.unique(pairs[split]["svhn"], return_counts=True)[1]) == {3}
    # the pixels are those of the paired images: the ids written at pixel (0, 0)
    first_ids = {"train": 0, "valid": 0, "test": 100}
    for split in ("train", "valid", "test"):
        mnist_ids = np.rint(getattr(data, split).data["mnist"][:, 0] * 255).astype(int)
        assert np.array_equal(mnist_ids, first_ids[split] + pairs[split]["mnist"])
    svhn_ids = np.rint(data.test.data["svhn"][:, 0] * 255).astype(int)
    assert np.array_equal(svhn_ids, 50 + pairs["test"]["svhn"])
    # no image is in both a training and a validation pair
    assert not set(pairs["train"]["mnist"]) & set(pairs["valid"]["mnist"])
    assert not set(pairs["train"]["svhn"]) & set(pairs["valid"]["svhn"])


def test_svhn_pixels_are_flattened_height_width_channel(digits_dir):
    data = load_dataset("mnist_svhn", data_dir_=digits_dir, pairs_per_image=1, valid_fraction=0.2)
    row = data.test.data["svhn"][0].reshape(32, 32, 3) * 255
    r, c, ch = 5, 7, 2
    assert row[r, c, ch] == pytest.approx((r + 2 * c + 3 * ch) % 256)
    assert data.train.dim("svhn") == 3072 and data.train.modality("svhn").image_shape == (32, 32, 3)
    assert data.train.data["svhn"].max() <= 1.0 and data.train.data["svhn"].dtype == np.float32


def test_mnist_svhn_reproducible_from_seed_and_subsampled(digits_dir):
    options = dict(data_dir_=digits_dir, pairs_per_image=3, valid_fraction=0.2, n_train=10)
    a = load_dataset("mnist_svhn", seed=1, **options)
    b = load_dataset("mnist_svhn", seed=1, **options)
    c = load_dataset("mnist_svhn", seed=2, **options)
    assert a.train.n == 10
    assert a.info["pairs_sha256"] == b.info["pairs_sha256"] != c.info["pairs_sha256"]
    for name in ("mnist", "svhn"):
        assert np.array_equal(a.info["pairs"]["train"][name], b.info["pairs"]["train"][name])
        assert np.array_equal(a.train.data[name], b.train.data[name])


def test_mnist3_roles_and_rotated_partner_of_the_same_class(digits_dir):
    data = load_dataset(
        "mnist3", data_dir_=digits_dir, pairs_per_image=2, valid_fraction=0.2, max_angle=0.0
    )
    assert data.train.observed == ("mnist",)
    assert data.train.missing == ("mnist_rotated", "svhn")
    pairs = data.info["pairs"]
    assert np.array_equal(MNIST_TRAIN_LABELS[pairs["train"]["mnist_rotated"]], data.train.labels)
    assert np.array_equal(MNIST_TEST_LABELS[pairs["test"]["mnist_rotated"]], data.test.labels)
    # the rotated digit comes from its own split: never a validation image in training
    assert not set(pairs["train"]["mnist_rotated"]) & set(pairs["valid"]["mnist"])
    rotated_ids = np.rint(data.test.data["mnist_rotated"][:, 0] * 255).astype(int)
    assert np.array_equal(rotated_ids, 100 + pairs["test"]["mnist_rotated"])
    one_missing = load_dataset(
        "mnist3", data_dir_=digits_dir, valid_fraction=0.2, observed=["mnist", "mnist_rotated"]
    )
    assert one_missing.test.observed == ("mnist", "mnist_rotated")
    assert one_missing.test.missing == ("svhn",)
    with pytest.raises(
        DataError,
        match=r"observed=\['mnist', 'svhn', 'mnist_rotated'\] leaves no "
        r"modality missing",
    ):
        load_dataset("mnist3", data_dir_=digits_dir, observed=["mnist", "svhn", "mnist_rotated"])


def test_svhn_labels_out_of_range_are_named(digits_dir):
    write_mat(
        digits_dir / "svhn/test_32x32.mat",
        {"X": svhn_images(SVHN_TEST_DIGITS, 0), "y": np.array([[0], [1], [2], [3], [4], [5]])},
    )
    with pytest.raises(
        DataError,
        match=r"test_32x32\.mat: y holds labels 0..5; expected integers "
        r"1..10",
    ):
        load_dataset("mnist_svhn", data_dir_=digits_dir, valid_fraction=0.2)
