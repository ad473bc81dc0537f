"""XRMB protocols, label mapping and standardisation on small fixtures in the real file layout."""

import numpy as np
import pytest
from test_data_formats import write_mat

from mmbench.data import load_dataset
from mmbench.data.errors import DataError

FOLD_SPEAKERS = [1, 3, 43, 45, 10, 13, 27, 29]
TABLE6_SPEAKERS = [7, 16, 20, 21, 23, 28, 31, 35]


def frames_of(speaker, n_frames):
    """(speakers, phones) of ``n_frames`` frames cycling through phones 0..3."""
    return np.full(n_frames, speaker), np.arange(n_frames) % 4


def write_xrmb(data_dir, label_base=1, version="5"):
    """Fixture XRMB files.

    train part: the 8 fold speakers and speaker 5, 12 frames each; tune part: speaker 50, 8 frames;
    test part: the Table 6 speakers, 8 frames each (speaker 7: 20), and 4 more frames of speaker 27
    (so fold 4 must pool the train and test parts). Phones cycle 0..3, stored from ``label_base``.
    acoustic[:, 0] = frame id in the pooled order, acoustic[:, 1] = 1 (even phone) or 3 (odd);
    articulatory[:, 0] = speaker, articulatory[:, 1] = 5 (even phone) or 9 (odd); frames of
    speakers 1 and 3 have 10 and 13 in column 1 instead.
    """
    parts = {
        "train": [frames_of(s, 12) for s in [*FOLD_SPEAKERS, 5]],
        "tune": [frames_of(50, 8)],
        "test": [frames_of(s, 20 if s == 7 else 8) for s in TABLE6_SPEAKERS] + [frames_of(27, 4)],
    }
    keys = {
        "train": ("X1", "X2", "trainLabel", "trainID"),
        "tune": ("XV1", "XV2", "tuneLabel", "tuneID"),
        "test": ("XTe1", "XTe2", "testLabel", "testID"),
    }
    view1, view2, first_id = {}, {}, 0
    for part, pieces in parts.items():
        speakers = np.concatenate([p[0] for p in pieces])
        phones = np.concatenate([p[1] for p in pieces])
        n = len(phones)
        acoustic, articulatory = np.zeros((n, 273)), np.zeros((n, 112))
        acoustic[:, 0] = first_id + np.arange(n)
        acoustic[:, 1] = np.where(phones % 2 == 0, 1.0, 3.0)
        articulatory[:, 0] = speakers
        articulatory[:, 1] = np.where(phones % 2 == 0, 5.0, 9.0)
        held_out = np.isin(speakers, [1, 3])
        acoustic[held_out, 1], articulatory[held_out, 1] = 10.0, 13.0
        first_id += n
        k1, k2, label_key, id_key = keys[part]
        view1[k1] = acoustic
        view2.update(
            {
                k2: articulatory,
                label_key: (phones + label_base).reshape(-1, 1),
                id_key: speakers.reshape(-1, 1),
            }
        )
    (data_dir / "xrmb").mkdir(exist_ok=True)
    write_mat(data_dir / "xrmb/XRMBf2KALDI_window7_single1.mat", view1, version)
    write_mat(data_dir / "xrmb/XRMBf2KALDI_window7_single2.mat", view2, version)
    return view1, view2


def speakers_of(views):
    return set(views.groups.tolist())


@pytest.fixture
def xrmb_dir(tmp_path):
    write_xrmb(tmp_path)
    return tmp_path


def test_folds_hold_out_their_speaker_pair(xrmb_dir):
    for fold, held_out in enumerate([(1, 3), (43, 45), (10, 13), (27, 29)], start=1):
        data = load_dataset("xrmb", data_dir_=xrmb_dir, protocol="folds", fold=fold, standardize=[])
        assert speakers_of(data.test) == set(held_out)
        trained_on = speakers_of(data.train) | speakers_of(data.valid)
        assert trained_on == set(FOLD_SPEAKERS) - set(held_out)
        # every frame of the held-out speakers, from both parts: 12 each, 4 more of speaker 27
        assert data.test.n == 24 + (4 if 27 in held_out else 0)
        assert data.train.n + data.valid.n == 6 * 12 + (0 if 27 in held_out else 4)
        # rows and groups stay aligned: articulatory column 0 holds the speaker
        assert np.array_equal(data.test.data["articulatory"][:, 0], data.test.groups)
    # "rest": every other speaker of the pooled parts, train and test by default (the tune part's
    # speaker 50 only when the tune part is pooled too)
    rest = load_dataset("xrmb", data_dir_=xrmb_dir, protocol="folds", fold=1, fold_train="rest")
    everyone = set([*FOLD_SPEAKERS, 5, *TABLE6_SPEAKERS])
    assert speakers_of(rest.train) | speakers_of(rest.valid) == everyone - {1, 3}
    with_tune = load_dataset(
        "xrmb",
        data_dir_=xrmb_dir,
        protocol="folds",
        fold=1,
        fold_train="rest",
        parts=["train", "tune", "test"],
    )
    assert speakers_of(with_tune.train) | speakers_of(with_tune.valid) == everyone - {1, 3} | {50}


