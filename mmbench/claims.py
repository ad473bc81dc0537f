"""Claims: which process is running a run, so that several ``mmbench run`` on one results folder
(on one machine, or SLURM array tasks on a shared file system) never train the same run twice.

A claim is the file ``<results>/claims/<run_id>.claim``, holding its owner (host name, pid) and a
token. It is created atomically: written under a private name, then hard-linked to its own name,
which fails when that name exists (atomic on local file systems and on NFS, where O_EXCL was
not always). The owner refreshes the claim's modification time every :data:`HEARTBEAT_SECONDS`
while it holds it, and deletes it when the run is over.

A claim whose owner is gone is stale and is taken over: on this host, when its pid no longer
runs; on any host, when its heartbeat is older than :data:`STALE_SECONDS` (so the hosts' clocks
must agree to within a few minutes, as NTP keeps them). Taking over is itself serialised by a
short-lived ``<run_id>.break`` file, so two processes that find one stale claim cannot both win.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0
"""A claim not refreshed for this long has lost its owner (ten missed heartbeats)."""
TAKE_ATTEMPTS = 20
"""How often :meth:`Claims.take` tries while other processes take over the same stale claim."""
BREAK_SECONDS = 60.0
"""A take-over lasts milliseconds; a ``.break`` file this old was left by a process that died."""


@dataclass(frozen=True)
class Owner:
    """A process: the name of its host and its pid there."""

    host: str
    pid: int

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid())

    def gone(self) -> bool:
        """Whether this process has certainly ended: it ran on this host and its pid is free.
        (A process of another host cannot be asked; its heartbeat tells.)"""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"


class Claims:
    """The claims this process takes in the results folder ``root``; a context manager that
    keeps their heartbeat while it is open and releases those still held when it closes."""

    def __init__(self, root: str | os.PathLike):
        self.folder = Path(root) / "claims"
        self.me = Owner.me()
        self._held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="mmbench-claims", daemon=True)

    def __enter__(self) -> Claims:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        for run_id in list(self._held):
            self.release(run_id)

    def path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.claim"

    def take(self, run_id: str) -> Owner | None:
        """Claim run ``run_id``: None when this process now holds it, else the owner that does
        (a stale claim is taken over first)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        owner = None
        for _ in range(TAKE_ATTEMPTS):
            if self._create(run_id):
                return None
            holder = read_claim(self.path(run_id))
            if holder is None:  # released meanwhile: try again
                continue
            owner, token, age = holder
            if not (owner.gone() or age > STALE_SECONDS):
                return owner
            if not self._break(run_id, token):  # another process is taking it over
                time.sleep(0.05)
        return owner or Owner("(unknown host)", 0)

    def release(self, run_id: str) -> None:
        """Give up the claim on ``run_id`` (nothing when this process does not hold it)."""
        with self._lock:
            path = self._held.pop(run_id, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _create(self, run_id: str) -> bool:
        """Create the claim file atomically; False when it exists."""
        path = self.path(run_id)
        if not _link_new(
            path,
            {
                "host": self.me.host,
                "pid": self.me.pid,
                "token": uuid.uuid4().hex,
                "claimed": time.time(),
            },
        ):
            return False
        with self._lock:
            self._held[run_id] = path
        return True

    def _break(self, run_id: str, token: str) -> bool:
        """Delete the stale claim of ``run_id`` whose token is ``token``; False when another
        process is taking it over at the same time or took it over already."""
        breaker = self.folder / f"{run_id}.break"
        if not _link_new(breaker, {"host": self.me.host, "pid": self.me.pid}):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - breaker.stat().st_mtime > BREAK_SECONDS:
                    breaker.unlink(missing_ok=True)
            return False
        try:
            holder = read_claim(self.path(run_id))
            if holder is None or holder[1] != token:
                return holder is None
            self.path(run_id).unlink(missing_ok=True)
            return True
        finally:
            breaker.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._closed.wait(HEARTBEAT_SECONDS):
            with self._lock:
                held = list(self._held.values())
            for path in held:
                with contextlib.suppress(FileNotFoundError):  # released meanwhile
                    os.utime(path)


def read_claim(path: Path) -> tuple[Owner, str, float] | None:
    """The owner, token and age in seconds (since its last heartbeat) of the claim file
    ``path``; None when there is none. A claim that cannot be read (e.g. written by a process
    that died) counts as stale: an unknown owner, no token, an infinite age."""
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        content = json.loads(text)
        return Owner(str(content["host"]), int(content["pid"])), str(content["token"]), age
    except (ValueError, KeyError, TypeError):
        return Owner("(unreadable claim)", -1), "", float("inf")


def _link_new(path: Path, content: dict) -> bool:
    """Create ``path`` holding ``content`` as JSON, atomically and complete; False when it
    exists."""
    private = path.with_name(f".{path.name}@{socket.gethostname()}.{os.getpid()}.tmp")
    private.write_text(json.dumps(content))
    try:
        os.link(private, path)
        return True
    except FileExistsError:
        return False
    finally:
        private.unlink(missing_ok=True)
