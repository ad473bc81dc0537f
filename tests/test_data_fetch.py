"""Downloads against an HTTP server on 127.0.0.1 (Range support, truncation, corruption, tampered
and unverified files, malicious archives, staging), and the ``mmbench data`` commands."""

import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from test_data_formats import write_idx
from typer.testing import CliRunner

from mmbench.cli.data import app
from mmbench.data import load_dataset
from mmbench.data.errors import DataError
from mmbench.data.fetch import STAGING, download, fetch_source, remove_stale_staging
from mmbench.data.sources import SOURCES, Archive, DataFile, Source, is_verified

CONTENT = bytes(range(256)) * 40  # 10,240 bytes
SHA256 = "sha256:" + hashlib.sha256(CONTENT).hexdigest()


class Server:
    """Serves ``files`` (path -> bytes); honours ``Range: bytes=a-`` unless ``ignore_range``;
    sends only ``truncate_at`` bytes of a body (after announcing its full length) when set."""

    def __init__(self):
        self.files, self.ranges_asked = {}, []
        self.truncate_at, self.ignore_range = None, False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                asked = self.headers.get("Range")
                server.ranges_asked.append(asked)
                start = 0
                if asked and not server.ignore_range:
                    start = int(asked.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                sent = body[start:]
                if server.truncate_at is not None:
                    sent = sent[: server.truncate_at]
                self.wfile.write(sent)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = Server()
    running.files["/data.bin"] = CONTENT
    yield running
    running.close()


def test_download_verifies_and_places_the_file(server, tmp_path):
    destination = tmp_path / "sub" / "data.bin"
    download(server.url + "/data.bin", destination, checksum=SHA256, size=len(CONTENT))
    assert destination.read_bytes() == CONTENT
    assert sorted(p.name for p in destination.parent.iterdir()) == ["data.bin"]
    assert server.ranges_asked == [None]


def test_download_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    destination = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(CONTENT[:4000])
    download(server.url + "/data.bin", destination, checksum=SHA256)
    assert server.ranges_asked == ["bytes=4000-"]
    assert destination.read_bytes() == CONTENT
    assert not (tmp_path / "data.bin.part").exists()


def test_truncated_transfer_keeps_only_the_part_file_and_resumes_later(server, tmp_path):
    destination = tmp_path / "data.bin"
    server.truncate_at = 3000
    with pytest.raises(
        DataError,
        match=r"closed after 3000 of 10240 bytes; the partial download "
        r"is kept in .*data\.bin\.part: run `mmbench data fetch "
        r"x` again to resume",
    ):
        download(
            server.url + "/data.bin", destination, checksum=SHA256, retry="mmbench data fetch x"
        )
    assert not destination.exists()
    assert (tmp_path / "data.bin.part").read_bytes() == CONTENT[:3000]
    server.truncate_at = None
    download(server.url + "/data.bin", destination, checksum=SHA256)
    assert server.ranges_asked[-1] == "bytes=3000-"
    assert destination.read_bytes() == CONTENT


def test_bad_checksum_leaves_no_file_and_says_what_to_do(server, tmp_path):
    destination = tmp_path / "data.bin"
    wrong = "sha256:" + "0" * 64
    with pytest.raises(
        DataError,
        match=r"the download is corrupt \(its checksum is "
        rf"{SHA256}, expected {wrong}\) and was deleted; run",
    ):
        download(server.url + "/data.bin", destination, checksum=wrong)
    assert list(tmp_path.iterdir()) == []
    md5 = "md5:" + hashlib.md5(CONTENT).hexdigest()
    download(server.url + "/data.bin", destination, checksum=md5)  # md5 checksums work too
    assert destination.read_bytes() == CONTENT


def test_wrong_size_and_missing_file(server, tmp_path):
    with pytest.raises(DataError, match=r"it has 10240 bytes, expected 10000"):
        download(server.url + "/data.bin", tmp_path / "data.bin", size=10000)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match=r"/nothing: HTTP 404"):
        download(server.url + "/nothing", tmp_path / "nothing")
    assert list(tmp_path.iterdir()) == []


