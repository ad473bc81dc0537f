"""Your own multi-view data, from one .npz or .parquet file.

npz layout: one array per view named ``view_<name>`` with one row per sample, shape (n, ...)
(images may keep their shape, e.g. (n, 28, 28); they are flattened and the shape is kept for
figures); ``labels`` (n,) of class values (integers or strings), or (n, L) {0, 1} indicators for
multi-label data; optional ``groups`` (n,) (e.g. subject ids); optional ``split`` (n,) with the
strings ``train``, ``valid``, ``test``.

parquet layout: the same names as columns, with one column per feature of a view named
``<view>__<i>`` (i = 0..d-1), and ``labels`` (one column) or ``labels__<j>`` (j = 0..L-1,
multi-label), ``groups`` and ``split``.

Without a split, a random split stratified by class (random for multi-label data) is drawn from
``seed``. Class values are mapped to 0..K-1 in sorted order (``info["classes"]`` keeps them).

The file is checked once, on load, and every problem is one :class:`DataError` that names the
file: it must be a readable npz / parquet file; view names must be safe file names (figures are
written per view); every view holds numbers, at least one column and one row per label, all
finite in float32 (the precision models compute in); labels are not missing, not fractional
numbers, and hold at least 2 classes; and after the split every split holds at least
``MIN_SPLIT_ROWS`` rows, of at least 2 classes for class labels.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from mmbench.data import Loader, register_dataset
from mmbench.data.embedded import stratified_split
from mmbench.data.errors import DataError
from mmbench.data.formats import check_shape
from mmbench.data.options import Fraction, Seed, training_rows_left
from mmbench.paths import UnsafePath, safe_name
from mmbench.views import DataSplits, Modality, Views
from mmbench.views import standardize as standardize_on_train

SPLIT_NAMES = ("train", "valid", "test")
MIN_SPLIT_ROWS = 2
MIN_CLASSES = 2
_FEATURE_COLUMN = re.compile(r"(?P<name>.+)__(?P<index>\d+)")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip file with members, an empty zip file
_NPY_MAGIC = b"\x93NUMPY"
_PARQUET_MAGIC = b"PAR1"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_WRITE_AGAIN = {
    "npz": "write it again with numpy.savez(path, view_<name>=..., labels=...)",
    "parquet": "write it again with pandas.DataFrame.to_parquet",
}

UserFile = Annotated[
    str,
    Field(
        min_length=1,
        description=(
            "your .npz / .parquet file; a relative path is looked for in the suite's folder, the "
            "working directory, then the data directory"
        ),
    ),
]
ViewNames = Annotated[tuple[str, ...], Field(description="names of views of the file")]
Observed = Annotated[
    tuple[str, ...], Field(min_length=1, description=("the views available at test time"))
]
Missing = Annotated[
    tuple[str, ...] | None,
    Field(description=("the views to generate at test time (null: every view not observed)")),
]
ValidFraction = Annotated[
    Fraction,
    Field(
        description=("share of the rows drawn into the validation split, for files without a split")
    ),
]
TestFraction = Annotated[
    Fraction,
    Field(description=("share of the rows drawn into the test split, for files without a split")),
]
Bernoulli = Annotated[
    ViewNames,
    Field(
        description=("views with values in [0, 1] modelled as Bernoulli (the others are Gaussian)")
    ),
]
Standardize = Annotated[
    ViewNames, Field(description=("views z-scored with the statistics of the training split"))
]


def locate_user_file(
    path: str | os.PathLike | None,
    loader: str,
    base_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """The file ``path`` names: as given when absolute; a relative path is looked for in
    ``base_dir`` (the suite's folder), the working directory, then ``data_dir``."""
    if path is None:
        raise DataError(f"{loader}: the option path is required (the file with your views)")
    given = Path(path).expanduser()
    folders = [] if given.is_absolute() else [base_dir, Path.cwd(), data_dir]
    candidates = [given] if given.is_absolute() else []
    for folder in folders:
        if folder is not None and Path(folder, given).absolute() not in candidates:
            candidates.append(Path(folder, given).absolute())
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{loader}: file {path} not found (looked in {', '.join(str(c) for c in candidates)})"
    )


