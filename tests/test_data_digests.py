"""Content digests of user data files: the sha256 of the bytes, cached by size and mtime."""

import hashlib
import json
import os

import numpy as np
import pytest

from mmbench.data import digests, user_data_digest
from mmbench.data.digests import content_digest


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch):
    """Every test starts without the in-process cache."""
    monkeypatch.setattr(digests, "_IN_PROCESS", {})


def test_digest_is_the_sha256_of_the_bytes(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    # the sha256 of "abc" (FIPS 180-2, appendix B.1)
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert content_digest(tmp_path / "a.bin", tmp_path / "cache.json") == f"sha256:{expected}"
    payload = os.urandom(3 << 20)
    (tmp_path / "big.bin").write_bytes(payload)
    assert content_digest(tmp_path / "big.bin", tmp_path / "cache.json") == (
        "sha256:" + hashlib.sha256(payload).hexdigest()
    )


def test_an_unchanged_file_is_not_hashed_again_and_a_changed_one_is(tmp_path, monkeypatch):
    file, cache = tmp_path / "data.npz", tmp_path / "cache" / "digests.json"
    file.write_bytes(b"first version")
    first = content_digest(file, cache)
    stamp = file.stat()
    assert json.loads(cache.read_text())[str(file)]["digest"] == first

    hashed = []
    real = digests.file_digest
    monkeypatch.setattr(digests, "file_digest", lambda *a: hashed.append(a) or real(*a))
    monkeypatch.setattr(digests, "_IN_PROCESS", {})  # as a new process: only the file cache
    # same size and mtime, other bytes: the cached digest is trusted (that is the contract)
    file.write_bytes(b"other version")
    os.utime(file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert content_digest(file, cache) == first and hashed == []
    # a new modification time: hashed again
    os.utime(file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    second = content_digest(file, cache)
    assert second == "sha256:" + hashlib.sha256(b"other version").hexdigest()
    assert len(hashed) == 1
    assert content_digest(file, cache) == second and len(hashed) == 1  # in memory now


def test_a_damaged_or_unwritable_cache_costs_only_a_rehash(tmp_path):
    file = tmp_path / "data.bin"
    file.write_bytes(b"abc")
    (tmp_path / "cache.json").write_text("{not json")
    expected = "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert content_digest(file, tmp_path / "cache.json") == expected
    assert str(file) in json.loads((tmp_path / "cache.json").read_text())
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    digests._IN_PROCESS.clear()
    assert content_digest(file, blocked / "cache.json") == expected  # its folder is a file


def test_cache_forgets_files_that_no_longer_exist(tmp_path):
    cache = tmp_path / "cache.json"
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
        content_digest(tmp_path / name, cache)
    (tmp_path / "a").unlink()
    (tmp_path / "c").write_text("c")
    content_digest(tmp_path / "c", cache)
    assert sorted(json.loads(cache.read_text())) == [str(tmp_path / "b"), str(tmp_path / "c")]


def test_user_data_digest_finds_the_file_the_loader_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    np.savez(suite_dir / "mine.npz", view_a=np.zeros((4, 1)), labels=np.arange(4) % 2)
    expected = "sha256:" + hashlib.sha256((suite_dir / "mine.npz").read_bytes()).hexdigest()
    assert user_data_digest("npz", {"path": "mine.npz"}, base_dir=suite_dir) == expected
    assert (tmp_path / "xdg/mmbench/digests.json").is_file()
    assert user_data_digest("xrmb", {"protocol": "folds"}) is None
