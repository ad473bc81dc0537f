"""Downloads of the public data sets: resumable, checksum-verified, placed atomically.

A file is downloaded to ``<name>.part`` beside its destination; an interrupted or truncated
transfer keeps the ``.part`` so that the next fetch resumes it with an HTTP Range request; a file
that fails its size or checksum check is deleted; only a verified file is moved (``os.replace``) to
its real name. So the real name never holds half a file.

A file without a recorded sha256 is unverified: :func:`fetch_source` refuses it unless asked to
trust it, and then reports its sha256. An archive is downloaded and unpacked inside
``<data dir>/.mmbench-staging/``; its folder is moved into place only after the archive passed its
checks, was unpacked without a member escaping the staging folder and holds every file of its
source. Unpacking folders left by a killed fetch are removed by the next one.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from rich.progress import Progress

from mmbench.data.errors import DataError
from mmbench.data.sources import (
    Archive,
    DataFile,
    Source,
    checksum_matches,
    file_digest,
    find,
    find_in,
    is_verified,
)

CHUNK_BYTES = 1 << 20
STAGING = ".mmbench-staging"
FOREIGN_STAGING_SECONDS = 24 * 3600  # unpacking folders of other hosts are stale after a day
_UNPACKING = re.compile(r"(?P<source>.+)\.unpacking\.(?P<host>.+)\.(?P<pid>\d+)")


class UnverifiedRefused(DataError):
    """A fetch refused, before any download, because a file it would install has no recorded
    sha256 and the caller did not ask to trust unverified files: a refusal of the request as
    given, not a failed download."""


def download(
    url: str,
    destination: Path,
    *,
    checksum: str | None = None,
    size: int | None = None,
    progress: Progress | None = None,
    retry: str = "mmbench data fetch",
    timeout: float = 60.0,
) -> None:
    """Download ``url`` to ``destination``, resuming a ``.part`` file left by an earlier attempt.

    checksum: ``"sha256:<hex>"`` / ``"md5:<hex>"`` to verify, or None. size: expected bytes, or
    None. retry: the command a user runs to try again (named in error messages).
    """
    partial = destination.with_name(destination.name + ".part")
    already_complete = size is not None and partial.exists() and partial.stat().st_size == size
    if not already_complete:
        _transfer(url, partial, size, progress, retry, timeout)
    _verify(partial, url, checksum, size, retry)
    os.replace(partial, destination)


def _transfer(
    url: str, partial: Path, size: int | None, progress: Progress | None, retry: str, timeout: float
) -> None:
    """Append the rest of ``url`` to ``partial`` (all of it when the server ignores Range)."""
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    kept = f"the partial download is kept in {partial}: run `{retry}` again to resume"
    total = size
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as response:
            resumed = response.status == 206
            if resumed:
                start, total = _content_range(response.headers.get("Content-Range", ""))
                if start != offset:
                    raise DataError(
                        f"{url}: asked to resume at byte {offset}, the server sent "
                        f"bytes from {start}; delete {partial} and run `{retry}` again"
                    )
            elif response.headers.get("Content-Length") is not None:
                total = int(response.headers["Content-Length"])
            task = (
                progress.add_task(
                    partial.name.removesuffix(".part"),
                    total=total,
                    completed=offset if resumed else 0,
                )
                if progress
                else None
            )
            partial.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "ab" if resumed else "wb") as out:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    if progress is not None and task is not None:
                        progress.advance(task, len(chunk))
    except urllib.error.HTTPError as error:
        if error.code == 416:  # the .part is no prefix of the file the server has now
            partial.unlink(missing_ok=True)
            raise DataError(
                f"{url}: the server cannot resume from byte {offset}; the partial "
                f"download was deleted, run `{retry}` again"
            ) from None
        raise DataError(
            f"{url}: HTTP {error.code} {error.reason}; check the address or your "
            f"network and run `{retry}` again"
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        received = partial.stat().st_size if partial.exists() else 0
        reason = getattr(error, "reason", error)
        if received == 0:
            raise DataError(
                f"{url}: cannot download ({reason}); check your network connection "
                f"and run `{retry}` again"
            ) from None
        raise DataError(
            f"{url}: download stopped after {received} bytes ({reason}); {kept}"
        ) from None
    received = partial.stat().st_size
    if total is not None and received < total:
        raise DataError(f"{url}: the connection closed after {received} of {total} bytes; {kept}")


def _content_range(header: str) -> tuple[int, int | None]:
    """(first byte, total size or None) from a ``Content-Range: bytes a-b/total`` header."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", header.strip())
    if not match:
        raise DataError(f"the server answered a Range request with Content-Range {header!r}")
    return int(match[1]), None if match[2] == "*" else int(match[2])