def test_server_without_range_support_restarts_the_download(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes")
    server.ignore_range = True
    download(server.url + "/data.bin", tmp_path / "data.bin", checksum=SHA256)
    assert (tmp_path / "data.bin").read_bytes() == CONTENT


# --- the mmbench data commands ------------------------------------------------------------------


def idx_bytes(tmp_path, array):
    write_idx(tmp_path / "scratch", array, compress=False)
    return (tmp_path / "scratch").read_bytes()


@pytest.fixture
def local_mnist(server, tmp_path, monkeypatch):
    """The mnist source pointed at the local server, serving tiny uncompressed IDX files."""
    files = []
    for name, array in (
        ("train-images-idx3-ubyte.gz", np.zeros((4, 28, 28))),
        ("train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3])),
        ("t10k-images-idx3-ubyte.gz", np.ones((2, 28, 28))),
        ("t10k-labels-idx1-ubyte.gz", np.array([4, 5])),
    ):
        content = idx_bytes(tmp_path, array)
        server.files[f"/mnist/{name}"] = content
        files.append(
            DataFile(
                name,
                f"{server.url}/mnist/{name}",
                "sha256:" + hashlib.sha256(content).hexdigest(),
                len(content),
            )
        )
    mnist = SOURCES["mnist"]
    monkeypatch.setitem(
        SOURCES,
        "mnist",
        Source(mnist.name, mnist.title, mnist.folder, tuple(files), mnist.datasets, mnist.obtain),
    )
    return tmp_path / "data"


def run(*args):
    """Invoke ``mmbench data`` with ``args``; returns (exit code, output with lines joined)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def test_fetch_list_check_cycle(local_mnist):
    code, listed = run("list", "--data-dir", local_mnist)
    assert code == 0 and re.search(r"train-images-idx3-ubyte\.gz\W+missing", listed)
    code, fetched = run("fetch", "mnist_noisy", "--data-dir", local_mnist)
    assert code == 0, fetched
    assert fetched.count("checksum verified") == 4
    data = load_dataset("mnist_noisy", data_dir_=local_mnist, n_valid=1)
    assert data.train.labels.tolist() == [0, 1, 2] and data.test.labels.tolist() == [4, 5]
    code, listed = run("list", "--data-dir", local_mnist)
    assert code == 0 and re.search(r"train-images-idx3-ubyte\.gz\W+present", listed)
    code, checked = run("check", "mnist", "--data-dir", local_mnist)
    assert code == 0 and checked.count(" ok ") == 4
    code, again = run("fetch", "mnist", "--data-dir", local_mnist)
    assert code == 0 and again.count("kept") == 4
    (local_mnist / "mnist/t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupt")
    code, corrupt = run("check", "mnist", "--data-dir", local_mnist)
    assert code == 1 and corrupt.count(" ok ") == 3 and "MISMATCH" in corrupt
    code, repaired = run("fetch", "mnist", "--data-dir", local_mnist)
    assert code == 0 and "fails its checksum, downloading it again" in repaired
    assert run("check", "mnist", "--data-dir", local_mnist)[0] == 0


def test_fetch_failure_is_one_clear_error(local_mnist, server):
    server.truncate_at = 100
    code, failed = run("fetch", "mnist", "--data-dir", local_mnist)
    assert code == 1
    assert "error:" in failed and "run `mmbench data fetch mnist --data-dir" in failed
    assert not (local_mnist / "mnist/train-images-idx3-ubyte.gz").exists()


def test_fetch_of_data_without_public_download_says_where_to_get_it(tmp_path):
    code, result = run("fetch", "mnist_wang", "--data-dir", tmp_path)
    assert code == 1 and "has no public download" in result and "dcca.tgz" in result
    code, unknown = run("fetch", "imagenet", "--data-dir", tmp_path)
    assert code == 2 and "no data source or data set named 'imagenet'" in unknown


def test_tampered_file_is_refused_and_leaves_nothing_behind(local_mnist, server):
    server.files["/mnist/t10k-labels-idx1-ubyte.gz"] = b"tampered"
    code, failed = run("fetch", "mnist", "--data-dir", local_mnist)
    assert code == 1 and "the download is corrupt (it has 8 bytes, expected" in failed
    # the three good files before it are installed; the tampered one left no trace
    assert sorted(p.name for p in local_mnist.rglob("*") if p.is_file()) == [
        "t10k-images-idx3-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]


def test_a_partial_download_is_resumed_by_fetch_and_verified(local_mnist, server):
    name = "train-images-idx3-ubyte.gz"
    content = server.files[f"/mnist/{name}"]
    (local_mnist / "mnist").mkdir(parents=True)
    (local_mnist / "mnist" / f"{name}.part").write_bytes(content[:1000])
    code, fetched = run("fetch", "mnist", "--data-dir", local_mnist)
    assert code == 0 and fetched.count("sha256 checksum verified") == 4
    assert server.ranges_asked[0] == "bytes=1000-"
    assert (local_mnist / "mnist" / name).read_bytes() == content
    assert not list(local_mnist.rglob("*.part"))


@pytest.fixture
def unverified_source(server, tmp_path, monkeypatch):
    """A source "plain" of one file without a recorded checksum, served by the local server."""
    server.files["/plain.bin"] = CONTENT
    source = Source(
        "plain",
        "Plain data",
        "plain",
        (DataFile("plain.bin", f"{server.url}/plain.bin"),),
        ("plain",),
        "its site",
    )
    monkeypatch.setitem(SOURCES, "plain", source)
    return source


def test_unverified_file_is_refused_without_the_flag(unverified_source, server, tmp_path):
    with pytest.raises(DataError) as refused:
        fetch_source(unverified_source, tmp_path / "data")
    assert str(refused.value) == (
        "Plain data: no sha256 checksum is recorded for plain.bin, so mmbench cannot verify what "
        "the server sends; nothing was downloaded. Run `mmbench data fetch plain "
        "--trust-unverified` to install anyway (each sha256 is then printed, to compare with "
        "the publisher's), or obtain it yourself from its site"
    )
    assert server.ranges_asked == [] and not (tmp_path / "data").exists()
    code, output = run("fetch", "plain", "--data-dir", tmp_path / "data")
    # a refusal of the request as given, like every bad usage: exit 2, nothing downloaded
    assert code == 2 and "error: Plain data: no sha256 checksum is recorded for plain.bin" in output
    assert "--trust-unverified` to install anyway" in output
    assert server.ranges_asked == [] and not (tmp_path / "data").exists()


def test_unverified_file_is_installed_with_the_flag_and_its_sha256_shown(
    unverified_source, tmp_path
):
    code, output = run("fetch", "plain", "--data-dir", tmp_path / "data", "--trust-unverified")
    assert code == 0, output
    assert "NOT verified, no sha256 recorded; its sha256 is" in output
    assert SHA256.removeprefix("sha256:") in output.replace(" ", "")
    assert (tmp_path / "data/plain/plain.bin").read_bytes() == CONTENT


def tarball(*members):
    """gzip-compressed tar bytes of ``members``: (name, bytes) for files, or TarInfo objects."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, content = member
                entry = tarfile.TarInfo(name)
                entry.size = len(content)
                tar.addfile(entry, io.BytesIO(content))
    return buffer.getvalue()


FLICKR_MEMBERS = (("flickr/labels.npy", b"labels"), ("flickr/text/vocab.txt", b"a\n"))


@pytest.fixture
def local_flickr(server, monkeypatch):
    """Serve an archive for a flickr-like source: ``publish(content, recorded)`` puts ``content``
    on the server with the sha256 of ``recorded`` (None: no checksum) and returns the source."""

    def publish(content, recorded=b"same", size=None):
        server.files["/flickr_data.tar.gz"] = content
        recorded = content if recorded == b"same" else recorded
        checksum = None if recorded is None else "sha256:" + hashlib.sha256(recorded).hexdigest()
        archive = Archive(
            f"{server.url}/flickr_data.tar.gz",
            "flickr_data.tar.gz",
            marker="labels.npy",
            checksum=checksum,
            size=size,
        )
        source = Source(
            "flickr",
            "Flickr",
            "flickr",
            (DataFile("labels.npy"), DataFile("text/vocab.txt")),
            ("flickr",),
            "nowhere",
            archive,
        )
        monkeypatch.setitem(SOURCES, "flickr", source)
        return source

    return publish


def only_files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_archive_is_unpacked_into_the_source_folder(local_flickr, tmp_path):
    local_flickr(tarball(*FLICKR_MEMBERS))
    code, result = run("fetch", "flickr", "--data-dir", tmp_path)
    assert code == 0, result
    assert "sha256 checksum verified; unpacked it into" in result
    assert (tmp_path / "flickr/labels.npy").read_bytes() == b"labels"
    assert (tmp_path / "flickr/text/vocab.txt").read_bytes() == b"a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flickr"]  # archive and staging gone


def test_tampered_archive_is_refused_and_never_lands_in_the_data_folder(local_flickr, tmp_path):
    wrong = tarball(("flickr/labels.npy", b"evil"), ("flickr/text/vocab.txt", b"a\n"))
    local_flickr(wrong, recorded=tarball(*FLICKR_MEMBERS))
    with pytest.raises(
        DataError,
        match=r"flickr_data\.tar\.gz: the download is corrupt \(its "
        r"checksum is sha256:[0-9a-f]{64}, expected sha256:",
    ):
        fetch_source(SOURCES["flickr"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unverified_archive_needs_the_flag(local_flickr, tmp_path, server):
    local_flickr(tarball(*FLICKR_MEMBERS), recorded=None)
    with pytest.raises(DataError, match=r"no sha256 checksum is recorded for flickr_data\.tar\.gz"):
        fetch_source(SOURCES["flickr"], tmp_path)
    assert server.ranges_asked == [] and list(tmp_path.iterdir()) == []
    code, output = run("fetch", "flickr", "--data-dir", tmp_path)
    assert code == 2 and "error: Flickr: no sha256 checksum is recorded for flickr_data.tar.gz" in (
        output
    )
    assert server.ranges_asked == [] and list(tmp_path.iterdir()) == []
    report = fetch_source(SOURCES["flickr"], tmp_path, trust_unverified=True)
    archive_sha256 = hashlib.sha256(tarball(*FLICKR_MEMBERS)).hexdigest()
    assert f"NOT verified, no sha256 recorded; its sha256 is {archive_sha256}" in report[0]
    assert only_files(tmp_path) == ["flickr/labels.npy", "flickr/text/vocab.txt"]


def test_archive_without_every_file_of_its_source_is_not_installed(local_flickr, tmp_path):
    local_flickr(tarball(("flickr/labels.npy", b"labels")))
    with pytest.raises(
        DataError,
        match=r"the archive lacks \['text/vocab\.txt'\] of Flickr; it "
        r"was deleted and nothing was installed",
    ):
        fetch_source(SOURCES["flickr"], tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "member, refusal",
    [
        (("flickr/../../escaped.txt", b"x"), "is outside the destination"),
        ("link", "is a link to an absolute path"),
        ("uplink", "which is outside the destination"),
    ],
)
def test_malicious_tar_members_are_refused(local_flickr, tmp_path, member, refusal):
    if member in ("link", "uplink"):
        entry = tarfile.TarInfo("flickr/text")
        entry.type = tarfile.SYMTYPE
        entry.linkname = "/etc" if member == "link" else "../../.."
        member = entry
    data_dir = tmp_path / "data"
    local_flickr(tarball(*FLICKR_MEMBERS, member))
    with pytest.raises(DataError) as refused:
        fetch_source(SOURCES["flickr"], data_dir)
    message = str(refused.value)
    assert "the archive holds a member that is refused (" in message
    assert "it was deleted and nothing was installed" in message
    assert re.search(refusal, message)
    assert only_files(tmp_path) == [] and not (data_dir / "flickr").exists()


def test_an_absolute_member_is_unpacked_inside_the_staging_folder(local_flickr, tmp_path):
    outside = tmp_path / "outside" / "absolute.txt"
    data_dir = tmp_path / "data"
    local_flickr(tarball(*FLICKR_MEMBERS, (str(outside), b"x")))
    fetch_source(SOURCES["flickr"], data_dir)
    assert not outside.exists()
    assert only_files(data_dir) == ["flickr/labels.npy", "flickr/text/vocab.txt"]


def test_an_archive_download_is_resumed_from_the_staging_folder(local_flickr, tmp_path, server):
    content = tarball(*FLICKR_MEMBERS)
    local_flickr(content, size=len(content))
    staging = tmp_path / STAGING
    staging.mkdir()
    (staging / "flickr_data.tar.gz.part").write_bytes(content[:50])
    fetch_source(SOURCES["flickr"], tmp_path)
    assert server.ranges_asked == ["bytes=50-"]
    assert only_files(tmp_path) == ["flickr/labels.npy", "flickr/text/vocab.txt"]


def test_stale_unpacking_folders_are_removed_on_the_next_fetch(local_flickr, tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid, host = int(finished.stdout), socket.gethostname()
    staging = tmp_path / STAGING
    stale = staging / f"flickr.unpacking.{host}.{dead_pid}"
    running = staging / f"flickr.unpacking.{host}.{os.getpid()}"
    old_foreign = staging / "flickr.unpacking.node-7.cluster.42"
    new_foreign = staging / "xrmb.unpacking.node-8.cluster.43"
    for folder in (stale, running, old_foreign, new_foreign):
        (folder / "flickr").mkdir(parents=True)
        (folder / "flickr/labels.npy").write_bytes(b"half")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old_foreign, (two_days_ago, two_days_ago))
    (staging / "flickr_data.tar.gz.part").write_bytes(b"resumable")
    assert remove_stale_staging(tmp_path) == [old_foreign, stale]
    assert sorted(p.name for p in staging.iterdir()) == sorted(
        [running.name, new_foreign.name, "flickr_data.tar.gz.part"]
    )
    # fetch cleans before it starts (here: the unverified archive is then refused)
    for folder in (stale, old_foreign):
        (folder / "flickr").mkdir(parents=True)
    os.utime(old_foreign, (two_days_ago, two_days_ago))
    local_flickr(tarball(*FLICKR_MEMBERS), recorded=None)
    with pytest.raises(DataError, match="no sha256 checksum is recorded"):
        fetch_source(SOURCES["flickr"], tmp_path)
    assert not stale.exists() and not old_foreign.exists()


def test_every_downloadable_file_has_a_sha256_or_is_declared_unverified():
    unverified = set()
    for source in SOURCES.values():
        downloads = [(f.name, f.url, f.checksum) for f in source.files if f.url]
        if source.archive:
            downloads.append((source.archive.filename, source.archive.url, source.archive.checksum))
        for name, url, checksum in downloads:
            assert url.startswith("https://") or source.name == "svhn", url
            if not is_verified(checksum):
                unverified.add(name)
            else:
                assert re.fullmatch(r"sha256:[0-9a-f]{64}", checksum), (name, checksum)
    assert unverified == {
        "XRMBf2KALDI_window7_single1.mat",
        "XRMBf2KALDI_window7_single2.mat",
        "flickr_data.tar.gz",
    }
