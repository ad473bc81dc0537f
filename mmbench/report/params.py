"""The hyper-parameters behind a table, as the records show them: the tuning budget (trials x
epoch cap) and each model's chosen settings.

A tuned suite leaves, per model and data point, its tuning trials (records with role "trial")
and the final runs of the chosen configuration over the suite's seeds (role "model"). Everything
here is read from those records, so it does not depend on how the suite spelled its search:
a setting is *tuned* when its value differs among a model's trials, and its chosen value is the
one of the model's final runs.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from mmbench.records import MODEL_ROLE, TRIAL_ROLE, Record
from mmbench.report.style import model_rank

# Training settings that are not hyper-parameters: the derived seed of the fit.
NOT_SETTINGS = ("seed",)
TRAIN_PREFIX = "train."
TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Budget:
    """The training budget of a table's models.

    trials: label -> the most trials one of its tuning studies ran (counting failed ones);
        empty when no model was tuned.
    epoch_caps: label -> the most epochs its runs (trials and final runs) may train.
    """

    trials: dict[str, int]
    epoch_caps: dict[str, int]

    @property
    def tuned(self) -> bool:
        return bool(self.trials)

    def describe(self) -> str:
        """E.g. "tuned on validation: 20 trials x 40-epoch cap per model", or "not tuned (fixed
        settings); epoch cap 40 (MMVAE-IWAE: 20)"."""
        caps = _most_common_and_others(self.epoch_caps)
        if not self.tuned:
            return f"not tuned (fixed settings); epoch cap {caps}"
        trials = _most_common_and_others(self.trials)
        return f"tuned on validation: {trials} trials {TIMES} {caps}-epoch cap per model"


def _most_common_and_others(values: dict[str, int]) -> str:
    """{"A": 40, "B": 40, "C": 20} -> "40 (C: 20)"."""
    if not values:
        return "unknown"
    common = Counter(values.values()).most_common(1)[0][0]
    others = [
        f"{label}: {value}"
        for label, value in sorted(values.items(), key=lambda item: model_rank(item[0]))
        if value != common
    ]
    return str(common) + (f" ({', '.join(others)})" if others else "")


def budget(records: list[Record]) -> Budget:
    """The budget of the models of ``records`` (any status; trials included)."""
    studies: dict[tuple[str, str], set[str]] = defaultdict(set)
    caps: dict[str, int] = {}
    for record in records:
        if record.role not in (MODEL_ROLE, TRIAL_ROLE):
            continue
        caps[record.label] = max(caps.get(record.label, 0), record.config.epochs)
        if record.role == TRIAL_ROLE:
            studies[(record.label, _point(record))].add(record.run_id)
    trials: dict[str, int] = {}
    for (label, _), runs in studies.items():
        trials[label] = max(trials.get(label, 0), len(runs))
    return Budget(trials, caps)


@dataclass(frozen=True)
class ChosenParam:
    """One setting of one model: ``value`` (per data point where they differ, e.g.
    {"fold 1": 0.3, "fold 2": 0.5}), whether it was ``tuned`` and the values its trials
    ``tried`` (sorted; empty when not tuned)."""

    label: str
    name: str
    value: Any
    tuned: bool
    tried: tuple[Any, ...] = ()


def chosen_params(records: list[Record], include_fixed: bool = False) -> list[ChosenParam]:
    """Every model's tuned settings (and, with ``include_fixed``, all its other settings) from
    its final runs, in the paper's model order. Model hyper-parameters keep their names,
    training settings are prefixed "train." (train.lr)."""
    finals: dict[str, list[Record]] = defaultdict(list)
    tried: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for record in records:
        if record.role == MODEL_ROLE and record.ok:
            finals[record.label].append(record)
        elif record.role == TRIAL_ROLE:
            for name, value in settings(record).items():
                tried[record.label][name].add(json.dumps(value, sort_keys=True))
    chosen = []
    for label in sorted(finals, key=model_rank):
        searched = {name for name, values in tried[label].items() if len(values) > 1}
        per_point: dict[str, dict[str, Any]] = defaultdict(dict)
        for record in finals[label]:
            for name, value in settings(record).items():
                per_point[name][_point(record)] = value
        for name, values in per_point.items():
            if name not in searched and not include_fixed:
                continue
            distinct = {json.dumps(v, sort_keys=True) for v in values.values()}
            value = (
                next(iter(values.values())) if len(distinct) == 1 else dict(sorted(values.items()))
            )
            trials = tuple(sorted((json.loads(v) for v in tried[label][name]), key=_order))
            chosen.append(
                ChosenParam(
                    label, name, value, name in searched, trials if name in searched else ()
                )
            )
    return chosen


def settings(record: Record) -> dict[str, Any]:
    """A run's hyper-parameters and training settings (train.<name>), the fit's seed aside."""
    train = {
        f"{TRAIN_PREFIX}{k}": v for k, v in record.config.train.items() if k not in NOT_SETTINGS
    }
    return {**record.config.model.params, **train}


def _point(record: Record) -> str:
    """The run's data point as text: "fold 1, speaker 7" ("" without a data grid)."""
    return ", ".join(f"{axis} {value}" for axis, value in record.coordinates.data.items())


def _order(value: Any) -> tuple:
    """Numbers before the rest, numbers by value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, json.dumps(value, sort_keys=True))