def _verify(partial: Path, url: str, checksum: str | None, size: int | None, retry: str) -> None:
    """Delete ``partial`` and raise unless it has the expected size and checksum."""
    problem = None
    actual_size = partial.stat().st_size
    if size is not None and actual_size != size:
        problem = f"it has {actual_size} bytes, expected {size}"
    elif checksum is not None:
        matches, actual = checksum_matches(partial, checksum)
        if not matches:
            problem = f"its checksum is {actual}, expected {checksum}"
    if problem:
        partial.unlink()
        raise DataError(
            f"{url}: the download is corrupt ({problem}) and was deleted; run "
            f"`{retry}` again, and if this repeats the file on the server has changed: "
            f"download it by hand and verify it"
        )


def fetch_source(
    source: Source,
    data_dir: Path,
    progress: Progress | None = None,
    retry: str | None = None,
    trust_unverified: bool = False,
) -> list[str]:
    """Download every missing or corrupt file of ``source`` into ``data_dir``; returns one line
    per file saying what was done. retry: the command that runs this again (for messages).
    trust_unverified: install files that have no recorded sha256 (refused otherwise, before any
    download)."""
    data_dir = Path(data_dir)
    retry = retry or f"mmbench data fetch {source.name}"
    remove_stale_staging(data_dir)
    if source.archive is not None:
        return _fetch_archive(source, data_dir, progress, retry, trust_unverified)
    report, wanted = [], []
    for file in source.files:
        found = find(data_dir, source, file)
        if found and _trusted(found[0], file):
            report.append(f"{file.name}: present at {found[0]}, kept")
        elif file.url is None:
            raise DataError(f"{file.name} has no public download; obtain it from {source.obtain}")
        else:
            wanted.append((file, bool(found)))
    unverified = [file.name for file, _ in wanted if not is_verified(file.checksum)]
    if unverified and not trust_unverified:
        raise UnverifiedRefused(_unverified_message(source, unverified, retry))
    folder = source.folder_in(data_dir)
    created = not folder.exists()
    try:
        for file, corrupt in wanted:
            if corrupt:
                report.append(f"{file.name}: present but fails its checksum, downloading it again")
            destination = folder / file.name
            _download_listed(file, destination, progress, retry)
            report.append(
                f"{file.name}: downloaded from {file.url}; "
                f"{_verification(file.checksum, destination)}"
            )
    finally:
        if created:
            _remove_if_empty(folder)
    return report


def _download_listed(
    listed: DataFile | Archive, destination: Path, progress: Progress | None, retry: str
) -> None:
    """Download a file or archive of a source's list to ``destination``, checked against the
    checksum and size the list records for it (see :func:`download`)."""
    assert listed.url is not None  # files without one are refused before any download
    download(
        listed.url,
        destination,
        checksum=listed.checksum,
        size=listed.size,
        progress=progress,
        retry=retry,
    )


def _unverified_message(source: Source, names: list[str], retry: str) -> str:
    return (
        f"{source.title}: no sha256 checksum is recorded for {', '.join(names)}, so mmbench "
        f"cannot verify what the server sends; nothing was downloaded. Run `{retry} "
        "--trust-unverified` to install anyway (each sha256 is then printed, to compare "
        f"with the publisher's), or obtain it yourself from {source.obtain}"
    )


def _verification(checksum: str | None, path: Path) -> str:
    """What was verified of the downloaded ``path``, for the report."""
    if is_verified(checksum):
        return "sha256 checksum verified"
    return (
        f"NOT verified, no sha256 recorded; its sha256 is {file_digest(path, 'sha256')}: "
        "compare it with the publisher's"
    )