def test_speaker_independent_protocol(xrmb_dir):
    data = load_dataset("xrmb", data_dir_=xrmb_dir, protocol="speakers", standardize=[])
    assert speakers_of(data.test) == set(TABLE6_SPEAKERS)
    assert data.test.n == 7 * 8 + 20
    # training frames: the training part only (not tune speaker 50, not speaker 27's test frames)
    assert speakers_of(data.train) | speakers_of(data.valid) == set([*FOLD_SPEAKERS, 5])
    assert data.train.n + data.valid.n == 9 * 12
    one = load_dataset("xrmb", data_dir_=xrmb_dir, protocol="speakers", speaker=16, standardize=[])
    assert speakers_of(one.test) == {16} and one.test.n == 8
    with pytest.raises(DataError, match=r"speaker=99 is not one of the test speakers"):
        load_dataset("xrmb", data_dir_=xrmb_dir, protocol="speakers", speaker=99)


def test_per_speaker_split_is_stratified_and_seeded(xrmb_dir):
    options = dict(
        data_dir_=xrmb_dir,
        protocol="per_speaker",
        speaker=7,
        test_fraction=0.4,
        valid_fraction=1 / 3,
        standardize=[],
    )
    data = load_dataset("xrmb", seed=0, **options)
    # speaker 7: 20 frames, 5 per phone -> 3 train + 2 test per phone; 1/3 of 3 to validation
    assert (data.train.n, data.valid.n, data.test.n) == (8, 4, 8)
    assert np.bincount(data.test.labels).tolist() == [2, 2, 2, 2]
    assert speakers_of(data.train) == speakers_of(data.test) == {7}
    ids = [
        set(getattr(data, s).data["acoustic"][:, 0].tolist()) for s in ("train", "valid", "test")
    ]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again = load_dataset("xrmb", seed=0, **options)
    other = load_dataset("xrmb", seed=1, **options)
    assert np.array_equal(again.test.data["acoustic"], data.test.data["acoustic"])
    assert not np.array_equal(other.test.data["acoustic"][:, 0], data.test.data["acoustic"][:, 0])
    with pytest.raises(DataError, match=r"per_speaker needs the option speaker"):
        load_dataset("xrmb", data_dir_=xrmb_dir, protocol="per_speaker")


@pytest.mark.parametrize("label_base", [0, 1])
def test_phones_are_mapped_to_0_based(tmp_path, label_base):
    write_xrmb(tmp_path, label_base=label_base)
    data = load_dataset(
        "xrmb", data_dir_=tmp_path, protocol="per_speaker", speaker=7, standardize=[]
    )
    # acoustic column 1 is 1 for even phones, 3 for odd ones, whatever the file's numbering
    assert set(data.test.labels.tolist()) == {0, 1, 2, 3}
    assert np.array_equal(data.test.data["acoustic"][:, 1], np.where(data.test.labels % 2, 3, 1))
    assert data.n_classes == 40 and data.info["label_offset"] == label_base


def test_by_default_the_frames_are_the_authors_train_and_test_parts_unscaled(xrmb_dir):
    """The CMMD authors' loaders: train + test parts pooled (no tune frames), no rescaling."""
    for protocol, options in (
        ("folds", {"fold": 2, "fold_train": "rest"}),
        ("per_speaker", {"speaker": 7}),
        ("speakers", {}),
    ):
        data = load_dataset("xrmb", data_dir_=xrmb_dir, protocol=protocol, **options)
        assert data.info["parts"] == ["train", "test"] and data.info["standardized"] == []
        frames = {s: getattr(data, s) for s in ("train", "valid", "test")}
        assert all(50 not in speakers_of(views) for views in frames.values())
        for views in frames.values():  # the fixture's values, as written
            assert set(views.data["acoustic"][:, 1].tolist()) <= {1.0, 3.0, 10.0}
            assert np.array_equal(views.data["articulatory"][:, 0], views.groups)
    # The pooled frames of fold 2's "rest": every frame of the train and test parts but the
    # held-out speakers'; with the tune part, its 8 frames too.
    rest = load_dataset("xrmb", data_dir_=xrmb_dir, fold=2, fold_train="rest")
    n_train_test = 9 * 12 + 7 * 8 + 20 + 4
    assert rest.train.n + rest.valid.n + rest.test.n == n_train_test
    every_part = load_dataset(
        "xrmb", data_dir_=xrmb_dir, fold=2, fold_train="rest", parts=["train", "tune", "test"]
    )
    assert every_part.train.n + every_part.valid.n + every_part.test.n == n_train_test + 8


