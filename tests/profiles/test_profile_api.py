"""The profile API, on both engines: one profile per person found by any of its identifiers, its
counts and first/last seen, traits merged per rule with provenance, merges and aliases, kept-out
decisions (shared device), the paged timeline, search, errors and which keys may read.

Resolution runs after each commit in the writer thread, after the HTTP answer; ``workspace.resolve()``
resolves everything stored so far, synchronously — the documented way to read right after sending.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from conftest import CollectApi
from fastapi.testclient import TestClient

from klantbeeld.app import create_app
from klantbeeld.collect.sources import create_key
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> str:
    """An event time ``minutes`` after T0, as a sender writes it."""
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


class Profiles:
    """Reads profiles over HTTP with a read key (made the way an operator makes one)."""

    def __init__(self, api: CollectApi) -> None:
        self.api = api
        with api.workspace.engine.transaction() as tx:
            self.read_key = create_key(tx, "read")

    def send(self, path: str, body: dict, source: str = "web") -> None:
        response = self.api.post(path, body, key=self.api.write_keys[source])
        assert response.status_code == 200, response.text

    def batch(self, messages: list[dict], source: str = "web") -> None:
        response = self.api.post("/v1/batch", {"batch": messages},
                                 key=self.api.write_keys[source])
        assert response.status_code == 200 and response.json()["failed"] == [], response.text

    def resolve(self) -> None:
        self.api.workspace.resolve()

    def get(self, path: str, key: str | None = "read", **params):
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {self.read_key if key == 'read' else key}"
        return self.api.client.get(path, headers=headers, params=params or None)

    def profile(self, ref: str) -> dict:
        response = self.get(f"/v1/profiles/{ref}")
        assert response.status_code == 200, (ref, response.text)
        return response.json()

    def timeline(self, ref: str, **params) -> dict:
        response = self.get(f"/v1/profiles/{ref}/events", **params)
        assert response.status_code == 200, (ref, params, response.text)
        return response.json()

    def search(self, **params) -> list[dict]:
        response = self.get("/v1/profiles", **params)
        assert response.status_code == 200, (params, response.text)
        body = response.json()
        assert body["count"] == len(body["profiles"])
        return body["profiles"]


@pytest.fixture
def profiles(collect_api) -> Profiles:
    return Profiles(collect_api)


@pytest.fixture
def configured(database_url, tmp_path):
    """A workspace whose home holds an identity.yaml (written before it opens), served in-process."""
    made = []

    def open_with(identity_yaml: str) -> Profiles:
        home = tmp_path / "home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "identity.yaml").write_text(identity_yaml)
        ws = Workspace.open(load_settings(home=home, database_url=database_url))
        keys = ws.init(["web", "app"])
        client = TestClient(create_app(workspace=ws))
        client.__enter__()
        made.append((ws, client))
        return Profiles(CollectApi(ws, client, keys))

    yield open_with
    for ws, client in made:
        client.__exit__(None, None, None)
        ws.close()


def identities(profile: dict) -> set[tuple[str, str]]:
    return {(i["type"], i["value"]) for i in profile["identities"]}


# -- one person across browsing, identify and another source ---------------------------------------

def test_one_profile_from_anonymous_browsing_identify_and_an_app_event(profiles):
    profiles.send("/v1/page", {"anonymousId": "cookie-1", "name": "Home", "timestamp": at(0)})
    profiles.send("/v1/track", {"anonymousId": "cookie-1", "event": "Product Viewed",
                                "timestamp": at(5)})
    profiles.send("/v1/identify", {"anonymousId": "cookie-1", "userId": "u-jan",
                                   "traits": {"email": "  JAN@Example.NL ", "name": "Jan"},
                                   "timestamp": at(10)})
    profiles.send("/v1/track", {"anonymousId": "install-9", "event": "App Opened",
                                "context": {"externalIds": [{"id": "JAN@example.nl",
                                                             "type": "email"}]},
                                "timestamp": at(60)}, source="app")
    # Someone else, on the same sources: never part of Jan's profile.
    profiles.send("/v1/page", {"anonymousId": "cookie-2", "name": "Home", "timestamp": at(1)})
    profiles.send("/v1/track", {"anonymousId": "install-2", "event": "App Opened",
                                "timestamp": at(90)}, source="app")
    profiles.resolve()

    jan = profiles.profile("email:jan@example.nl")
    assert identities(jan) == {("user_id", "u-jan"), ("email", "jan@example.nl"),
                               ("anonymous_id", "cookie-1"), ("anonymous_id", "install-9")}
    pid = jan["profile_id"]
    for ref in ["email:JAN@EXAMPLE.NL", "email:Jan@example.nl", "anonymous_id:cookie-1",
                "anonymous_id:install-9", "user_id:u-jan", f"id:{pid}"]:
        assert profiles.profile(ref) == jan, ref
    assert jan["events"] == {"total": 4, "by_channel": {"web": 3, "app": 1},
                             "by_type": {"page": 1, "track": 2, "identify": 1}}
    assert when(jan["first_seen"]) == when(at(0))
    assert when(jan["last_seen"]) == when(at(60))
    assert jan["traits"]["name"]["value"] == "Jan"
    assert (jan["aliases"], jan["merges"], jan["kept_out"]) == ([], [], [])

    other = profiles.profile("anonymous_id:cookie-2")
    assert other["profile_id"] != pid
    assert identities(other) == {("anonymous_id", "cookie-2")}
    assert other["events"]["total"] == 1
    assert profiles.profile("anonymous_id:install-2")["profile_id"] not in (pid, other["profile_id"])


def test_phone_numbers_are_found_in_any_notation(profiles):
    profiles.send("/v1/identify", {"userId": "u-piet", "traits": {"phone": "06 1234 5678"},
                                   "timestamp": at(0)})
    profiles.resolve()
    piet = profiles.profile("phone:+31612345678")
    assert ("phone", "+31612345678") in identities(piet)
    for ref in ["phone:0612345678", "phone:0031 6 12345678", "user_id:u-piet"]:
        assert profiles.profile(ref)["profile_id"] == piet["profile_id"], ref


# -- errors and keys -----------------------------------------------------------------------------

def test_unknown_identifiers_are_404_and_malformed_references_400(profiles):
    profiles.send("/v1/identify", {"userId": "u-1", "traits": {"email": "a@b.nl"}})
    profiles.resolve()
    for ref in ["email:nobody@b.nl", "user_id:u-2", "id:p_00000000000000000000"]:
        for suffix in ["", "/events"]:
            response = profiles.get(f"/v1/profiles/{ref}{suffix}")
            assert response.status_code == 404, (ref, suffix, response.text)
            body = response.json()
            assert body["code"] == "profile_not_found" and body["message"], body
    for ref, words in [("jan@b.nl", "TYPE:VALUE"), ("email:", "TYPE:VALUE"),
                       ("shoe_size:42", "unknown identifier type")]:
        for suffix in ["", "/events"]:
            response = profiles.get(f"/v1/profiles/{ref}{suffix}")
            assert response.status_code == 400, (ref, suffix, response.text)
            body = response.json()
            assert body["code"] == "invalid_identifier" and words in body["message"], body


def test_only_read_and_admin_keys_read_profiles(profiles):
    profiles.send("/v1/identify", {"userId": "u-1", "traits": {"city": "Utrecht"}})
    profiles.resolve()
    api = profiles.api
    paths = ["/v1/profiles/user_id:u-1", "/v1/profiles/user_id:u-1/events",
             "/v1/profiles?trait.city=Utrecht"]
    for path in paths:
        for key, status, code in [(None, 401, "unauthorized"),
                                  ("kb_read_not-a-real-key", 401, "unauthorized"),
                                  (api.write_keys["web"], 403, "forbidden"),
                                  (api.write_keys["app"], 403, "forbidden")]:
            response = profiles.get(path, key=key)
            assert response.status_code == status, (path, key, response.text)
            assert response.json()["code"] == code
        assert profiles.get(path).status_code == 200, path
        assert profiles.get(path, key=api.admin_key).status_code == 200, path
    # HTTP Basic with the read key as user name works too.
    basic = api.client.get(paths[0], headers=CollectApi.basic(profiles.read_key))
    assert basic.status_code == 200


# -- traits ----------------------------------------------------------------------------------------

def test_most_recent_trait_wins_and_the_other_value_stays_with_its_provenance(profiles):
    # Sent out of time order: the event time decides, not arrival.
    profiles.send("/v1/identify", {"userId": "u-1", "traits": {"city": "Amsterdam"},
                                   "timestamp": at(30)}, source="app")
    profiles.send("/v1/identify", {"userId": "u-1", "traits": {"city": "Utrecht", "plan": "pro"},
                                   "timestamp": at(10)}, source="web")
    profiles.send("/v1/identify", {"userId": "u-1", "traits": {"plan": None},
                                   "timestamp": at(40)}, source="web")
    profiles.resolve()
    traits = profiles.profile("user_id:u-1")["traits"]
    city = traits["city"]
    assert (city["value"], city["rule"], city["source"], city["channel"]) == (
        "Amsterdam", "most_recent", "app", "app")
    assert when(city["at"]) == when(at(30))
    assert [(c["value"], c["source"], c["channel"], when(c["at"])) for c in city["conflicts"]] == [
        ("Utrecht", "web", "web", when(at(10)))]
    assert "plan" not in traits  # cleared by null, the most recent value


def test_trait_rules_from_identity_yaml(configured):
    profiles = configured(
        "traits:\n"
        "  created_at: first_seen\n"
        "  nickname: non_empty\n"
        "  tier: source_priority\n"
        "source_priority: [app, web]\n")
    profiles.send("/v1/identify", {"userId": "u-1", "timestamp": at(0), "traits": {
        "created_at": "2019-04-01", "nickname": "Jantje", "tier": "silver", "city": "Utrecht"}},
        source="app")
    profiles.send("/v1/identify", {"userId": "u-1", "timestamp": at(60), "traits": {
        "created_at": "2024-01-01", "nickname": "", "tier": "gold", "city": "Amsterdam"}},
        source="web")
    profiles.resolve()
    traits = profiles.profile("user_id:u-1")["traits"]

    def chosen(name):
        t = traits[name]
        return t["value"], t["rule"], t["source"], when(t["at"])

    assert chosen("created_at") == ("2019-04-01", "first_seen", "app", when(at(0)))
    assert [(c["value"], c["source"]) for c in traits["created_at"]["conflicts"]] == [
        ("2024-01-01", "web")]
    assert chosen("nickname") == ("Jantje", "non_empty", "app", when(at(0)))
    # The trusted source's value, though older.
    assert chosen("tier") == ("silver", "source_priority", "app", when(at(0)))
    assert [(c["value"], c["source"], c["channel"]) for c in traits["tier"]["conflicts"]] == [
        ("gold", "web", "web")]
    # Traits without a rule keep the default.
    assert chosen("city") == ("Amsterdam", "most_recent", "web", when(at(60)))


def test_source_priority_takes_the_newest_value_of_the_most_trusted_source(configured):
    profiles = configured("traits: {tier: source_priority}\nsource_priority: [app, web]\n")
    for minute, source, tier in [(0, "app", "bronze"), (10, "app", "silver"), (20, "web", "gold"),
                                 (30, "app", None)]:
        profiles.send("/v1/identify", {"userId": "u-1", "traits": {"tier": tier},
                                       "timestamp": at(minute)}, source=source)
    profiles.resolve()
    tier = profiles.profile("user_id:u-1")["traits"]["tier"]
    assert (tier["value"], tier["source"], when(tier["at"])) == ("silver", "app", when(at(10)))
    assert [(c["value"], c["source"]) for c in tier["conflicts"]] == [("gold", "web"),
                                                                      ("bronze", "app")]


# -- merges ----------------------------------------------------------------------------------------

def test_an_identify_carrying_both_identifiers_merges_two_profiles_into_the_older(profiles):
    profiles.send("/v1/identify", {"anonymousId": "cookie-B", "traits": {"phone": "06 12345678"},
                                   "timestamp": at(0)})
    profiles.send("/v1/page", {"anonymousId": "cookie-B", "name": "Home", "timestamp": at(1)})
    profiles.send("/v1/identify", {"anonymousId": "cookie-A", "traits": {"email": "x@shop.nl"},
                                   "timestamp": at(5)})
    profiles.send("/v1/page", {"anonymousId": "cookie-A", "name": "Cart", "timestamp": at(6)})
    profiles.resolve()
    by_phone = profiles.profile("phone:+31612345678")["profile_id"]
    by_email = profiles.profile("email:x@shop.nl")["profile_id"]
    assert by_phone != by_email

    profiles.send("/v1/identify", {"userId": "u-77", "timestamp": at(20), "traits": {
        "email": "X@shop.nl", "phone": "+31 6 12345678"}})
    profiles.resolve()
    merged = profiles.profile("user_id:u-77")
    # The older profile (the phone one, made first) survives, though email ranks above phone.
    assert merged["profile_id"] == by_phone
    for ref in [f"id:{by_email}", f"id:{by_phone}", "email:x@shop.nl", "phone:0612345678",
                "anonymous_id:cookie-A", "anonymous_id:cookie-B"]:
        assert profiles.profile(ref) == merged, ref
    assert identities(merged) == {("user_id", "u-77"), ("email", "x@shop.nl"),
                                  ("phone", "+31612345678"), ("anonymous_id", "cookie-A"),
                                  ("anonymous_id", "cookie-B")}
    assert merged["aliases"] == [by_email]
    (merge,) = merged["merges"]
    assert (merge["survivor"], merge["merged"], when(merge["merged_at"])) == (
        by_phone, by_email, when(at(20)))
    assert "+31612345678" in merge["reason"] or "x@shop.nl" in merge["reason"], merge
    assert merged["events"]["total"] == 5 and merged["events"]["by_type"] == {
        "identify": 3, "page": 2}
    assert when(merged["first_seen"]) == when(at(0))
    assert when(merged["created_at"]) == when(at(0))
    timeline = profiles.timeline(f"id:{by_email}")
    assert timeline["profile_id"] == by_phone and len(timeline["events"]) == 5


def test_merging_a_survivor_into_an_older_profile_moves_its_aliases_along(profiles):
    for i in range(3):
        profiles.send("/v1/identify", {"anonymousId": f"c{i}", "traits": {"email": f"p{i}@shop.nl"},
                                       "timestamp": at(i)})
    profiles.resolve()
    pids = [profiles.profile(f"email:p{i}@shop.nl")["profile_id"] for i in range(3)]
    assert len(set(pids)) == 3

    # p1 + p2 → p2 into p1; then p0 + p1 → p1 (with its alias p2) into p0.
    profiles.send("/v1/track", {"anonymousId": "c9", "event": "Linked", "timestamp": at(10),
                                "context": {"externalIds": [
                                    {"type": "email", "id": "p1@shop.nl"},
                                    {"type": "email", "id": "p2@shop.nl"}]}})
    profiles.resolve()
    assert profiles.profile(f"id:{pids[2]}")["profile_id"] == pids[1]
    profiles.send("/v1/track", {"anonymousId": "c8", "event": "Linked", "timestamp": at(20),
                                "context": {"externalIds": [
                                    {"type": "email", "id": "p0@shop.nl"},
                                    {"type": "email", "id": "p1@shop.nl"}]}})
    profiles.resolve()
    for pid in pids:
        assert profiles.profile(f"id:{pid}")["profile_id"] == pids[0], pid
    survivor = profiles.profile(f"id:{pids[0]}")
    assert survivor["aliases"] == sorted(pids[1:])
    assert {(m["survivor"], m["merged"]) for m in survivor["merges"]} == {
        (pids[1], pids[2]), (pids[0], pids[1])}
    assert {("email", f"p{i}@shop.nl") for i in range(3)} <= identities(survivor)
    assert survivor["events"]["total"] == 5


# -- shared device ---------------------------------------------------------------------------------

def test_two_users_on_one_device_stay_two_profiles_and_the_decision_is_visible(profiles):
    profiles.send("/v1/page", {"anonymousId": "tablet-1", "name": "Home", "timestamp": at(0)})
    profiles.send("/v1/identify", {"anonymousId": "tablet-1", "userId": "anna",
                                   "traits": {"email": "anna@huis.nl"}, "timestamp": at(5)})
    profiles.send("/v1/identify", {"anonymousId": "tablet-1", "userId": "bram",
                                   "traits": {"email": "bram@huis.nl"}, "timestamp": at(30)})
    profiles.send("/v1/page", {"anonymousId": "tablet-1", "name": "News", "timestamp": at(40)})
    profiles.resolve()

    anna, bram = profiles.profile("user_id:anna"), profiles.profile("user_id:bram")
    assert anna["profile_id"] != bram["profile_id"]
    assert identities(anna) == {("user_id", "anna"), ("email", "anna@huis.nl"),
                                ("anonymous_id", "tablet-1")}
    assert identities(bram) == {("user_id", "bram"), ("email", "bram@huis.nl")}
    assert profiles.profile("email:bram@huis.nl")["profile_id"] == bram["profile_id"]
    assert profiles.profile("anonymous_id:tablet-1")["profile_id"] == anna["profile_id"]
    assert anna["traits"]["email"]["value"] == "anna@huis.nl"
    assert bram["traits"]["email"]["value"] == "bram@huis.nl"
    assert (anna["events"]["total"], bram["events"]["total"]) == (3, 1)

    assert anna["kept_out"] == [] and anna["merges"] == bram["merges"] == []
    (decision,) = bram["kept_out"]
    assert (decision["type"], decision["value"]) == ("anonymous_id", "tablet-1")
    assert when(decision["decided_at"]) == when(at(30))
    assert "user_id" in decision["reason"] and "limit 1" in decision["reason"], decision
    stored = profiles.api.workspace.engine.fetch_dicts(
        "SELECT id_type, id_value FROM identity_decisions")
    assert stored == [{"id_type": "anonymous_id", "id_value": "tablet-1"}]


# -- timeline --------------------------------------------------------------------------------------

def _timeline_fixture(profiles: Profiles) -> list[tuple[str, str, str, str | None, str]]:
    """25 events of one person on two sources, with equal times among them; another person's too.
    Returns (message_id, channel, type, event, time) newest first."""
    sent = []  # (minute, order sent, message_id, channel, type, event)
    web, app = [], []
    for i in range(25):
        minute = i // 3 * 7  # three events share each time
        channel = "app" if i % 4 == 1 else "web"
        if i == 0:
            msg = {"type": "identify", "userId": "u-1", "traits": {"email": "t@shop.nl"}}
        elif i % 5 == 2:
            msg = {"type": "page", "userId": "u-1", "name": f"Page {i}"}
        else:
            msg = {"type": "track", "userId": "u-1",
                   "event": "Order Completed" if i % 3 == 0 else "Product Viewed"}
        msg.update(messageId=f"m-{i:02d}", timestamp=at(minute))
        (app if channel == "app" else web).append(msg)
        sent.append((minute, len(sent), msg["messageId"], channel, msg["type"], msg.get("event")))
    # Sent web first, then app: among equal times the later-stored event is the newer one.
    profiles.batch(web, "web")
    profiles.batch(app, "app")
    profiles.batch([{"type": "track", "userId": "u-2", "event": "Order Completed",
                     "timestamp": at(7)}], "web")
    profiles.resolve()
    stored = {r["message_id"]: r["seq"] for r in profiles.api.events()}
    ordered = sorted(sent, key=lambda s: (s[0], stored[s[2]]), reverse=True)
    return [(s[2], s[3], s[4], s[5], at(s[0])) for s in ordered]


def _page_through(profiles: Profiles, ref: str, limit: int, **filters) -> list[dict]:
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit, **filters, **({"cursor": cursor} if cursor else {})}
        page = profiles.timeline(ref, **params)
        pages += 1
        assert len(page["events"]) <= limit
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        assert len(page["events"]) == limit
        assert pages < 50


def test_timeline_pages_newest_first_without_gaps_or_duplicates(profiles):
    expected = _timeline_fixture(profiles)
    events = _page_through(profiles, "email:t@shop.nl", 10)
    assert [e["message_id"] for e in events] == [e[0] for e in expected]
    assert [(e["channel"], e["source"], e["type"], e["event"]) for e in events] == [
        (x[1], x[1], x[2], x[3]) for x in expected]
    times = [when(e["timestamp"]) for e in events]
    assert times == sorted(times, reverse=True) and times[0] == when(expected[0][4])
    assert events[-1]["payload"]["traits"] == {"email": "t@shop.nl"}

    first = profiles.timeline("user_id:u-1", limit=10)
    assert len(first["events"]) == 10 and first["next_cursor"]
    everything = profiles.timeline("user_id:u-1", limit=25)
    assert len(everything["events"]) == 25 and everything["next_cursor"] is None
    assert profiles.timeline("user_id:u-1")["next_cursor"] is None  # the default page holds all


def test_timeline_filters_by_channel_type_and_event_and_pages_within_them(profiles):
    expected = _timeline_fixture(profiles)
    ref = "user_id:u-1"
    for filters, keep in [
        ({"channel": "app"}, lambda x: x[1] == "app"),
        ({"type": "page"}, lambda x: x[2] == "page"),
        ({"event": "Order Completed"}, lambda x: x[3] == "Order Completed"),
        ({"channel": "web", "type": "track"}, lambda x: x[1] == "web" and x[2] == "track"),
    ]:
        want = [x[0] for x in expected if keep(x)]
        assert want, filters
        assert [e["message_id"] for e in _page_through(profiles, ref, 3, **filters)] == want, filters
    assert profiles.timeline(ref, channel="pos")["events"] == []
    assert profiles.timeline(ref, event="Nothing Like This")["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["not-a-cursor", "aGVsbG8", "!!!", "MjAyNHwx"])
def test_a_bad_cursor_is_400(profiles, cursor):
    profiles.send("/v1/track", {"userId": "u-1", "event": "x"})
    profiles.resolve()
    response = profiles.get("/v1/profiles/user_id:u-1/events", cursor=cursor)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_cursor"


# -- search ----------------------------------------------------------------------------------------

def test_search_by_merged_trait_and_identifier_prefix(profiles):
    people = [  # user id, email, [(minute, traits)]
        ("u_1", "jan@een.nl", [(0, {"city": "Utrecht", "plan": "pro"})]),
        ("u_2", "piet@twee.nl", [(0, {"city": "Utrecht"}), (10, {"city": "Amsterdam"})]),
        ("u_3", "janneke@drie.nl", [(0, {"city": "Amsterdam"}), (10, {"city": "Utrecht"})]),
        ("ux4", "xjan@vier.nl", [(0, {"city": "Rotterdam", "plan": "pro"})]),
    ]
    for user, email, changes in people:
        for minute, traits in changes:
            profiles.send("/v1/identify", {"userId": user, "traits": {"email": email, **traits},
                                           "timestamp": at(minute)})
    profiles.resolve()
    pid = {user: profiles.profile(f"user_id:{user}")["profile_id"] for user, _, _ in people}

    def found(**params):
        return sorted(p["profile_id"] for p in profiles.search(**params))

    utrecht = profiles.search(**{"trait.city": "Utrecht"})
    assert sorted(p["profile_id"] for p in utrecht) == sorted([pid["u_1"], pid["u_3"]])
    assert all(p["traits"]["city"] == "Utrecht" for p in utrecht)
    assert {("user_id", "u_3"), ("email", "janneke@drie.nl")} <= {
        (i["type"], i["value"]) for p in utrecht for i in p["identities"]}
    assert found(**{"trait.city": "Amsterdam"}) == [pid["u_2"]]  # Utrecht once, not any more
    assert found(**{"trait.city": "Utrecht", "trait.plan": "pro"}) == [pid["u_1"]]
    assert found(**{"trait.city": "Eindhoven"}) == []

    assert found(identifier="email:jan") == sorted([pid["u_1"], pid["u_3"]])
    assert found(identifier="user_id:u_") == sorted(pid[u] for u in ("u_1", "u_2", "u_3"))
    assert found(identifier="email:jan", **{"trait.city": "Utrecht"}) == sorted(
        [pid["u_1"], pid["u_3"]])
    assert found(identifier="email:jan", **{"trait.plan": "pro"}) == [pid["u_1"]]
    assert found(identifier="email:nobody") == []
    assert len(profiles.search(identifier="user_id:u", limit=2)) == 2


def test_search_without_criteria_is_400(profiles):
    for params in [{}, {"limit": 5}, {"trait.": "x"}]:
        response = profiles.get("/v1/profiles", **params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["code"] == "invalid_search"
    assert profiles.get("/v1/profiles", identifier="no-colon").json()["code"] == "invalid_search"
    assert profiles.get("/v1/profiles", identifier="email:a", limit=0).status_code == 422


def test_search_finds_every_match_however_many_profiles_once_had_the_value(profiles):
    """Most trial users upgraded; the 40 still on trial must all be found (limit 50)."""
    upgraded = [{"type": "identify", "userId": f"upgraded-{i}", "traits": {"plan": "trial"},
                 "timestamp": at(0)} for i in range(400)]
    upgraded += [{"type": "identify", "userId": f"upgraded-{i}", "traits": {"plan": "paid"},
                  "timestamp": at(60)} for i in range(400)]
    profiles.batch(upgraded)
    profiles.batch([{"type": "identify", "userId": f"trial-{i}", "traits": {"plan": "trial"},
                     "timestamp": at(30)} for i in range(40)])
    profiles.resolve()
    found = profiles.search(**{"trait.plan": "trial"})
    assert sorted(i["value"] for p in found for i in p["identities"]) == sorted(
        f"trial-{i}" for i in range(40))


def test_search_by_email_prefix_ignores_case_as_lookup_does(profiles):
    profiles.send("/v1/identify", {"userId": "u-1", "traits": {"email": "Jan.Case@Example.NL"}})
    profiles.resolve()
    pid = profiles.profile("email:Jan.Case@Example.NL")["profile_id"]
    assert [p["profile_id"] for p in profiles.search(identifier="email:jan.case")] == [pid]
    # Stored e-mail addresses are lower case; a prefix typed as the customer wrote it finds them.
    assert [p["profile_id"] for p in profiles.search(identifier="email:Jan.Case@")] == [pid]


# -- when resolution happens; first seen -----------------------------------------------------------

def test_the_server_resolves_after_each_commit_without_being_asked(profiles):
    profiles.send("/v1/track", {"anonymousId": "c-1", "event": "Viewed"})
    profiles.send("/v1/identify", {"anonymousId": "c-1", "userId": "u-rt",
                                   "traits": {"email": "RT@shop.nl"}})
    deadline = time.monotonic() + 10
    while True:  # resolution runs in the writer thread, after the answer: wait for it
        response = profiles.get("/v1/profiles/email:rt@shop.nl")
        if response.status_code == 200 and response.json()["events"]["total"] == 2:
            break
        assert response.status_code in (200, 404), response.text
        assert time.monotonic() < deadline, response.text
        time.sleep(0.02)
    assert identities(response.json()) == {("anonymous_id", "c-1"), ("user_id", "u-rt"),
                                           ("email", "rt@shop.nl")}


def test_identifiers_first_seen_is_their_earliest_event_even_when_it_arrives_late(profiles):
    # An app sends its offline events when it gets a connection again: after newer ones.
    profiles.send("/v1/identify", {"anonymousId": "install-1", "userId": "u-1",
                                   "timestamp": at(60)}, source="app")
    profiles.batch([{"type": "track", "anonymousId": "install-1", "event": "Opened",
                     "timestamp": at(0)}], source="app")
    profiles.resolve()
    profile = profiles.profile("user_id:u-1")
    assert when(profile["first_seen"]) == when(at(0))
    first = {i["type"]: when(i["first_seen"]) for i in profile["identities"]}
    assert first == {"user_id": when(at(60)), "anonymous_id": when(at(0))}