def _trusted(path: Path, file: DataFile) -> bool:
    """Whether a file already on disk is kept: it matches its checksum, or there is none to check
    (no checksum recorded, or it is an alternative such as the uncompressed IDX file)."""
    if file.checksum is None or path.name != file.name:
        return True
    return checksum_matches(path, file.checksum)[0]


def remove_stale_staging(data_dir: Path) -> list[Path]:
    """Remove the unpacking folders in ``<data_dir>/.mmbench-staging`` that a killed fetch left:
    those of a process of this host that no longer runs, and those of other hosts (a shared file
    system) older than a day. Partial downloads (``.part``) are kept: the next fetch resumes them.
    Returns the folders removed."""
    staging = Path(data_dir) / STAGING
    removed = []
    for entry in sorted(staging.iterdir()) if staging.is_dir() else []:
        owner = _UNPACKING.fullmatch(entry.name)
        if owner is None:
            continue
        if owner["host"] == socket.gethostname():
            stale = not _process_runs(int(owner["pid"]))
        else:
            stale = time.time() - entry.stat().st_mtime > FOREIGN_STAGING_SECONDS
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    _remove_if_empty(staging)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # absent or not empty
        folder.rmdir()


def _fetch_archive(
    source: Source, data_dir: Path, progress: Progress | None, retry: str, trust_unverified: bool
) -> list[str]:
    archive = source.archive
    assert archive is not None  # fetch_source calls this for sources with an archive
    target = source.folder_in(data_dir)
    if all(find(data_dir, source, f) for f in source.files):
        return [f"{source.name}: every file present in {target}, kept"]
    if target.exists():
        raise DataError(
            f"{target} exists but misses files of {source.title}; move it away and "
            f"run `{retry}` again to download and unpack {archive.url}"
        )
    if not is_verified(archive.checksum) and not trust_unverified:
        raise UnverifiedRefused(_unverified_message(source, [archive.filename], retry))
    staging = data_dir / STAGING
    archive_path = staging / archive.filename
    unpacking = staging / f"{source.name}.unpacking.{socket.gethostname()}.{os.getpid()}"
    try:
        # an archive left complete by a fetch killed while unpacking is kept if its sha256 matches
        if archive_path.exists() and not (
            is_verified(archive.checksum) and checksum_matches(archive_path, archive.checksum)[0]
        ):
            archive_path.unlink()
        if not archive_path.exists():
            _download_listed(archive, archive_path, progress, retry)
        verification = _verification(archive.checksum, archive_path)
        try:
            folder = _unpack(archive_path, archive.url, archive.marker, unpacking, retry)
            absent = [f.name for f in source.files if not find_in(folder, f)]
            if absent:
                raise DataError(
                    f"{archive.url}: the archive lacks {absent} of {source.title}; it "
                    "was deleted and nothing was installed"
                )
            os.replace(folder, target)
        finally:
            archive_path.unlink(missing_ok=True)
            shutil.rmtree(unpacking, ignore_errors=True)
    finally:
        _remove_if_empty(staging)
    return [f"{source.name}: downloaded {archive.url}; {verification}; unpacked it into {target}"]


def _unpack(archive_path: Path, url: str, marker: str, unpacking: Path, retry: str) -> Path:
    """Unpack the tarball ``archive_path`` into the new folder ``unpacking``; returns its folder
    that holds ``marker``. tarfile's "data" filter keeps every member inside ``unpacking``: it
    drops the leading ``/`` of absolute names and refuses members that would land outside (``..``,
    links pointing out) and devices or pipes."""
    unpacking.mkdir(parents=True)
    try:
        with tarfile.open(archive_path) as tar:
            tar.extractall(unpacking, filter="data")
    except tarfile.FilterError as error:
        raise DataError(
            f"{url}: the archive holds a member that is refused ({error}); it was "
            "deleted and nothing was installed"
        ) from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DataError(
            f"{url}: cannot unpack {archive_path.name} ({error}); it was deleted, run "
            f"`{retry}` again"
        ) from None
    holders = sorted(unpacking.rglob(marker), key=lambda p: len(p.parts))
    if not holders:
        raise DataError(
            f"{url}: the archive holds no {marker}, so it is not the expected "
            "archive; it was deleted and nothing was installed"
        )
    return holders[0].parent
