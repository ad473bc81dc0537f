"""Content digests of data files, cached so that a large file is hashed once, not on every run.

A run id must change when the content of a user's data file changes (an edit in place keeps the
path). Hashing a file of several GB on every ``mmbench run`` would cost minutes, so the digest is
kept in a small JSON cache keyed by the file's absolute path and reused while the file's size,
modification time (in ns) and inode are unchanged; any change to them means a new hash.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from mmbench.data.sources import file_digest

_IN_PROCESS: dict[tuple[str, int, int, int], str] = {}


def default_cache_file() -> Path:
    """``$XDG_CACHE_HOME/mmbench/digests.json``, else ``~/.cache/mmbench/digests.json``."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache_home).expanduser() / "mmbench" / "digests.json"


def content_digest(path: str | os.PathLike, cache_file: str | os.PathLike | None = None) -> str:
    """``"sha256:<hex>"`` of the bytes of the file ``path``.

    The result is cached in memory and in ``cache_file`` (default :func:`default_cache_file`)
    under the file's (size, mtime in ns, inode); a cache that cannot be read or written is
    ignored, so the digest is always returned.
    """
    file = Path(path).resolve()
    stat = file.stat()
    key = (str(file), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key in _IN_PROCESS:
        return _IN_PROCESS[key]
    cache_path = Path(cache_file) if cache_file is not None else default_cache_file()
    cache = _read_cache(cache_path)
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
    entry = cache.get(str(file))
    if isinstance(entry, dict) and entry.get("stamp") == stamp and "digest" in entry:
        digest = str(entry["digest"])
    else:
        digest = "sha256:" + file_digest(file, "sha256")
        cache[str(file)] = {"stamp": stamp, "digest": digest}
        _write_cache(cache_path, cache)
    _IN_PROCESS[key] = digest
    return digest


def _read_cache(cache_path: Path) -> dict:
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(cache_path: Path, cache: dict) -> None:
    """Write the cache atomically, without the entries of files that no longer exist."""
    kept = {name: entry for name, entry in cache.items() if os.path.exists(name)}
    staging = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        staging.write_text(json.dumps(kept, indent=0))
        os.replace(staging, cache_path)
    except OSError:  # a read-only home directory costs a re-hash next time, nothing else
        with contextlib.suppress(OSError):
            staging.unlink()
