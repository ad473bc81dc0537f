"""XRMB: acoustic frames observed, articulatory frames missing, 40 phone classes, speaker groups.

Files (Wang et al.'s preprocessing, MATLAB v5 or v7.3):
``XRMBf2KALDI_window7_single1.mat``: X1, XV1, XTe1, the 273-D acoustics (39 MFCC features over a
7-frame window) of the train / tune / test frames; ``XRMBf2KALDI_window7_single2.mat``: X2, XV2,
XTe2, the 112-D articulation, trainLabel / tuneLabel / testLabel (phone classes) and trainID /
tuneID / testID (speakers).

The frames of the train and test parts are pooled (``parts``; the tune part on request) and split
by speaker according to a protocol of the CMMD paper; a validation set is then carved (stratified
by phone) from the training frames.

The defaults are the CMMD authors' loaders (``load_folds_xrmb``, ``load_xrmb_oneperson``): frames
of the train and test parts only, neither view rescaled, so that rmse is in the files' units, the
units of the paper's figures (Table 6, Fig. 3) that tables print beside ours. One deliberate
difference: their loaders validate on the test frames (folds) or on the first 3,000 of them (one
speaker); mmbench never selects on test frames, and validates on ``valid_fraction`` of the
training frames instead. ``standardize`` z-scores views with training statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from mmbench.data import register_dataset
from mmbench.data.embedded import stratified_split
from mmbench.data.errors import DataError
from mmbench.data.formats import check_label_range, check_shape, column, read_mat
from mmbench.data.options import Fraction, Seed
from mmbench.data.sources import locate_one
from mmbench.views import DataSplits, Modality, Views
from mmbench.views import standardize as standardize_on_train

ACOUSTIC_DIM, ARTICULATORY_DIM, N_PHONES = 273, 112, 40
FOLD_SPEAKERS = ((1, 3), (43, 45), (10, 13), (27, 29))  # paper Table 1
TEST_SPEAKERS = (7, 16, 20, 21, 23, 28, 31, 35)  # paper Table 6
PARTS = ("train", "tune", "test")
_KEYS = {
    "train": ("X1", "X2", "trainLabel", "trainID"),
    "tune": ("XV1", "XV2", "tuneLabel", "tuneID"),
    "test": ("XTe1", "XTe2", "testLabel", "testID"),
}


def read_xrmb(data_dir: Path) -> tuple[Views, np.ndarray, int]:
    """Every frame of the two files, pooled in the order train, tune, test.

    Returns the frames as one :class:`Views` ("acoustic" (n, 273) observed, "articulatory"
    (n, 112) missing, labels 0..39, groups = speaker ids), the file part of each frame (n,) as an
    index into ``PARTS``, and the label offset subtracted (0 when the file counts phones from 0,
    1 when from 1).
    """
    path1 = locate_one(data_dir, "xrmb", "XRMBf2KALDI_window7_single1.mat")
    path2 = locate_one(data_dir, "xrmb", "XRMBf2KALDI_window7_single2.mat")
    acoustic_stored = read_mat(path1, [_KEYS[p][0] for p in PARTS])
    articulatory_stored = read_mat(path2, [k for p in PARTS for k in _KEYS[p][1:]])
    acoustic, articulatory, labels_per_part, speakers, parts = [], [], [], [], []
    for index, part in enumerate(PARTS):
        acoustic_key, articulatory_key, label_key, speaker_key = _KEYS[part]
        part_labels = column(articulatory_stored[label_key], f"{path2}: {label_key}")
        n = len(part_labels)
        part_speakers = column(articulatory_stored[speaker_key], f"{path2}: {speaker_key}")
        check_shape(part_speakers, (n,), f"{path2}: {speaker_key} (one speaker per {label_key})")
        check_shape(
            acoustic_stored[acoustic_key],
            (n, ACOUSTIC_DIM),
            f"{path1}: {acoustic_key} (one row per {label_key} of {path2.name})",
        )
        check_shape(
            articulatory_stored[articulatory_key],
            (n, ARTICULATORY_DIM),
            f"{path2}: {articulatory_key} (one row per {label_key})",
        )
        acoustic.append(acoustic_stored.pop(acoustic_key).astype(np.float32))
        articulatory.append(articulatory_stored.pop(articulatory_key).astype(np.float32))
        labels_per_part.append(part_labels)
        speakers.append(part_speakers.astype(np.int64))
        parts.append(np.full(n, index, dtype=np.int8))
    labels = np.concatenate(labels_per_part)
    offset = _label_offset(labels, f"{path2}: trainLabel/tuneLabel/testLabel")
    frames = Views(
        {"acoustic": np.concatenate(acoustic), "articulatory": np.concatenate(articulatory)},
        ("acoustic",),
        ("articulatory",),
        labels.astype(np.int64) - offset,
        groups=np.concatenate(speakers),
        modalities={"acoustic": Modality("gaussian"), "articulatory": Modality("gaussian")},
    )
    return frames, np.concatenate(parts), offset


def _label_offset(labels: np.ndarray, where: str) -> int:
    """0 when the phone classes are numbered 0..39, 1 when 1..40 (decided on all parts at once,
    so every protocol maps labels the same way)."""
    if labels.size and labels.min() == 0:
        check_label_range(labels, 0, N_PHONES - 1, where)
        return 0
    check_label_range(labels, 1, N_PHONES, where)
    return 1


def _speaker_frames(speakers: np.ndarray, wanted: Sequence[int], what: str) -> np.ndarray:
    """Boolean mask (n,) of the frames of speakers ``wanted``; each must have frames."""
    absent = sorted(set(wanted) - set(np.unique(speakers).tolist()))
    if absent:
        raise DataError(
            f"xrmb: {what} {absent} have no frames in the XRMB files "
            f"(speakers present: {np.unique(speakers).tolist()})"
        )
    return np.isin(speakers, list(wanted))


def _protocol_needs(options: dict) -> str | None:
    """Rule of ``xrmb``: the speaker option and the parts as each protocol needs them."""
    protocol, speaker, parts = options["protocol"], options["speaker"], options["parts"]
    if len(set(parts)) != len(parts):
        return f"parts={list(parts)} names a part twice"
    if protocol == "speakers" and "train" not in parts:
        return (
            f"protocol speakers trains on the train part, which parts={list(parts)} leaves "
            "out; add train"
        )
    if protocol == "speakers" and speaker is not None and speaker not in TEST_SPEAKERS:
        return f"speaker={speaker} is not one of the test speakers {list(TEST_SPEAKERS)}"
    if protocol == "per_speaker" and speaker is None:
        return f"protocol per_speaker needs the option speaker (e.g. one of {list(TEST_SPEAKERS)})"
    return None


@register_dataset("xrmb", rules=(_protocol_needs,))
def xrmb(
    seed: Seed = 0,
    data_dir: Path | None = None,
    protocol: Annotated[
        Literal["folds", "speakers", "per_speaker"],
        Field(
            description=(
                "the CMMD paper's protocol: Table 1 folds, Table 6 speakers, Sec. 4.4 one speaker"
            )
        ),
    ] = "folds",
    fold: Annotated[
        int,
        Field(
            ge=1, le=len(FOLD_SPEAKERS), description=("the held-out speaker pair of protocol folds")
        ),
    ] = 1,
    fold_train: Annotated[
        Literal["folds", "rest"],
        Field(
            description=(
                "protocol folds trains on the other folds' speakers, or on every other speaker"
            )
        ),
    ] = "folds",
    speaker: Annotated[
        int | None,
        Field(description=("the test speaker (speakers: one of the eight; per_speaker: required)")),
    ] = None,
    valid_fraction: Annotated[
        Fraction, Field(description=("share of the training frames held out for validation"))
    ] = 0.1,
    test_fraction: Annotated[
        Fraction,
        Field(description=("share of the speaker's frames in the test split (per_speaker)")),
    ] = 0.3,
    parts: Annotated[
        tuple[Literal["train", "tune", "test"], ...],
        Field(
            min_length=1,
            description="parts of the files whose frames are pooled (the "
            "authors' loaders: train and test)",
        ),
    ] = ("train", "test"),
    standardize: Annotated[
        tuple[Literal["acoustic", "articulatory"], ...],
        Field(
            description="modalities z-scored with training statistics (the authors' loaders: none)"
        ),
    ] = (),
) -> DataSplits:
    """XRMB under one of the CMMD paper's protocols (the frames of ``parts`` pooled first).

    protocol:
      "folds": paper Table 1, 4-fold cross-validation over speaker pairs (1, 3), (43, 45),
          (10, 13), (27, 29); ``fold`` 1..4 picks the held-out pair (test). ``fold_train``:
          "folds" trains on the six speakers of the other three folds (the CMMD code), "rest"
          on every other speaker of the pooled parts.
      "speakers": paper Table 6, speaker-independent: train on the frames of the training part
          (the 35 training speakers), test on speakers 7, 16, 20, 21, 23, 28, 31, 35, or on
          ``speaker`` alone when given.
      "per_speaker": paper Sec. 4.4, speaker-dependent: the frames of ``speaker`` split at random
          (stratified by phone) into 1 - test_fraction training and test_fraction test frames.
    The validation split is ``valid_fraction`` of the training frames (stratified by phone).
    parts: the parts of the files pooled before the split; the default, train and test, is the
        authors' loaders (add "tune" for its frames too).
    standardize: modalities z-scored with training-split statistics (default none, as the
        authors' loaders: rmse in the files' units, as in the paper).
    Labels are phones 0..39; groups are speaker ids.
    """
    assert data_dir is not None  # load_dataset passes the data directory
    frames, part_of_frame, offset = read_xrmb(data_dir)
    pooled = np.isin(part_of_frame, [PARTS.index(part) for part in parts])
    frames, part_of_frame = frames.subset(np.flatnonzero(pooled)), part_of_frame[pooled]
    rng = np.random.default_rng(seed)
    train, test, details = _protocol_split(
        frames, part_of_frame, rng, protocol, fold, fold_train, speaker, test_fraction
    )
    speakers = frames.groups
    assert speakers is not None  # read_xrmb gives every frame its speaker
    fit, valid = (
        train[p]
        for p in stratified_split(frames.labels[train], (1 - valid_fraction, valid_fraction), rng)
    )
    info = {
        "protocol": protocol,
        **details,
        "seed": seed,
        "label_offset": offset,
        "parts": list(parts),
        "standardized": list(standardize),
        "train_speakers": np.unique(speakers[fit]).tolist(),
        "test_speakers": np.unique(speakers[test]).tolist(),
    }
    splits = DataSplits(
        "xrmb",
        frames.subset(fit),
        frames.subset(valid),
        frames.subset(test),
        n_classes=N_PHONES,
        info=info,
    )
    return standardize_on_train(splits, tuple(standardize))


def _protocol_split(
    frames: Views,
    parts: np.ndarray,
    rng: np.random.Generator,
    protocol: str,
    fold: int,
    fold_train: str,
    speaker: int | None,
    test_fraction: float,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Positions of the training and test frames under ``protocol`` (see :func:`xrmb`), and the
    protocol's settings for the record."""
    speakers = frames.groups
    assert speakers is not None  # read_xrmb gives every frame its speaker
    if protocol == "folds":
        held_out = FOLD_SPEAKERS[fold - 1]
        is_test = _speaker_frames(speakers, held_out, f"the speakers of fold {fold}")
        others = [s for pair in FOLD_SPEAKERS if pair != held_out for s in pair]
        is_train = (
            _speaker_frames(speakers, others, "the fold speakers")
            if fold_train == "folds"
            else ~is_test
        )
        details = {"fold": fold, "fold_train": fold_train}
    elif protocol == "speakers":
        chosen = TEST_SPEAKERS if speaker is None else (speaker,)
        is_test = _speaker_frames(speakers, chosen, "the test speakers")
        is_train = (parts == PARTS.index("train")) & ~np.isin(speakers, TEST_SPEAKERS)
        details = {"speaker": speaker}
    else:  # per_speaker
        assert speaker is not None  # _protocol_needs requires it
        own = np.flatnonzero(_speaker_frames(speakers, (speaker,), "speaker"))
        train, test = stratified_split(frames.labels[own], (1 - test_fraction, test_fraction), rng)
        return own[train], own[test], {"speaker": speaker, "test_fraction": test_fraction}
    return np.flatnonzero(is_train), np.flatnonzero(is_test), details
