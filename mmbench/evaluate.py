"""The evaluation protocol of a fitted model on a data set's validation and test splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmbench.downstream import fit_downstream
from mmbench.metrics import error_pct, map_pct, rmse
from mmbench.model import MultimodalModel
from mmbench.records import DownstreamSettings
from mmbench.stats import N_GENERATED_KEPT, Generations, PosteriorStats, spread, spread_over_classes
from mmbench.views import DataSplits, Views

VALID_PREFIX = "valid_"


@dataclass
class Evaluation:
    """What :func:`evaluate` measured and what a record keeps of it.

    metrics: name -> value on the test split, and on the validation split with the names
        prefixed "valid_"; metrics_by_group: test group -> its metrics.
    downstream_params: the downstream classifier's chosen hyper-parameters (None: the model's
        own classifier). representation: the test split's z, (n_test, d_z) (None: no test).
    posteriors: the model's Gaussian statistics on the test split (None: it has none).
    generations: the generated missing modalities at N_GENERATED_KEPT test points spread over
        the classes (over the split for multi-label data), beside the truth (None: the model
        does not generate).
    """

    metrics: dict[str, float]
    representation: np.ndarray | None = None
    downstream_params: dict[str, Any] | None = None
    posteriors: PosteriorStats | None = None
    generations: Generations | None = None
    metrics_by_group: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate(
    model: MultimodalModel,
    splits: DataSplits,
    downstream: DownstreamSettings = DownstreamSettings(),
    seed: int = 0,
    *,
    test: bool = True,
) -> Evaluation:
    """Classification (the model's own classifier, else the downstream protocol), rmse of the
    generated missing modalities, and the posterior statistics, on the validation and the test
    splits; with ``test=False`` (a tuning trial) the test split is not looked at at all.

    Metrics: error_pct (single-label) or map_micro_pct and map_macro_pct (multi-label);
    rmse over all missing modalities pooled, and rmse.<name> per modality when there are several;
    each on the test split, and on the validation split as valid_error_pct, valid_rmse, ...
    (the downstream classifier's validation score is that of the one chosen on validation).
    When the test split has group ids (e.g. XRMB speakers), the test metrics per group too.
    A model without a classifier whose representation has no features (the reference rows that
    only predict xM, see :mod:`mmbench.references`) gets no classification metric.
    """
    valid, test_views = splits.valid, splits.test
    representation = model.represent(test_views.xO) if test else None
    downstream_params = scores = valid_scores = None
    valid_representation = None if "classify" in model.capabilities else model.represent(valid.xO)
    if "classify" in model.capabilities:
        valid_scores = model.predict_proba(valid.xO)
        if test:
            scores = model.predict_proba(test_views.xO)
    elif valid_representation is not None and valid_representation.shape[1] > 0:
        train = splits.train
        if downstream.max_train and train.n > downstream.max_train:
            rng = np.random.default_rng(seed)
            train = train.subset(np.sort(rng.choice(train.n, downstream.max_train, replace=False)))
        chosen = fit_downstream(
            downstream.classifier,
            (model.represent(train.xO), train.labels),
            (valid_representation, valid.labels),
            representation,
            downstream.grid,
            seed,
        )
        scores, valid_scores, downstream_params = chosen.scores, chosen.valid_scores, chosen.params
    generates = "generate" in model.capabilities and bool(valid.missing)
    metrics = {
        VALID_PREFIX + name: value
        for name, value in split_metrics(
            valid, valid_scores, model.generate(valid.xO) if generates else None
        ).items()
    }
    result = Evaluation(metrics, representation, downstream_params)
    if not test:
        return result
    generated = model.generate(test_views.xO) if generates else None
    if generated is not None:
        result.generations = kept_generations(test_views, generated)
    result.metrics = {**split_metrics(test_views, scores, generated), **metrics}
    if test_views.groups is not None:
        for group in np.unique(test_views.groups):
            mask = test_views.groups == group
            result.metrics_by_group[str(group)] = split_metrics(
                test_views.subset(mask),
                None if scores is None else scores[mask],
                None if generated is None else {m: g[mask] for m, g in generated.items()},
            )
    if "posteriors" in model.capabilities:
        result.posteriors = model.posteriors(test_views)
    return result


def kept_generations(test: Views, generated: dict[str, np.ndarray]) -> Generations:
    """The generations a record keeps: those of N_GENERATED_KEPT test points covering every
    class (spread over the split for multi-label data), beside the truth, their classes, the
    observed modalities and the vocabulary of tag modalities."""
    if test.multilabel:
        kept, labels = spread(test.n, N_GENERATED_KEPT), None
    else:
        kept = spread_over_classes(test.labels, N_GENERATED_KEPT)
        labels = test.labels[kept]
    return Generations(
        generated={m: generated[m][kept] for m in test.missing},
        truth={m: test.data[m][kept] for m in test.missing},
        observed={m: test.data[m][kept] for m in test.observed},
        vocabulary={
            m: np.array(test.modality(m).vocabulary)
            for m in test.data
            if test.modality(m).vocabulary
        },
        index=kept,
        labels=labels,
    )


def split_metrics(
    views: Views, scores: np.ndarray | None, generated: dict[str, np.ndarray] | None
) -> dict[str, float]:
    """The metrics of class ``scores`` ((n, K), or None) and of ``generated`` missing modalities
    ({name: (n, d)}, or None) against the labels and data of ``views``."""
    metrics: dict[str, float] = {}
    if scores is not None and views.multilabel:
        metrics = {
            "map_micro_pct": map_pct(views.labels, scores, "micro"),
            "map_macro_pct": map_pct(views.labels, scores, "macro"),
        }
    elif scores is not None:
        metrics = {"error_pct": error_pct(views.labels, scores)}
    if generated is not None:
        truth = np.concatenate([views.data[m] for m in views.missing], axis=1)
        metrics["rmse"] = rmse(truth, np.concatenate([generated[m] for m in views.missing], 1))
        if len(views.missing) > 1:
            for m in views.missing:
                metrics[f"rmse.{m}"] = rmse(views.data[m], generated[m])
    return metrics