def _check_signature(path: Path, kind: str) -> None:
    """Raise a :class:`DataError` unless ``path`` starts (and, for parquet, ends) like a file of
    ``kind`` ("npz" or "parquet")."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        head = stream.read(8)
        stream.seek(max(size - 4, 0))
        tail = stream.read(4)
    if size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); {_WRITE_AGAIN[kind]}")
    is_kind = head[:4] in _ZIP_MAGIC if kind == "npz" else head[:4] == _PARQUET_MAGIC
    if not is_kind:
        raise DataError(f"{path}: not a .{kind} file ({_what_it_is(head)}); {_WRITE_AGAIN[kind]}")
    if kind == "parquet" and (size < 12 or tail != _PARQUET_MAGIC):
        raise DataError(
            f"{path}: the parquet file is truncated (it does not end with the parquet "
            f"footer); {_WRITE_AGAIN[kind]}"
        )


def _what_it_is(head: bytes) -> str:
    if head.startswith(_NPY_MAGIC):
        return "it is a single .npy array; save the views and labels together with numpy.savez"
    if head[:4] == _PARQUET_MAGIC:
        return "it is a parquet file: use the data set parquet"
    if head[:4] in _ZIP_MAGIC:
        return "it is a zip archive, as .npz files are: use the data set npz"
    return f"it starts with the bytes {head!r}"


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(views by name, the other arrays: labels, groups, split) of an .npz file."""
    _check_signature(path, "npz")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: _npz_member(path, stored, key) for key in stored.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise DataError(
            f"{path}: the .npz file is damaged or truncated ({error}); {_WRITE_AGAIN['npz']}"
        ) from None
    views = {key[len("view_") :]: array for key, array in arrays.items() if key.startswith("view_")}
    others = {key: array for key, array in arrays.items() if not key.startswith("view_")}
    return views, others


