"""segments.yaml: a mistake is named by file, entry and field; thresholds shape the built-ins."""

from __future__ import annotations

import pytest

from klantbeeld.segments.config import SegmentsConfigError, load_segments_config


def config(tmp_path, text: str):
    path = tmp_path / "segments.yaml"
    path.write_text(text)
    return load_segments_config(path)


def test_mistakes_name_the_entry_and_field(tmp_path):
    with pytest.raises(SegmentsConfigError, match=r"segments.yaml: .*computed_traits\[0\]/property"):
        config(tmp_path, "computed_traits:\n  - {name: spend, kind: sum, event: Order Completed}\n")
    with pytest.raises(SegmentsConfigError, match=r"segments\[vip\].definition/op"):
        config(tmp_path, "segments:\n  - {id: vip, definition: {trait: x, op: like, value: 1}}\n")
    with pytest.raises(SegmentsConfigError, match="at_risk_days must be less than lapsed_days"):
        config(tmp_path, "lifecycle: {at_risk_days: 400, lapsed_days: 365}\n")
    with pytest.raises(SegmentsConfigError, match="not valid YAML"):
        config(tmp_path, "purchase_events: [\n")
    with pytest.raises(SegmentsConfigError, match="order_count.*built-in"):
        config(tmp_path, "computed_traits:\n  - {name: order_count, kind: count, event: X}\n")


def test_thresholds_and_purchase_events_shape_the_built_ins(tmp_path):
    cfg = config(tmp_path, "purchase_events: [Order Completed, Order Line Purchased]\n"
                           "order_id_property: order_id\nlifecycle: {loyal_orders: 6}\n")
    traits = {t["name"]: t for t in cfg.builtin_traits()}
    assert traits["order_count"] == {"name": "order_count", "kind": "unique_count",
                                     "property": "order_id",
                                     "event": ["Order Completed", "Order Line Purchased"]}
    loyal = next(s for s in cfg.builtin_segments() if s["id"] == "loyal")
    assert {"trait": "order_count", "op": ">=", "value": 6} in loyal["definition"]["and"]
    assert load_segments_config(tmp_path / "absent.yaml").purchase_events == ["Order Completed"]