def test_parts_must_suit_the_protocol(xrmb_dir):
    with pytest.raises(
        DataError,
        match=r"protocol speakers trains on the train part, which "
        r"parts=\['test'\] leaves out",
    ):
        load_dataset("xrmb", data_dir_=xrmb_dir, protocol="speakers", parts=["test"])
    with pytest.raises(DataError, match=r"parts=\['train', 'train'\] names a part twice"):
        load_dataset("xrmb", data_dir_=xrmb_dir, parts=["train", "train"])
    with pytest.raises(DataError, match=r"parts=\(\) is not allowed"):
        load_dataset("xrmb", data_dir_=xrmb_dir, parts=[])
    # Without the test part the fold-4 speaker 27 keeps only its 12 training-part frames.
    fold4 = load_dataset("xrmb", data_dir_=xrmb_dir, fold=4, parts=["train"])
    assert speakers_of(fold4.test) == {27, 29} and fold4.test.n == 24


def test_standardisation_uses_training_statistics(xrmb_dir):
    data = load_dataset(
        "xrmb",
        data_dir_=xrmb_dir,
        protocol="folds",
        fold=1,
        standardize=["acoustic", "articulatory"],
    )
    # training frames (fold 1): 17 of 19 per phone; acoustic column 1 is 1 or 3 in equal numbers
    # -> mean 2, std 1; articulatory column 1 is 5 or 9 -> mean 7, std 2
    assert np.allclose(np.unique(data.train.data["acoustic"][:, 1]), [-1, 1])
    assert np.allclose(np.unique(data.train.data["articulatory"][:, 1]), [-1, 1])
    # the held-out speakers have 10 and 13 there: scaled with the training mean and std
    assert np.allclose(data.test.data["acoustic"][:, 1], (10 - 2) / 1)
    assert np.allclose(data.test.data["articulatory"][:, 1], (13 - 7) / 2)
    assert np.allclose(data.train.data["acoustic"].mean(0)[:2], 0, atol=1e-5)
    only_acoustic = load_dataset("xrmb", data_dir_=xrmb_dir, fold=1, standardize=["acoustic"])
    assert np.allclose(only_acoustic.test.data["articulatory"][:, 1], 13)
    with pytest.raises(
        DataError,
        match=r"standardize\[0\]='x1' is not allowed .*standardize must "
        r"be a list whose items are each one of 'acoustic', "
        r"'articulatory'",
    ):
        load_dataset("xrmb", data_dir_=xrmb_dir, standardize=["x1"])


def test_matlab_v73_files_give_the_same_data(tmp_path):
    for folder, version in (("v5", "5"), ("v73", "7.3")):
        (tmp_path / folder).mkdir()
        write_xrmb(tmp_path / folder, version=version)
    a = load_dataset("xrmb", data_dir_=tmp_path / "v5", fold=2)
    b = load_dataset("xrmb", data_dir_=tmp_path / "v73", fold=2)
    for split in ("train", "valid", "test"):
        assert np.array_equal(
            getattr(a, split).data["acoustic"], getattr(b, split).data["acoustic"]
        )
        assert np.array_equal(getattr(a, split).labels, getattr(b, split).labels)
        assert np.array_equal(getattr(a, split).groups, getattr(b, split).groups)


def test_bad_files_name_the_key_and_the_expectation(tmp_path):
    view1, view2 = write_xrmb(tmp_path)
    view1["XV1"] = view1["XV1"][:, :272]
    write_mat(tmp_path / "xrmb/XRMBf2KALDI_window7_single1.mat", view1)
    with pytest.raises(
        DataError,
        match=r"single1\.mat: XV1 .*has shape \(8, 272\); expected "
        r"\(8, 273\)",
    ):
        load_dataset("xrmb", data_dir_=tmp_path)
    view1["XV1"] = np.zeros((8, 273))
    write_mat(tmp_path / "xrmb/XRMBf2KALDI_window7_single1.mat", view1)
    del view2["tuneID"]
    write_mat(tmp_path / "xrmb/XRMBf2KALDI_window7_single2.mat", view2)
    with pytest.raises(DataError, match=r"single2\.mat: no variable\(s\) \['tuneID'\]"):
        load_dataset("xrmb", data_dir_=tmp_path)
    view2["tuneID"] = np.full((8, 1), 50)
    view2["testLabel"][0] = 41
    write_mat(tmp_path / "xrmb/XRMBf2KALDI_window7_single2.mat", view2)
    with pytest.raises(DataError, match=r"holds labels 1..41; expected integers 1..40"):
        load_dataset("xrmb", data_dir_=tmp_path)


def test_missing_xrmb_file_points_to_fetch_and_ttic(tmp_path):
    with pytest.raises(
        DataError,
        match=r"XRMBf2KALDI_window7_single1\.mat not found in .*xrmb; "
        r"run `mmbench data fetch xrmb`.*ttic\.edu",
    ):
        load_dataset("xrmb", data_dir_=tmp_path)
