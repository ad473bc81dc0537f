"""What a results directory's ``suite.json`` tells the reports: the suite's name, its replicate
seeds and its display names.

``mmbench run`` writes ``<results>/suite.json`` (the validated suite as JSON, plus where it came
from); older results directories have none, and every report works without it: the suite is then
named after the directory and the seeds are those the records have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbench.report.names import DisplayNames
from mmbench.report.runs import ReportError

SUITE_FILE = "suite.json"


@dataclass(frozen=True)
class SuiteInfo:
    """name: the suite's name (else the results directory's). seeds: its replicate seeds (None:
    unknown, take them from the records). display_names: its ``display_names`` overrides."""

    name: str
    seeds: tuple[int, ...] | None = None
    display_names: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> DisplayNames:
        return DisplayNames(self.display_names, self.name)

    @classmethod
    def read(cls, results_dir: str | Path) -> SuiteInfo:
        """The facts of ``results_dir/suite.json``, or of the directory alone when it has none."""
        path = Path(results_dir) / SUITE_FILE
        if not path.is_file():
            return cls(Path(results_dir).resolve().name)
        try:
            suite: Any = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ReportError(
                f"{path}: not readable as JSON ({error}); delete it or rerun "
                "`mmbench run` to write it again"
            ) from None
        if not isinstance(suite, dict):
            raise ReportError(
                f"{path}: expected a JSON object (the suite), got {type(suite).__name__}"
            )
        seeds = suite.get("seeds")
        names = suite.get("display_names") or {}
        if not isinstance(names, dict):
            raise ReportError(f"{path}: display_names must map names to text, got {names!r}")
        return cls(
            name=str(suite.get("name") or Path(results_dir).resolve().name),
            seeds=tuple(int(s) for s in seeds) if isinstance(seeds, list) else None,
            display_names={str(k): str(v) for k, v in names.items()},
        )
