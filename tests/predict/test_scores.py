"""Model scores land on profiles as predicted traits, on both engines: segments select on them,
profile lookups and exports show them, the real-time and scheduled trait refreshes leave them
alone, and the next write replaces them (profiles left out lose their value)."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import orjson
import pyarrow as pa
import pytest
from conftest import feed

from klantbeeld.predict import scores
from klantbeeld.predict.base import ScoreSet
from klantbeeld.profiles.lookup import get_profile
from klantbeeld.segments.audience import export_members
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture
def ws(database_url, tmp_path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    ws.init(["web"])
    feed(ws, [{"type": "identify", "userId": f"u{i}", "messageId": f"m{i}",
               "traits": {"city": "Utrecht"}, "timestamp": "2026-10-01T10:00:00Z"}
              for i in range(6)], tmp_path)
    yield ws
    ws.close()


def pids(ws) -> list[str]:
    return [r[0] for r in ws.engine.fetchall(
        "SELECT i.profile_id FROM identifiers i WHERE id_type = 'user_id' ORDER BY id_value")]


def write(ws, trait: str, profile_ids: list[str], values: list, model: str = "test") -> int:
    table = pa.table({"profile_id": profile_ids, "value": values})
    with ws.segments.writing() as s:
        return scores.write(s, ws.segments.traits, model, ScoreSet(trait, "a score", table), NOW)


def members(ws, tree: dict) -> set[str]:
    sid = ws.segments.create(tree, "Scored")["id"]
    page = ws.segments.members(sid, limit=100)
    ws.segments.delete(sid)
    return {p["profile_id"] for p in page["profiles"]}


def test_numbers_strings_and_lists_are_usable_in_segments(ws):
    p = pids(ws)
    assert write(ws, "churn_probability_90d", p[:4], [0.9, 0.2, 0.75, float("nan")]) == 3
    write(ws, "rfm_segment", p[:3], ["Champions", "At Risk", "Champions"])
    write(ws, "next_best_products", p[:2], [["P1", "P2"], ["P3"]])
    assert members(ws, {"trait": "churn_probability_90d", "op": ">", "value": 0.5}) == {p[0], p[2]}
    assert members(ws, {"trait": "rfm_segment", "op": "=", "value": "Champions"}) == {p[0], p[2]}
    assert members(ws, {"trait": "next_best_products", "op": "contains", "value": "P3"}) == {p[1]}
    # a NaN score is no score: the profile has no value rather than a wrong one
    assert members(ws, {"trait": "churn_probability_90d", "op": "exists"}) == set(p[:3])


def test_scores_show_on_profiles_and_in_exports(ws):
    p = pids(ws)
    write(ws, "predicted_clv_365d", p[:2], [123.4, 56.0])
    write(ws, "next_best_products", p[:1], [["P1", "P2"]])
    computed = get_profile(ws, p[0])["computed"]
    assert computed["predicted_clv_365d"]["value"] == 123.4
    assert computed["next_best_products"]["value"] == ["P1", "P2"]
    sid = ws.segments.create({"trait": "city", "op": "=", "value": "Utrecht"}, "All")["id"]
    out = io.BytesIO()
    export_members(ws.engine, sid, out, "jsonl", ["predicted_clv_365d", "next_best_products"], [])
    rows = {r["profile_id"]: r for r in map(orjson.loads, out.getvalue().splitlines())}
    assert rows[p[1]]["predicted_clv_365d"] == 56.0
    assert rows[p[0]]["next_best_products"] == ["P1", "P2"]
    assert rows[p[2]]["predicted_clv_365d"] is None


def test_trait_refreshes_keep_scores_and_a_new_run_replaces_them(ws, tmp_path):
    p = pids(ws)
    write(ws, "probability_alive", p[:3], [0.1, 0.5, 0.9], model="clv")
    ws.segments.refresh()                              # scheduled refresh of every trait
    feed(ws, [{"type": "track", "userId": "u0", "event": "Order Completed", "messageId": "o1",
               "properties": {"revenue": 10}, "timestamp": "2026-10-02T10:00:00Z"}], tmp_path)
    ws.update_segments()                               # real-time path for the touched profile
    assert get_profile(ws, p[0])["computed"]["probability_alive"]["value"] == 0.1
    listed = {t["name"]: t for t in ws.segments.traits.list()}
    assert listed["probability_alive"]["definition"] == {
        "name": "probability_alive", "kind": "predicted", "model": "clv",
        "description": "a score"}
    assert listed["probability_alive"]["profiles"] == 3
    write(ws, "probability_alive", p[1:2], [0.4], model="clv")
    assert "probability_alive" not in get_profile(ws, p[0])["computed"]
    assert get_profile(ws, p[1])["computed"]["probability_alive"]["value"] == 0.4


def test_predicted_definitions_are_validated_and_owned_by_the_models(ws):
    from klantbeeld.profiles import computed
    from klantbeeld.segments.service import SegmentConflict

    assert [e.path for e in computed.validate({"name": "x", "kind": "predicted"})] == ["/model"]
    assert [e.path for e in computed.validate(
        {"name": "x", "kind": "predicted", "model": "m", "event": "Order Completed"})] == ["/event"]
    with pytest.raises(SegmentConflict, match="written by the models"):
        ws.segments.define_trait({"name": "x", "kind": "predicted", "model": "m"})
    with pytest.raises(TypeError, match="numbers, strings or lists"):
        write(ws, "bad", pids(ws)[:1], [{"a": 1}])


def test_a_score_never_takes_over_a_trait_or_a_gone_profile(ws):
    p = pids(ws)
    ws.segments.define_trait({"name": "orders_total", "kind": "count",
                              "event": "Order Completed"})
    with pytest.raises(scores.TraitTaken, match="orders_total"):
        write(ws, "orders_total", p[:1], [1.0])
    assert ws.segments.traits.get("orders_total")["definition"]["kind"] == "count"
    # a profile merged or erased after the model read its data gets no score
    assert write(ws, "probability_alive", [p[0], "p_gone"], [0.5, 0.7]) == 1
    assert ws.engine.fetchone("SELECT count(*) FROM profile_traits WHERE name = "
                              "'probability_alive' AND profile_id = 'p_gone'")[0] == 0
    # a score no model writes any more can be removed
    ws.segments.delete_trait("probability_alive")
    assert "probability_alive" not in get_profile(ws, p[0])["computed"]
