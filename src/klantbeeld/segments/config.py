"""``segments.yaml``: computed traits and segments declared as data, and the lifecycle thresholds.

Everything has a default, so a workspace without the file has the built-in lifecycle segments and
their computed traits. The file validates on load; a mistake names the entry and field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config_files import load_yaml_model
from ..profiles import computed
from . import tree as trees

SEGMENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class SegmentsConfigError(ValueError):
    """segments.yaml is invalid; the message names the entry and field."""


class Lifecycle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_days: int = Field(30, ge=1, description="New customer: first order within this many days.")
    repeat_orders: int = Field(2, ge=2, description="Repeat customer: at least this many orders.")
    loyal_orders: int = Field(4, ge=2, description="Loyal: at least this many orders …")
    loyal_within_days: int = Field(180, ge=1, description="… the last within this many days.")
    at_risk_days: int = Field(90, ge=1, description="At risk: last order longer ago than this …")
    lapsed_days: int = Field(365, ge=2, description="… lapsed: longer ago than this.")

    @model_validator(mode="after")
    def _order(self) -> "Lifecycle":
        if self.at_risk_days >= self.lapsed_days:
            raise ValueError("at_risk_days must be less than lapsed_days")
        return self


class DeclaredSegment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str | None = None
    description: str | None = None
    definition: dict[str, Any]


class SegmentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purchase_events: list[str] = Field(default_factory=lambda: ["Order Completed"], min_length=1)
    revenue_property: str = "revenue"
    order_id_property: str | None = None
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    computed_traits: list[dict[str, Any]] = Field(default_factory=list)
    segments: list[DeclaredSegment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid(self) -> "SegmentsConfig":
        builtin = {t["name"] for t in self.builtin_traits()}
        for i, d in enumerate(self.computed_traits):
            errors = computed.validate(d)
            if errors:
                raise ValueError(f"computed_traits[{i}]{errors[0]}")
            if d.get("kind") == computed.PREDICTED:
                raise ValueError(f"computed_traits[{i}]: kind predicted is written by the models "
                                 "(predict.yaml), not declared here")
            if d["name"] in builtin:
                raise ValueError(f"computed_traits[{i}]: {d['name']!r} is a built-in trait")
        for s in self.segments:
            if not SEGMENT_ID.match(s.id):
                raise ValueError(f"segments: id {s.id!r}: use lower-case letters, digits, - and _")
            errors = trees.validate(s.definition)
            if errors:
                raise ValueError(f"segments[{s.id}].definition{errors[0]}")
        return self

    def builtin_traits(self) -> list[dict[str, Any]]:
        order = {"event": self.purchase_events[0] if len(self.purchase_events) == 1
                 else list(self.purchase_events)}
        count = ({"kind": "unique_count", "property": self.order_id_property}
                 if self.order_id_property else {"kind": "count"})
        return [
            {"name": "order_count", **count, **order},
            {"name": "first_order_at", "kind": "first", **order},
            {"name": "last_order_at", "kind": "last", **order},
            {"name": "lifetime_revenue", "kind": "sum", "property": self.revenue_property, **order},
        ]

    def builtin_segments(self) -> list[dict[str, Any]]:
        lc = self.lifecycle
        bought = {"trait": "order_count", "op": ">=", "value": 1}
        last = lambda op, days: {"trait": "last_order_at", "op": op, "value": days}  # noqa: E731
        return [
            {"id": "lead", "name": "Leads", "description": "Known, never bought.",
             "definition": {"and": [{"or": [{"identifier": "email"}, {"identifier": "user_id"}]},
                                    {"trait": "order_count", "op": "=", "value": 0}]}},
            {"id": "new-customer", "name": "New customers",
             "description": f"First order in the last {lc.new_days} days.",
             "definition": {"trait": "first_order_at", "op": "within_last_days",
                            "value": lc.new_days}},
            {"id": "repeat-customer", "name": "Repeat customers",
             "description": f"At least {lc.repeat_orders} orders.",
             "definition": {"trait": "order_count", "op": ">=", "value": lc.repeat_orders}},
            {"id": "loyal", "name": "Loyal customers",
             "description": f"At least {lc.loyal_orders} orders, the last in the last "
                            f"{lc.loyal_within_days} days.",
             "definition": {"and": [
                 {"trait": "order_count", "op": ">=", "value": lc.loyal_orders},
                 last("within_last_days", lc.loyal_within_days)]}},
            {"id": "at-risk", "name": "At risk",
             "description": f"Last order {lc.at_risk_days}–{lc.lapsed_days} days ago.",
             "definition": {"and": [bought, last("more_than_days_ago", lc.at_risk_days),
                                    {"not": last("more_than_days_ago", lc.lapsed_days)}]}},
            {"id": "lapsed", "name": "Lapsed",
             "description": f"Last order more than {lc.lapsed_days} days ago.",
             "definition": {"and": [bought, last("more_than_days_ago", lc.lapsed_days)]}},
        ]


def load_segments_config(path: Path | None) -> SegmentsConfig:
    return load_yaml_model(path, SegmentsConfig, SegmentsConfigError)
