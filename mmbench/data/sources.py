"""Where every full data set comes from: its files, public URLs, checksums and sizes.

A *source* is a group of files downloaded or obtained together (MNIST, SVHN, XRMB, ...); it lives in
``<data dir>/<source folder>/``. Data sets built from several sources (MNIST-SVHN) list each.
Checksums are written as ``"sha256:<hex>"``. A file whose sha256 is not known with certainty has
``checksum=None``: it is *unverified*, ``mmbench data fetch`` installs it only with
``--trust-unverified`` (and prints its sha256), ``mmbench data check`` says "no checksum recorded".

The MNIST and SVHN sha256 sums are the ones many independent loaders of the same files record
(for SVHN e.g. TensorFlow Datasets' svhn_cropped, with the same sizes; others list them beside the
md5 sums the publisher gives). No sha256 of the XRMB files or of the MIR-Flickr archive is
published, and they could not be computed here (no network to the publishers): those files are
unverified until someone records them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from mmbench.data.errors import DataError


def is_verified(checksum: str | None) -> TypeGuard[str]:
    """Whether ``checksum`` lets ``fetch`` verify a download: a recorded sha256 (md5 is too weak
    against a file crafted to match)."""
    return checksum is not None and checksum.startswith("sha256:")


@dataclass(frozen=True)
class DataFile:
    """One file of a source.

    name: path inside the source folder; a glob pattern stands for several files
        (e.g. ``image/labelled/combined-*.npy``).
    url: public download address, or None.
    checksum: ``"sha256:<hex>"``, or None when unknown (the file is then unverified).
    size: size in bytes, when known.
    also: other names accepted in its place (e.g. the uncompressed IDX file).
    """

    name: str
    url: str | None = None
    checksum: str | None = None
    size: int | None = None
    also: tuple[str, ...] = ()

    @property
    def is_pattern(self) -> bool:
        return any(c in self.name for c in "*?[")


@dataclass(frozen=True)
class Archive:
    """A tarball that holds a source's files: ``fetch`` downloads it, unpacks it in a staging
    folder and moves the folder that contains ``marker`` to the source folder."""

    url: str
    filename: str
    marker: str
    checksum: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Source:
    """A group of files obtained together, kept in ``<data dir>/<folder>``.

    datasets: the data set loaders that need it.
    obtain: where to get the files by hand (shown when a file is missing).
    """

    name: str
    title: str
    folder: str
    files: tuple[DataFile, ...]
    datasets: tuple[str, ...]
    obtain: str
    archive: Archive | None = None

    def folder_in(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.folder

    @property
    def fetchable(self) -> bool:
        return self.archive is not None or any(f.url for f in self.files)


_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# plain http: the SVHN site is not known to serve https; the sha256 sums verify the content
_SVHN_SITE = "http://ufldl.stanford.edu/housenumbers/"
_XRMB_SITE = "https://home.ttic.edu/~klivescu/XRMB_data/full/"
_FLICKR_SITE = "https://www.cs.toronto.edu/~nitish/multimodal/"


def _mnist_file(name: str, sha256: str, size: int) -> DataFile:
    return DataFile(
        name, _MNIST_MIRROR + name, f"sha256:{sha256}", size, also=(name.removesuffix(".gz"),)
    )


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "mnist",
            "MNIST digits, IDX files (LeCun et al.)",
            "mnist",
            (
                _mnist_file(
                    "train-images-idx3-ubyte.gz",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                    9912422,
                ),
                _mnist_file(
                    "train-labels-idx1-ubyte.gz",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                    28881,
                ),
                _mnist_file(
                    "t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    1648877,
                ),
                _mnist_file(
                    "t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                    4542,
                ),
            ),
            datasets=("mnist_noisy", "mnist_svhn", "mnist3"),
            obtain=f"{_MNIST_MIRROR} (a mirror of yann.lecun.com/exdb/mnist)",
        ),
        Source(
            "svhn",
            "SVHN cropped digits, .mat files (Netzer et al.)",
            "svhn",
            (
                DataFile(
                    "train_32x32.mat",
                    _SVHN_SITE + "train_32x32.mat",
                    "sha256:435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
                    182040794,
                ),
                DataFile(
                    "test_32x32.mat",
                    _SVHN_SITE + "test_32x32.mat",
                    "sha256:cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
                    64275384,
                ),
            ),
            datasets=("mnist_svhn", "mnist3"),
            obtain=_SVHN_SITE,
        ),
        Source(
            "mnist_wang",
            "Wang et al.'s noisy MNIST.mat (mnist_noisy, source: mat)",
            "mnist_wang",
            (DataFile("MNIST.mat"),),
            datasets=(),
            obtain="Wang et al.'s DCCA code, https://ttic.uchicago.edu/~wwang5/papers/dcca.tgz, "
            "whose createMNIST.m writes MNIST.mat (MATLAB); or use mnist_noisy with source: idx, "
            "which builds the same construction from the public MNIST files",
        ),
        Source(
            "xrmb",
            "XRMB acoustic + articulatory frames (Wang et al.'s preprocessing)",
            "xrmb",
            (
                DataFile(
                    "XRMBf2KALDI_window7_single1.mat",
                    _XRMB_SITE + "XRMBf2KALDI_window7_single1.mat",
                ),
                DataFile(
                    "XRMBf2KALDI_window7_single2.mat",
                    _XRMB_SITE + "XRMBf2KALDI_window7_single2.mat",
                ),
            ),
            datasets=("xrmb",),
            obtain=f"{_XRMB_SITE} (README: {_XRMB_SITE}README)",
        ),
        Source(
            "flickr",
            "MIR-Flickr features, tags and labels (Srivastava & Salakhutdinov)",
            "flickr",
            (
                DataFile("labels.npy"),
                DataFile("text/vocab.txt"),
                DataFile("text/text_all_2000_labelled.npz"),
                DataFile("text/text_all_2000_unlabelled.npz"),
                DataFile("image/labelled/combined-*.npy"),
                DataFile("image/unlabelled/combined-*.npy"),
                DataFile("splits/*_indices_*.npy"),
            ),
            datasets=("flickr",),
            obtain=f"{_FLICKR_SITE} (flickr_data.tar.gz; unpack it and rename the folder that "
            "holds labels.npy to 'flickr')",
            archive=Archive(
                _FLICKR_SITE + "flickr_data.tar.gz", "flickr_data.tar.gz", marker="labels.npy"
            ),
        ),
    )
}


def sources_for(name: str) -> list[Source]:
    """The sources named ``name``, or those that data set ``name`` needs."""
    if name in SOURCES:
        return [SOURCES[name]]
    needed = [s for s in SOURCES.values() if name in s.datasets]
    if not needed:
        names = sorted(set(SOURCES) | {d for s in SOURCES.values() for d in s.datasets})
        raise DataError(f"no data source or data set named {name!r}; known: {', '.join(names)}")
    return needed


def find(data_dir: Path, source: Source, file: DataFile) -> list[Path]:
    """The paths on disk of ``file`` of ``source``: its matches for a pattern (sorted), else the
    first of its name and alternative names that exists; empty when absent."""
    return find_in(source.folder_in(data_dir), file)


def find_in(folder: Path, file: DataFile) -> list[Path]:
    """The paths of ``file`` inside ``folder`` (see :func:`find`)."""
    if file.is_pattern:
        return sorted(folder.glob(file.name))
    for name in (file.name, *file.also):
        if (folder / name).is_file():
            return [folder / name]
    return []


def locate(data_dir: Path, source_name: str, name: str) -> list[Path]:
    """The path(s) of file (or pattern) ``name`` of source ``source_name`` under ``data_dir``;
    ``name`` is one of the source's files or any other path inside its folder.

    Raises a :class:`DataError` that names the file, where it was looked for and how to get it.
    """
    source = SOURCES[source_name]
    file = next((f for f in source.files if f.name == name), DataFile(name))
    found = find(data_dir, source, file)
    if not found:
        raise DataError(_missing_message(data_dir, source, file))
    return found


def locate_one(data_dir: Path, source_name: str, name: str) -> Path:
    """The path of the single file ``name`` of source ``source_name`` (see :func:`locate`)."""
    return locate(data_dir, source_name, name)[0]


def _missing_message(data_dir: Path, source: Source, file: DataFile) -> str:
    """One line: which file is missing, where it was looked for, how to get it."""
    folder = source.folder_in(data_dir)
    alternatives = f" (or {', '.join(file.also)})" if file.also else ""
    if source.fetchable:
        how = (
            f"run `mmbench data fetch {source.name}` to download it, or get it from "
            f"{file.url or source.obtain} and put it there yourself"
        )
    else:
        how = f"it has no public download: obtain it from {source.obtain} and put it there"
    return (
        f"{source.title}: {file.name}{alternatives} not found in {folder}; {how} "
        "(--data-dir or $MMBENCH_DATA choose another data directory)"
    )


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file ``path`` with hashlib ``algorithm`` ("sha256", "md5")."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def checksum_matches(path: Path, checksum: str) -> tuple[bool, str]:
    """Whether ``path`` has ``checksum`` (``"algorithm:hex"``), and its actual ``algorithm:hex``."""
    algorithm, expected = checksum.split(":", 1)
    actual = file_digest(path, algorithm)
    return actual == expected.lower(), f"{algorithm}:{actual}"
