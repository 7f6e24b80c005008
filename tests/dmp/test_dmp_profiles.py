"""Third-party segments where a user sees them, on both engines: on the profile only while
consent allows third-party enrichment, in a segment export only when it asks for them, and gone
— the cookie profile with its ID syncs — when the person is erased."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import orjson
import pytest
from conftest import feed

from klantbeeld.dmp import apply_feed, load_pairs
from klantbeeld.privacy import dsr
from klantbeeld.privacy.consent_api import set_consent
from klantbeeld.profiles.lookup import get_profile
from klantbeeld.segments.audience import export_members
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace


@pytest.fixture
def ws(database_url, tmp_path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    ws.init(["web", "dmp"])
    feed(ws, [
        {"type": "identify", "userId": "u-7f3ann", "anonymousId": "c-ann", "messageId": "m1",
         "traits": {"email": "ann@example.nl", "city": "Utrecht"}},
        {"type": "identify", "userId": "u-9b0b", "anonymousId": "c-bob", "messageId": "m2",
         "traits": {"email": "bob@example.nl", "city": "Utrecht"}},
    ], tmp_path)
    apply_feed(ws.engine, "dmp", [("c-ann", ["1022", "2011"], []), ("c-bob", ["3002"], []),
                                  ("c-stranger", ["1022"], [])])
    load_pairs(ws.engine, "acme", [("A-ann", "c-ann"), ("A-x", "c-stranger")])
    yield ws
    ws.close()


def pid(ws, user: str) -> str:
    return ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_type = 'user_id' "
                              "AND id_value = $u", {"u": user})[0]


def export(ws, third_party: bool) -> dict[str, dict]:
    sid = ws.segments.create({"trait": "city", "op": "=", "value": "Utrecht"}, "U")["id"]
    out = io.BytesIO()
    export_members(ws.engine, sid, out, "jsonl", ["city"], ["email"],
                   third_party=(ws.privacy_config, datetime.now(timezone.utc))
                   if third_party else None)
    ws.segments.delete(sid)
    return {r["email"]: r for r in map(orjson.loads, out.getvalue().splitlines())}


def test_profile_and_export_show_third_party_segments_only_with_consent(ws):
    ann = pid(ws, "u-7f3ann")
    assert get_profile(ws, ann)["third_party_segments"] == []
    set_consent(ws, ann, {"third_party_enrichment": "granted"}, "test")
    shown = get_profile(ws, ann)["third_party_segments"]
    assert [(s["segment_id"], s["third_party"], s["cookie_id"]) for s in shown] == [
        ("1022", True, "c-ann"), ("2011", True, "c-ann")]
    assert all(s["expires_at"] for s in shown)

    plain = export(ws, third_party=False)
    assert "third_party_segments" not in plain["ann@example.nl"]
    rich = export(ws, third_party=True)
    assert rich["ann@example.nl"]["third_party_segments"] == ["1022", "2011"]
    assert rich["bob@example.nl"]["third_party_segments"] == []      # bob never consented

    set_consent(ws, ann, {"third_party_enrichment": "withdrawn"}, "test")
    assert get_profile(ws, ann)["third_party_segments"] == []
    assert export(ws, third_party=True)["ann@example.nl"]["third_party_segments"] == []


def test_erasure_removes_the_cookie_profile_and_its_id_syncs(ws):
    dsr.submit(ws, "erasure", [{"type": "email", "value": "ann@example.nl"}], "test")
    done = dsr.process_pending(ws)[0]
    assert done["status"] == "completed", str(done)
    left = {r[0] for r in ws.engine.fetchall("SELECT DISTINCT cookie_id FROM cookie_segments")}
    assert left == {"c-bob", "c-stranger"}
    synced = {r[0] for r in ws.engine.fetchall("SELECT cookie_id FROM id_sync")}
    assert synced == {"c-stranger"}
