"""What every predictive model hands back: score sets that become traits, and model cards.

Kept free of heavy imports (scikit-learn, SciPy): the CLI and the API import this module when
they start, the models only when they run.

A model module (``churn``, ``rfm``, ``affinity``, ``lookalike``, ``clv``) exposes
``run(frames, config, now) -> ModelRun``; :mod:`klantbeeld.predict.service` writes the scores onto
profiles (``profile_traits``, kind ``computed``, declared as ``kind: predicted`` traits) and keeps
the card. Modules never write to the store themselves, so each can be tested on plain tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

MODELS = ("clv", "rfm", "churn", "affinity", "lookalike")   # runners, in their default order


class PredictConfigError(ValueError):
    """predict.yaml is invalid; the message names the field."""


class PredictBusy(RuntimeError):
    """A run is in progress in this process."""


class ModelNotFound(LookupError):
    pass


class NoPurchases(ValueError):
    """The workspace has no purchase events to learn from."""


@dataclass
class ScoreSet:
    """Per-profile values of one trait: ``table`` has ``profile_id`` and ``value`` columns.

    ``value`` is a number, a string, or a list of strings (e.g. ``next_best_products``).
    Profiles not in the table have no value for the trait after the run.
    """

    trait: str
    description: str
    table: pa.Table

    def __post_init__(self) -> None:
        missing = {"profile_id", "value"} - set(self.table.column_names)
        if missing:
            raise ValueError(f"score set {self.trait!r} lacks column(s) {sorted(missing)}")


@dataclass
class ModelRun:
    """One model's outcome: its card (JSON-able: metrics, window, parameters) and its scores —
    or, when it could not be trained, ``error`` (one runner may yield several models, and one of
    them failing must not take the others down)."""

    model: str
    card: dict[str, Any] | None
    scores: list[ScoreSet] = field(default_factory=list)
    error: str | None = None
