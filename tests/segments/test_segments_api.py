"""Segments over HTTP on both engines: define, members, preview, validation errors that point at
the node, who may do what, real-time membership with history and internal events, merges,
computed traits on the profile, lifecycle segments, and time windows moving people out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from conftest import CollectApi, profile_of

from klantbeeld.collect.sources import create_key

NOW = datetime.now(timezone.utc)


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def person(user: str, city: str, orders: list[tuple[float, float]], email: bool = True) -> list:
    """An identify and one Order Completed per (days ago, revenue)."""
    traits = {"city": city, **({"email": f"{user}@shop.nl"} if email else {})}
    msgs = [{"type": "identify", "userId": user, "traits": traits, "timestamp": ago(500)}]
    msgs += [{"type": "track", "userId": user, "event": "Order Completed",
              "properties": {"revenue": revenue, "order_id": f"{user}-{i}"},
              "timestamp": ago(days)} for i, (days, revenue) in enumerate(orders)]
    return msgs


class Api:
    def __init__(self, api: CollectApi) -> None:
        self.api, self.ws = api, api.workspace
        with self.ws.engine.transaction() as tx:
            self.read_key = create_key(tx, "read")

    def send(self, messages: list[dict]) -> None:
        r = self.api.post("/v1/batch", {"batch": messages})
        assert r.status_code == 200 and not r.json()["failed"], r.text
        self.ws.resolve()   # resolve and update memberships now (the server does it after commits)

    def admin(self, method: str, path: str, **kw):
        return self.api.admin(method, path, **kw)

    def read(self, method: str, path: str, **kw):
        return self.api.client.request(method, path, headers={
            "Authorization": f"Bearer {self.read_key}"}, **kw)

    def pid(self, user: str) -> str:
        return self.ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_type = "
                                       "'user_id' AND id_value = $u", {"u": user})[0]

    def members(self, sid: str) -> set[str]:
        r = self.read("GET", f"/v1/segments/{sid}/members", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return {p["profile_id"] for p in r.json()["profiles"]}


@pytest.fixture
def api(collect_api) -> Api:
    return Api(collect_api)


TYPICAL = {"and": [
    {"event": "Order Completed", "count": {"at_least": 2}, "within_days": 90},
    {"trait": "lifetime_revenue", "op": ">", "value": 100},
    {"trait": "city", "op": "in", "value": ["Utrecht", "Amsterdam"]},
]}


def test_a_segment_is_defined_read_and_kept_current(api):
    api.send(person("ann", "Utrecht", [(10, 60), (20, 70)])          # in
             + person("bob", "Utrecht", [(10, 30), (20, 30)])        # spent too little
             + person("cas", "Delft", [(10, 80), (20, 80)])          # wrong city
             + person("dan", "Amsterdam", [(10, 90), (200, 90)]))    # one order in 90 days
    r = api.admin("POST", "/v1/segments", json={"name": "Good city buyers", "definition": TYPICAL})
    assert r.status_code == 201, r.text
    seg = r.json()
    assert seg["id"] == "good-city-buyers" and seg["size"] == 1 and seg["computed_at"]
    assert api.members("good-city-buyers") == {api.pid("ann")}

    page = api.read("GET", "/v1/segments/good-city-buyers/members",
                    params={"traits": "city,lifetime_revenue,order_count"}).json()
    assert page["profiles"][0]["traits"] == {"city": "Utrecht", "lifetime_revenue": 130,
                                             "order_count": 2}
    listed = {s["id"]: s for s in api.read("GET", "/v1/segments").json()["segments"]}
    assert listed["good-city-buyers"]["size"] == 1 and "loyal" in listed

    # dan orders again: he enters in real time; the entry is in the history and the event log
    api.send([{"type": "track", "userId": "dan", "event": "Order Completed",
               "properties": {"revenue": 20}, "timestamp": ago(1)}])
    assert api.members("good-city-buyers") == {api.pid("ann"), api.pid("dan")}
    changes = api.read("GET", "/v1/segments/good-city-buyers/changes").json()["changes"]
    assert [(c["kind"], c["profile_id"]) for c in changes] == [
        ("segment.entered", api.pid("ann")), ("segment.entered", api.pid("dan"))]
    after = api.read("GET", "/v1/segments/good-city-buyers/changes",
                     params={"after": changes[-1]["seq"]}).json()
    assert after["changes"] == [] and after["next_after"] == changes[-1]["seq"]

    # ann moves to Delft: she leaves; her stay is closed in the history
    api.send([{"type": "identify", "userId": "ann", "traits": {"city": "Delft"},
               "timestamp": ago(0.5)}])
    assert api.members("good-city-buyers") == {api.pid("dan")}
    stays = api.ws.segments.history("good-city-buyers", api.pid("ann"))
    assert len(stays) == 1 and stays[0]["exited_at"] is not None
    last = api.read("GET", "/v1/segments/good-city-buyers/changes").json()["changes"][-1]
    assert (last["kind"], last["profile_id"]) == ("segment.exited", api.pid("ann"))

    # the profile shows its computed traits and memberships
    profile = api.read("GET", f"/v1/profiles/id:{api.pid('dan')}").json()
    assert profile["computed"]["order_count"]["value"] == 3
    assert profile["computed"]["order_count"]["computed_at"]
    assert "good-city-buyers" in {s["id"] for s in profile["segments"]}


def test_preview_validation_and_roles(api):
    api.send(person("ann", "Utrecht", [(10, 60), (20, 70)]) + person("bob", "Delft", []))
    r = api.read("POST", "/v1/segments/preview", json={"definition": TYPICAL})
    assert r.status_code == 200 and r.json()["size"] == 1
    assert api.read("POST", "/v1/segments/preview", json={
        "definition": {"trait": "order_count", "op": "=", "value": 0}}).json()["size"] == 1

    bad = {"and": [{"trait": "city", "op": "=", "value": "Utrecht"},
                   {"event": "Order Completed", "count": {"at_least": -1}},
                   {"trait": "age", "op": "<", "value": "old"}]}
    r = api.admin("POST", "/v1/segments", json={"name": "Bad", "definition": bad})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_definition"
    assert {e["path"] for e in body["errors"]} == {"/and/1/count", "/and/2/value"}
    r = api.admin("POST", "/v1/segments/preview", json={"definition": {"segment": "nope"}})
    assert r.status_code == 422 and "nope" in r.json()["message"]

    # a read key reads but does not define; a write key does neither
    assert api.read("POST", "/v1/segments", json={"name": "X", "definition": TYPICAL}
                    ).status_code == 403
    r = api.api.post("/v1/segments/preview", {"definition": TYPICAL})
    assert r.status_code == 403
    assert api.read("GET", "/v1/segments/nope").status_code == 404

    # ids are unique; a segment in use by another cannot be deleted
    assert api.admin("POST", "/v1/segments", json={
        "name": "Buyers", "definition": {"event": "Order Completed"}}).status_code == 201
    assert api.admin("POST", "/v1/segments", json={
        "name": "Buyers", "definition": {"event": "Order Completed"}}).status_code == 409
    assert api.admin("POST", "/v1/segments", json={
        "name": "Utrecht buyers", "definition": {"and": [
            {"segment": "buyers"}, {"trait": "city", "op": "=", "value": "Utrecht"}]}}
        ).json()["size"] == 1
    assert api.admin("DELETE", "/v1/segments/buyers").status_code == 409
    assert api.admin("DELETE", "/v1/segments/loyal").status_code == 409   # built in
    # changing a segment recomputes those that use it
    r = api.admin("PATCH", "/v1/segments/buyers", json={
        "definition": {"event": "Order Completed", "count": {"at_least": 5}}})
    assert r.status_code == 200 and r.json()["size"] == 0
    assert api.read("GET", "/v1/segments/utrecht-buyers").json()["size"] == 0
    assert api.admin("DELETE", "/v1/segments/utrecht-buyers").status_code == 204
    assert api.admin("DELETE", "/v1/segments/buyers").status_code == 204


def test_merged_profiles_leave_and_the_survivor_is_reevaluated(api):
    api.send(person("ann", "Utrecht", [(10, 60)], email=False)
             + [{"type": "track", "anonymousId": "cookie-1", "event": "Order Completed",
                 "properties": {"revenue": 70}, "timestamp": ago(5)}])
    r = api.admin("POST", "/v1/segments", json={"name": "Buyers", "definition": {
        "event": "Order Completed"}})
    assert r.json()["size"] == 2
    anonymous = api.ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_value = "
                                       "'cookie-1'")[0]
    # the cookie logs in as ann: two profiles become one
    api.send([{"type": "identify", "userId": "ann", "anonymousId": "cookie-1",
               "timestamp": ago(4)}])
    survivor = api.pid("ann")
    assert api.members("buyers") == {survivor}
    gone = anonymous if survivor != anonymous else api.pid("ann")
    assert api.ws.segments.history("buyers", gone)[-1]["exited_at"] is not None
    assert api.read("GET", f"/v1/profiles/id:{survivor}").json()["computed"][
        "order_count"]["value"] == 2


def test_computed_traits_through_the_api(api):
    api.send(person("ann", "Utrecht", [(10, 60), (20, 70), (200, 10)])
             + person("bob", "Delft", [(300, 5)]))
    r = api.admin("POST", "/v1/traits", json={
        "name": "orders_90d", "kind": "count", "event": "Order Completed", "window_days": 90})
    assert r.status_code == 201 and r.json()["profiles"] == 1
    r = api.admin("POST", "/v1/traits", json={"name": "bad", "kind": "sum",
                                              "event": "Order Completed"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/property"
    assert api.read("POST", "/v1/traits", json={"name": "x", "kind": "count",
                                                "event": "A"}).status_code == 403
    assert api.read("POST", "/v1/segments/preview", json={"definition": {
        "trait": "orders_90d", "op": "=", "value": 0}}).json()["size"] == 1   # bob: 0
    names = {t["name"] for t in api.read("GET", "/v1/traits").json()["traits"]}
    assert {"orders_90d", "order_count", "lifetime_revenue"} <= names
    assert api.admin("DELETE", "/v1/traits/order_count").status_code == 409   # built in
    assert api.admin("DELETE", "/v1/traits/orders_90d").status_code == 204


def test_lifecycle_segments_and_time_moving_people(api):
    api.send(person("lead", "Utrecht", [])
             + person("new", "Utrecht", [(5, 50)])
             + person("loyal", "Utrecht", [(5, 50), (40, 50), (80, 50), (120, 50)])
             + person("risk", "Utrecht", [(150, 50)])
             + person("lapsed", "Utrecht", [(400, 50), (500, 50)]))
    sizes = {s["id"]: s for s in api.read("GET", "/v1/segments").json()["segments"]}
    want = {"lead": {"lead"}, "new-customer": {"new"}, "repeat-customer": {"loyal", "lapsed"},
            "loyal": {"loyal"}, "at-risk": {"risk"}, "lapsed": {"lapsed"}}
    for sid, users in want.items():
        assert sizes[sid]["origin"] == "builtin"
        assert api.members(sid) == {api.pid(u) for u in users}, sid

    # 220 days later, with nothing sent: the new and the loyal customer are at risk, the one at
    # risk has lapsed.
    api.ws.segments.refresh(now=NOW + timedelta(days=220))
    assert api.members("new-customer") == set() and api.members("loyal") == set()
    assert api.members("at-risk") == {api.pid("new"), api.pid("loyal")}
    assert api.members("lapsed") == {api.pid("risk"), api.pid("lapsed")}


def test_a_full_refresh_stores_the_same_traits_as_the_real_time_path(api):
    """After a rebuild (or retention) every profile's sent traits are merged again in one pass;
    the outcome equals what the per-profile real-time path stored."""
    api.send(person("ann", "Utrecht", [(10, 60)]) + person("bob", "Delft", []))
    api.send([{"type": "identify", "userId": "ann", "traits": {"city": "Leiden", "vip": True,
                                                                "tags": ["a", "b"]},
               "timestamp": ago(1)},
              {"type": "identify", "userId": "bob", "traits": {"age": 42}, "timestamp": ago(2)}])
    rows = "SELECT profile_id, name, value, num, txt, ts, is_list FROM profile_traits " \
           "WHERE kind = 'trait' ORDER BY profile_id, name"
    real_time = api.ws.engine.fetchall(rows)
    assert len(real_time) >= 6
    api.ws.engine.execute("UPDATE identity_state SET value = -1 WHERE name = 'segments_corrections'")
    assert api.ws.update_segments()["mode"] == "full"
    assert api.ws.engine.fetchall(rows) == real_time
    assert api.members("lead") == {api.pid("bob")}


def test_real_time_steps_update_only_the_profiles_they_touched(api, monkeypatch):
    """Resolving new events (a merge among them) keeps memberships current by a scoped step, not
    a refresh of every profile — at a million profiles the difference is seconds per step."""
    from klantbeeld.segments import realtime

    api.send(person("ann", "Utrecht", [(10, 60)]) + person("bob", "Delft", [(30, 40)]))
    full = []
    everyone = realtime.materialise_all
    monkeypatch.setattr(realtime, "materialise_all",
                        lambda *a, **k: full.append(1) or everyone(*a, **k))
    api.send([{"type": "track", "anonymousId": "cookie-9", "event": "Order Completed",
               "properties": {"revenue": 80}, "timestamp": ago(1)},
              {"type": "identify", "userId": "bob", "anonymousId": "cookie-9",
               "timestamp": ago(1)}])
    assert not full, "a real-time step refreshed every profile"
    assert api.members("repeat-customer") == {api.pid("bob")}
    # A correction (here: a rebuild) still asks for one full refresh.
    from klantbeeld.identity.rebuild import rebuild

    rebuild(api.ws.engine, api.ws.resolver)
    assert api.ws.update_segments()["mode"] == "full" and full
    assert api.members("repeat-customer") == {api.pid("bob")}


@pytest.mark.parametrize("join_from", [1, 4096], ids=["owners-by-join", "owners-by-id"])
def test_sent_traits_are_merged_again_for_identifies_and_merges_only(api, monkeypatch, join_from):
    """Sent traits come from identify events: a step of page views and tracks leaves them as they
    are, and a merge made by a track brings the merged profile's traits to the survivor. (Both
    ways a step finds the profiles its identifiers belong to give the same.)"""
    from klantbeeld.segments import realtime

    monkeypatch.setattr(realtime, "JOIN_FROM", join_from)

    api.send([{"type": "identify", "userId": "ann", "traits": {"city": "Leiden"},
               "timestamp": ago(3)},
              {"type": "identify", "anonymousId": "cookie-7", "traits": {"vip": True},
               "timestamp": ago(3)}])
    with_trait = "SELECT DISTINCT profile_id FROM profile_traits WHERE kind = 'trait' " \
                 "AND name IN ('vip', 'city') ORDER BY 1"
    assert api.ws.engine.fetchall(with_trait) == sorted(
        [(api.pid("ann"),), (profile_of(api.ws, "anonymous_id", "cookie-7"),)])
    merged_again: list[list[str]] = []
    real = realtime.materialise
    monkeypatch.setattr(realtime, "materialise",
                        lambda s, c, pids, *a, **k: merged_again.append(pids) or real(s, c, pids,
                                                                                     *a, **k))
    api.send([{"type": "track", "userId": "ann", "event": "Product Viewed", "timestamp": ago(2)}])
    assert merged_again == [[]]
    api.send([{"type": "track", "userId": "ann", "anonymousId": "cookie-7",
               "event": "Product Viewed", "timestamp": ago(1)}])   # one person after all
    survivor = api.pid("ann")
    assert survivor in merged_again[-1]
    vips = api.read("POST", "/v1/segments/preview", json={"definition": {
        "trait": "vip", "op": "=", "value": True}}).json()
    assert vips["size"] == 1
    leiden = api.read("POST", "/v1/segments/preview", json={"definition": {
        "trait": "city", "op": "=", "value": "Leiden"}}).json()
    assert leiden["size"] == 1
    assert api.ws.engine.fetchall(with_trait) == [(survivor,)]
