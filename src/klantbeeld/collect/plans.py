"""Tracking plans: a JSON Schema per event, checked as messages arrive.

A plan looks like::

    {"mode": "block",                  # allow: record violations; block: refuse violating messages
     "unplanned": "allow",             # what to do with track events the plan does not name
     "events": {"Order Completed": {"type": "object", "required": ["revenue"], ...}},
     "identify": {"type": "object", ...}}   # optional schema for identify traits

Schemas apply to ``properties`` (track) and ``traits`` (identify).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


class PlanError(ValueError):
    """The plan itself is invalid; the message points at the offending part."""


def validate_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """Check a plan on save; return it unchanged or raise PlanError."""
    if not isinstance(plan, dict):
        raise PlanError("a tracking plan is a JSON object")
    unknown = set(plan) - {"mode", "unplanned", "events", "identify"}
    if unknown:
        raise PlanError(f"unknown keys in tracking plan: {', '.join(sorted(unknown))}")
    for key in ("mode", "unplanned"):
        if plan.get(key, "allow") not in ("allow", "block"):
            raise PlanError(f"{key} must be 'allow' or 'block'")
    events = plan.get("events", {})
    if not isinstance(events, dict):
        raise PlanError("events must map event names to JSON Schemas")
    schemas = [(f"events[{name!r}]", s) for name, s in events.items()]
    if "identify" in plan:
        schemas.append(("identify", plan["identify"]))
    for where, schema in schemas:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise PlanError(f"{where}: not a valid JSON Schema: {exc.message}") from None
    return plan


@lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(schema_json))


def check(plan: dict[str, Any], message: dict[str, Any]) -> tuple[str | None, list[str]]:
    """Return (refusal code or None, violation texts) for one message under ``plan``."""
    kind = message.get("type")
    if kind == "track":
        events = plan.get("events", {})
        name = message.get("event")
        if name not in events:
            if plan.get("unplanned", "allow") == "block":
                return "unplanned_event", [f"event {name!r} is not in the plan"]
            return None, []
        schema, data = events[name], message.get("properties", {})
    elif kind == "identify" and "identify" in plan:
        schema, data = plan["identify"], message.get("traits", {})
    else:
        return None, []
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    errors = [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(data if data is not None else {})
    ]
    if errors and plan.get("mode", "allow") == "block":
        return "tracking_plan_violation", errors
    return None, errors
