"""Downloads against an HTTP server on 127.0.0.1 (Range support, truncation, corruption), and the
``mmbench data`` commands."""
import hashlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from typer.testing import CliRunner

from mmbench.cli.data import app
from mmbench.data import load_dataset
from mmbench.data.errors import DataError
from mmbench.data.fetch import download
from mmbench.data.sources import SOURCES, Archive, DataFile, Source
from test_data_formats import write_idx

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
                    sent = sent[:server.truncate_at]
                self.wfile.write(sent)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

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
    with pytest.raises(DataError, match=r"closed after 3000 of 10240 bytes; the partial download "
                                        r"is kept in .*data\.bin\.part: run `mmbench data fetch "
                                        r"x` again to resume"):
        download(server.url + "/data.bin", destination, checksum=SHA256, retry="mmbench data fetch x")
    assert not destination.exists()
    assert (tmp_path / "data.bin.part").read_bytes() == CONTENT[:3000]
    server.truncate_at = None
    download(server.url + "/data.bin", destination, checksum=SHA256)
    assert server.ranges_asked[-1] == "bytes=3000-"
    assert destination.read_bytes() == CONTENT


def test_bad_checksum_leaves_no_file_and_says_what_to_do(server, tmp_path):
    destination = tmp_path / "data.bin"
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DataError, match=r"the download is corrupt \(its checksum is "
                                        rf"{SHA256}, expected {wrong}\) and was deleted; run"):
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
    for name, array in (("train-images-idx3-ubyte.gz", np.zeros((4, 28, 28))),
                        ("train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3])),
                        ("t10k-images-idx3-ubyte.gz", np.ones((2, 28, 28))),
                        ("t10k-labels-idx1-ubyte.gz", np.array([4, 5]))):
        content = idx_bytes(tmp_path, array)
        server.files[f"/mnist/{name}"] = content
        files.append(DataFile(name, f"{server.url}/mnist/{name}",
                              "sha256:" + hashlib.sha256(content).hexdigest(), len(content)))
    mnist = SOURCES["mnist"]
    monkeypatch.setitem(SOURCES, "mnist", Source(mnist.name, mnist.title, mnist.folder,
                                                 tuple(files), mnist.datasets, mnist.obtain))
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


def test_archive_is_unpacked_into_the_source_folder(server, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in (("flickr/labels.npy", b"labels"), ("flickr/text/vocab.txt", b"a\n")):
            entry = tarfile.TarInfo(name)
            entry.size = len(content)
            tar.addfile(entry, io.BytesIO(content))
    server.files["/flickr_data.tar.gz"] = buffer.getvalue()
    archive = Archive(f"{server.url}/flickr_data.tar.gz", "flickr_data.tar.gz", marker="labels.npy")
    monkeypatch.setitem(SOURCES, "flickr", Source(
        "flickr", "Flickr", "flickr", (DataFile("labels.npy"), DataFile("text/vocab.txt")),
        ("flickr",), "nowhere", archive))
    code, result = run("fetch", "flickr", "--data-dir", tmp_path)
    assert code == 0, result
    assert (tmp_path / "flickr/labels.npy").read_bytes() == b"labels"
    assert (tmp_path / "flickr/text/vocab.txt").read_bytes() == b"a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flickr"]  # archive and staging gone
