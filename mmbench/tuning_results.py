"""What the studies of a tuned suite chose, as reports read it (no torch, no Optuna).

A tuned suite's final runs (role "model") carry a :class:`mmbench.records.Tuning`: the budget,
the search space, the chosen values and the chosen trial. :func:`tuned_choices` gathers them per
model label and data point; :func:`chosen_params` is what ``mmbench table --params`` shows;
:func:`budget_caption` is the caption's sentence. ``<results>/tuning.json`` (written by
``mmbench run``) lists each study's current final runs: :func:`current_final_runs` tells them
from final runs that an earlier budget or search space chose and that stay in the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmbench.records import MODEL_ROLE, Record

SUMMARY_FILE = "tuning.json"


@dataclass(frozen=True)
class TunedChoice:
    """What one study chose: model ``label`` on data point ``data`` (e.g. {"fold": 1}; {}
    without a data grid) with ``params`` (each searched name and its chosen value), whose
    validation objective was ``best_value``; the study's budget and sampler."""

    label: str
    data: dict[str, Any]
    params: dict[str, Any]
    objective: str
    best_value: float | None
    trials: int
    epochs: int
    sampler: str


def tuned_choices(records: Iterable[Record]) -> list[TunedChoice]:
    """One choice per model label and data point, from the finished final runs of tuned
    studies (their replicates share it), in the order of the records."""
    choices: dict[tuple[str, str], TunedChoice] = {}
    for record in records:
        tuning = record.tuning
        if record.role != MODEL_ROLE or tuning is None or not record.ok:
            continue
        data = record.coordinates.data
        key = (record.label, json.dumps(data, sort_keys=True))
        choices.setdefault(
            key,
            TunedChoice(
                record.label,
                data,
                tuning.params,
                tuning.objective,
                tuning.best_value,
                tuning.trials,
                tuning.epochs,
                tuning.sampler,
            ),
        )
    return list(choices.values())


def chosen_params(records: Iterable[Record]) -> dict[str, dict[str, list[Any]]]:
    """Label -> searched name -> its chosen value on each data point (one value without a data
    grid; several where the folds or speakers chose differently), e.g.
    {"CMMD": {"omega": [0.4], "lr": [0.00031]}}."""
    chosen: dict[str, dict[str, list[Any]]] = {}
    for choice in tuned_choices(records):
        names = chosen.setdefault(choice.label, {})
        for name, value in choice.params.items():
            names.setdefault(name, []).append(value)
    return chosen


def budget_caption(records: Iterable[Record]) -> str | None:
    """The tuning budget in one sentence for a table's caption, e.g. "Tuned on validation
    error_pct: 20 trials x 100 epochs per model (TPE)", or None when no run was tuned. Budgets
    that differ between studies (results of several suite versions) are all named."""
    budgets = sorted({(c.objective, c.trials, c.epochs, c.sampler) for c in tuned_choices(records)})
    if not budgets:
        return None
    sampler_names = {"tpe": "TPE", "random": "random search"}
    parts = [
        f"validation {objective}: {trials} trials x {epochs} epochs per model "
        f"({sampler_names.get(sampler, sampler)})"
        for objective, trials, epochs, sampler in budgets
    ]
    return "Tuned on " + "; ".join(parts)


def current_final_runs(results_dir: str | os.PathLike) -> set[str] | None:
    """The run ids of the final runs the suite's studies chose when ``mmbench run`` last ran
    (from ``<results_dir>/tuning.json``), or None when the folder has no such file (not tuned,
    or older). Final runs not in this set were chosen by an earlier budget or search space."""
    path = Path(results_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    studies = json.loads(path.read_text())["studies"]
    return {run_id for study in studies for run_id in study["final_run_ids"]}
