"""The few figures that say how good a model is, picked from its card for lists and tables.

Cards differ per model (docs/predict.md); ``metrics`` gives one flat, comparable summary:
AUC against the recency-only baseline for churn and propensity, hit rate against popularity for
product affinity, held-out lift for look-alikes, holdout correlation for lifetime value.
"""

from __future__ import annotations

from typing import Any


def _get(card: dict, path: str) -> Any:
    value: Any = card
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


PATHS = {
    "churn": {"auc": "metrics.auc", "baseline_auc": "baseline.auc",
              "top_decile_lift": "metrics.top_decile_lift", "brier": "metrics.brier"},
    "clv": {"log_likelihood": "purchase_model.log_likelihood",
            "holdout_correlation": "calibration.correlation",
            "mean_probability_alive": "totals.mean_probability_alive",
            "customers": "customers"},
    "affinity": {"hit_rate": "evaluation.model.hit_rate",
                 "popularity_hit_rate": "evaluation.popularity.hit_rate",
                 "rules": "rules_found", "k": "evaluation.k"},
    "rfm": {"customers": "customers", "bins": "bins"},
}


def metrics(model: str, card: dict[str, Any] | None) -> dict[str, Any]:
    """``{name: number}`` headline figures of a card (empty for an unknown layout)."""
    if not card:
        return {}
    kind = "churn" if model.startswith(("churn_", "purchase_")) else model
    if kind == "lookalike":
        out: dict[str, Any] = {}
        for seg, body in (card.get("segments") or {}).items():
            for top in _get(body, "evaluation.top") or []:
                if top.get("percent") == 5.0:
                    out[f"{seg}_lift_top5pct"] = top.get("lift")
            if _get(body, "evaluation.auc") is not None:
                out[f"{seg}_auc"] = _get(body, "evaluation.auc")
        return {k: _round(v) for k, v in out.items() if v is not None}
    return {name: _round(_get(card, path)) for name, path in PATHS.get(kind, {}).items()
            if _get(card, path) is not None}


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
