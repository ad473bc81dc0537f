"""Names that become parts of file names, and paths that must stay inside their folder.

A view name read from a user's file, or a suite name, ends up in paths such as
``figures/generations_<view>.png``; :func:`safe_name` refuses names that could point elsewhere
(``../x``, ``/etc``, ``.hidden``) or that are not portable file names. :func:`inside` checks that a
path built from such parts still lies inside the folder it was meant for.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_NAME_LENGTH = 100
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class UnsafePath(ValueError):
    """A name that cannot be used in a file name, or a path outside the folder it must lie in."""


def safe_name(kind: str, name: object) -> str:
    """``name`` itself when it can be (part of) a file name: 1 to 100 characters among letters,
    digits, ``_``, ``.`` and ``-``, not starting with ``.``. Otherwise an :class:`UnsafePath` whose
    message names ``kind`` (e.g. ``"view name"``) and the name."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise UnsafePath(
            f"{kind} {name!r} cannot be used in a file name: use 1 to "
            f"{MAX_NAME_LENGTH} letters, digits, '_', '.' or '-', not starting with "
            "'.'"
        )
    return name


def inside(folder: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` as an absolute path, raising :class:`UnsafePath` unless it lies inside ``folder``
    (or is ``folder`` itself).

    A relative ``path`` is taken relative to ``folder``. ``.`` and ``..`` are resolved on the
    names, without following symbolic links: a link the user placed inside the folder (e.g. a
    figures folder on another disk) is honoured, while a name can never climb out of the folder.
    """
    root = Path(os.path.abspath(folder))
    resolved = Path(os.path.abspath(root / path))
    if resolved != root and root not in resolved.parents:
        raise UnsafePath(f"{path} lies outside {root}; mmbench writes only inside that folder")
    return resolved