def _npz_member(path: Path, stored: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return stored[key]
    except ValueError as error:
        if "allow_pickle" in str(error):  # numpy's object arrays would need unpickling
            raise DataError(
                f"{path}: array {key!r} holds Python objects (dtype object), which "
                "mmbench does not load (unpickling can run code); save it as numbers "
                "or strings, e.g. labels.astype(str)"
            ) from None
        raise DataError(
            f"{path}: array {key!r} is damaged ({error}); {_WRITE_AGAIN['npz']}"
        ) from None


def _read_parquet(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(views by name, the other arrays: labels, groups, split) of a .parquet file whose feature
    columns are named ``<view>__<i>``."""
    try:
        import pyarrow
    except ImportError:
        raise DataError(
            f"{path}: reading .parquet files needs pyarrow: pip install 'mmbench[parquet]'"
        ) from None
    import pandas as pd

    _check_signature(path, "parquet")
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        raise DataError(
            f"{path}: the parquet file cannot be read ({error}); {_WRITE_AGAIN['parquet']}"
        ) from None
    features: dict[str, dict[int, str]] = {}
    others = {}
    for name in table.columns:
        match = _FEATURE_COLUMN.fullmatch(str(name))
        if match:
            features.setdefault(match["name"], {})[int(match["index"])] = name
        else:
            others[str(name)] = table[name].to_numpy()
    arrays = {}
    for view, columns in features.items():
        missing = sorted(set(range(max(columns) + 1)) - set(columns))
        if missing:
            raise DataError(
                f"{path}: view {view!r} has no column(s) "
                f"{[f'{view}__{i}' for i in missing[:5]]}; expected {view}__0 .. "
                f"{view}__{max(columns)}"
            )
        arrays[view] = table[[columns[i] for i in range(len(columns))]].to_numpy()
    if "labels" in arrays:  # multi-label indicators, labels__0 .. labels__{L-1}
        others["labels"] = arrays.pop("labels")
    return arrays, others


def _missing_labels(labels: np.ndarray) -> np.ndarray:
    """(n,) True where a label is absent: NaN (float labels) or None / NaN (object labels)."""
    if labels.dtype.kind == "f":
        return ~np.isfinite(labels)
    if labels.dtype.kind == "O":
        return np.array(
            [v is None or (isinstance(v, float) and not math.isfinite(v)) for v in labels],
            dtype=bool,
        )
    return np.zeros(len(labels), dtype=bool)


def _class_ids(labels: np.ndarray, where: str) -> tuple[np.ndarray, list | None]:
    """Labels as int64 class ids 0..K-1 (n,) with the sorted class values, or multi-label
    indicators (n, L) with None."""
    if labels.ndim == 2:
        bad = ~np.isin(labels, (0, 1))
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise DataError(
                f"{where}: 2-D labels must be 0/1 indicators (n, n_labels); row "
                f"{row}, column {column} holds {labels[row, column].item()!r}"
            )
        return labels.astype(np.int64), None
    check_shape(labels, (None,), where)
    absent = _missing_labels(labels)
    if absent.any():
        raise DataError(
            f"{where} are missing (NaN, inf or None) in {int(absent.sum())} of "
            f"{len(labels)} rows, first at row {int(np.argmax(absent))}; give every "
            "row a class, or drop the unlabelled rows"
        )
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        example = labels[np.argmax(labels != np.round(labels))]
        raise DataError(
            f"{where} hold fractional numbers (e.g. {example:g}; "
            f"{len(np.unique(labels))} distinct values in {len(labels)} rows); labels "
            "are classes: use integers or strings, or bin a continuous target into "
            "classes"
        )
    classes, ids = np.unique(labels, return_inverse=True)
    if len(classes) < MIN_CLASSES:
        raise DataError(
            f"{where} hold a single class ({classes.tolist()[0]!r}) in all "
            f"{len(labels)} rows; classification needs at least {MIN_CLASSES} classes"
        )
    return ids.astype(np.int64), classes.tolist()


def _split_positions(
    split: np.ndarray | None,
    labels: np.ndarray,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    where: str,
) -> tuple[list[np.ndarray], str]:
    """Positions of the train, valid and test samples: from the ``split`` column, else a seeded
    split stratified by class (plain random for multi-label data); and where they come from."""
    if split is None:
        strata = labels if labels.ndim == 1 else np.zeros(len(labels), dtype=np.int64)
        fractions = (1 - valid_fraction - test_fraction, valid_fraction, test_fraction)
        return (
            stratified_split(strata, fractions, np.random.default_rng(seed)),
            f"random with valid_fraction {valid_fraction} and test_fraction "
            f"{test_fraction}, stratified by class, seed {seed}",
        )
    names = np.char.strip(np.asarray(split).astype(str))
    unknown = sorted(set(np.unique(names).tolist()) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"{where}: split holds {unknown[:5]}; expected only {list(SPLIT_NAMES)}")
    return [np.flatnonzero(names == s) for s in SPLIT_NAMES], "from the file's split column"


def _check_splits(
    path: Path,
    positions: list[np.ndarray],
    labels: np.ndarray,
    origin: str,
    smallest_fraction: float | None,
) -> None:
    """Every split must hold ``MIN_SPLIT_ROWS`` rows, of ``MIN_CLASSES`` classes for class
    labels. ``smallest_fraction``: the smaller of valid_fraction and test_fraction of a random
    split (None for a split from the file), to say which classes are too small."""
    multilabel = labels.ndim == 2
    for name, rows in zip(SPLIT_NAMES, positions):
        n_classes = len(np.unique(labels[rows])) if not multilabel else None
        if len(rows) >= MIN_SPLIT_ROWS and (n_classes is None or n_classes >= MIN_CLASSES):
            continue
        held = f"{len(rows)} row(s)" + ("" if multilabel else f" of {n_classes} class(es)")
        needed = f"at least {MIN_SPLIT_ROWS} rows" + (
            "" if multilabel else f" of at least {MIN_CLASSES} classes"
        )
        if smallest_fraction is None:
            fix = "move rows of more classes into it in the split column"
        else:
            fix = "raise valid_fraction / test_fraction or add rows"
            if not multilabel:
                enough = math.ceil(1 / smallest_fraction)
                small = int((np.bincount(labels) < enough).sum())
                if small:
                    fix = (
                        f"{small} of the {labels.max() + 1} classes have fewer than {enough} "
                        f"rows, too few to reach every split; merge small classes or add "
                        "rows"
                    )
        raise DataError(
            f"{path}: after the split ({origin}) the {name} split holds {held}; "
            f"every split needs {needed}: {fix}"
        )


def _view_values(path: Path, name: str, array: np.ndarray, n: int) -> np.ndarray:
    """A view (n, ...) as float32 (n, d), d >= 1, every value finite."""
    where = f"{path}: view {name!r}"
    check_shape(array, (n, *array.shape[1:]), f"{where} (one row per label)")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where} holds {array.dtype} values; a view must hold numbers")
    if array.size == 0:
        raise DataError(
            f"{where} has shape {array.shape}, no columns; a view needs at least one value per row"
        )
    rows = array.reshape(n, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        values = rows.astype(np.float32)
    finite = np.isfinite(values)
    if finite.all():
        return values
    row, column = divmod(int(np.argmin(finite)), values.shape[1])
    if array.ndim == 2:
        position = f"row {row}, column {column}"
    elif array.ndim == 1:
        position = f"row {row}"
    else:
        index = tuple(int(i) for i in np.unravel_index(column, array.shape[1:]))
        position = f"row {row}, position {index}"
    original = rows[row, column]
    count = f"{values.size - int(finite.sum())} value(s) in all"
    if np.isfinite(original):
        raise DataError(
            f"{where} holds {original:g} at {position} ({count}), beyond the float32 "
            f"range (±{_FLOAT32_MAX:.2g}) that models compute in; rescale the view"
        )
    raise DataError(
        f"{where} holds {original} at {position} ({count}); every value must be a "
        "finite number: drop or impute those rows"
    )


def _check_contents(
    loader: str,
    path: Path,
    views: dict[str, np.ndarray],
    others: dict[str, np.ndarray],
    roles: dict[str, tuple[str, ...]],
) -> None:
    """Raise a :class:`DataError` for missing labels or views, unsafe view names, unexpected
    entries, or options (observed, missing, bernoulli, standardize: ``roles``) naming views the
    file does not have."""
    unexpected = sorted(set(others) - {"labels", "groups", "split"})
    if unexpected:
        raise DataError(
            f"{path}: unexpected entries {unexpected}; expected view_<name> (npz) or "
            "<view>__<i> (parquet) views, labels, and optionally groups and split"
        )
    if "labels" not in others:
        raise DataError(f"{path}: no labels; add an array (npz) or column (parquet) named labels")
    if not views:
        raise DataError(f"{path}: no views; name them view_<name> (npz) or <view>__<i> (parquet)")
    for name in views:
        try:
            safe_name("view name", name)
        except UnsafePath as error:
            raise DataError(
                f"{path}: {error} (figures are written per view); rename that view in the file"
            ) from None
    for option, names in roles.items():
        unknown = sorted(set(names) - set(views))
        if unknown:
            raise DataError(
                f"{loader}: {option} names {unknown}; the views in {path} are {list(views)}"
            )


def _modality_arrays(
    path: Path, views: dict[str, np.ndarray], n: int, bernoulli: tuple[str, ...]
) -> tuple[dict, dict]:
    """Each view as float32 (n, d) and its :class:`Modality` (image shape kept for views stored
    with more than two axes)."""
    data, modalities = {}, {}
    for name, array in views.items():
        data[name] = _view_values(path, name, array, n)
        image_shape = tuple(array.shape[1:]) if array.ndim > 2 else None
        modalities[name] = Modality("bernoulli" if name in bernoulli else "gaussian", image_shape)
        if name in bernoulli and (data[name].min() < 0 or data[name].max() > 1):
            raise DataError(
                f"{path}: view {name!r} has values outside [0, 1], so it cannot be "
                "Bernoulli; leave it out of the option bernoulli"
            )
    return data, modalities


def _user_splits(
    loader: str,
    path: Path,
    views: dict[str, np.ndarray],
    others: dict[str, np.ndarray],
    observed: tuple[str, ...],
    missing: tuple[str, ...] | None,
    seed: int,
    valid_fraction: float,
    test_fraction: float,
    bernoulli: tuple[str, ...],
    standardize: tuple[str, ...],
) -> DataSplits:
    """The :class:`DataSplits` of a user's file read into ``views`` and ``others`` (labels,
    groups, split); the options are those of :func:`npz`."""
    observed = tuple(observed or ())
    missing = tuple(m for m in views if m not in observed) if missing is None else tuple(missing)
    bernoulli, standardize = tuple(bernoulli), tuple(standardize)
    _check_contents(
        loader,
        path,
        views,
        others,
        {
            "observed": observed,
            "missing": missing,
            "bernoulli": bernoulli,
            "standardize": standardize,
        },
    )
    raw_labels = np.asarray(others["labels"])
    if raw_labels.ndim == 0 or len(raw_labels) == 0:
        raise DataError(
            f"{path}: no rows (labels has shape {raw_labels.shape}); the file needs "
            "one row per sample"
        )
    labels, classes = _class_ids(raw_labels, f"{path}: labels")
    n = len(labels)
    data, modalities = _modality_arrays(path, views, n, bernoulli)
    for optional in ("groups", "split"):
        if optional in others:
            check_shape(others[optional], (n,), f"{path}: {optional} (one per label)")
    positions, split_origin = _split_positions(
        others.get("split"), labels, valid_fraction, test_fraction, seed, str(path)
    )
    _check_splits(
        path,
        positions,
        labels,
        split_origin,
        None if "split" in others else min(valid_fraction, test_fraction),
    )
    everything = Views(data, observed, missing, labels, others.get("groups"), modalities)
    train, valid, test = (everything.subset(p) for p in positions)
    splits = DataSplits(
        loader,
        train,
        valid,
        test,
        n_classes=labels.shape[1] if classes is None else len(classes),
        info={"path": str(path), "split": split_origin, "classes": classes},
    )
    return standardize_on_train(splits, standardize)


UserFileReader = Callable[[Path], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]


def _user_file_loader(kind: str, read: UserFileReader, doc: str) -> Loader:
    """The loader of your views from one file of ``kind`` ("npz" or "parquet"), named ``kind``
    and documented by ``doc``: ``read`` parses the located file into (views, others) arrays
    (others: labels (n,) or (n, L), groups and split (n,)), :func:`_user_splits` checks and
    splits them. Both formats take the same options, declared once here."""

    def load(
        path: UserFile,
        observed: Observed,
        missing: Missing = None,
        seed: Seed = 0,
        data_dir: Path | None = None,
        base_dir: Path | None = None,
        valid_fraction: ValidFraction = 0.1,
        test_fraction: TestFraction = 0.2,
        bernoulli: Bernoulli = (),
        standardize: Standardize = (),
    ) -> DataSplits:
        file = locate_user_file(path, kind, base_dir, data_dir)
        views, others = read(file)
        return _user_splits(
            kind,
            file,
            views,
            others,
            observed,
            missing,
            seed,
            valid_fraction,
            test_fraction,
            bernoulli,
            standardize,
        )

    load.__name__ = load.__qualname__ = kind
    load.__doc__ = doc
    return load


npz = register_dataset("npz", rules=(training_rows_left,))(
    _user_file_loader(
        "npz",
        _read_npz,
        """Your own views from an .npz file (layout and checks in this module's docstring).

        observed: the views available at test time; missing: the views to generate (default:
        every other view). bernoulli: views with values in [0, 1] to model as Bernoulli (the
        others are Gaussian). standardize: views to z-score with training statistics.
        valid_fraction / test_fraction / seed: the random split used when the file has no split.
        A relative path is looked for in ``base_dir`` (the suite's folder), the working
        directory, then the data directory.
        """,
    )
)
parquet = register_dataset("parquet", rules=(training_rows_left,))(
    _user_file_loader(
        "parquet",
        _read_parquet,
        """Your own views from a .parquet file with columns ``<view>__<i>`` (see :func:`npz`
        for the options and this module's docstring for the layout and checks).""",
    )
)
