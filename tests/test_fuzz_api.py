"""Fuzzing the privacy, profile, consent and segment-read endpoints from the OpenAPI document, on
both engines.

schemathesis draws requests from ``app.openapi()`` — valid ones and ones that break the schema —
and the test mixes in what a schema cannot know: the ids of real people (``user_id:…``,
``email:…``, ``id:p_…``), privacy requests, segments, traits and keys, bodies that name them,
values at the edges (NUL, integers past 64 bits) and raw junk. Every request goes out with no
key, an unknown key, and a write, read, privacy and admin key. For each answer:

- never a 5xx (nor an exception out of the app);
- the status docs/api.md gives the role: 401 without a (known) key, 403 for a role the route does
  not admit — and a refused role gets ``{code, message}`` only, holding none of the seeded
  people's data, whatever the route (one exception, FastAPI's: a body that is not JSON is
  refused, 422 or 400, before the key is looked at);
- an admitted role's 2xx has the documented shape; its errors are ``{code, message}`` too;
- no answer ever holds one of the role keys in plain text.

The workspace holds three people (identify with e-mail and phone, tracks on two sources), a
segment, a consent entry, a completed access request with its archive and a pending request.

``KLANTBEELD_FUZZ_EXAMPLES`` (default 10: about 1,300 requests per engine, the same each run) is
the number of generated requests per endpoint per engine; the long run of docs/benchmarks.md is
``KLANTBEELD_FUZZ_EXAMPLES=200 KLANTBEELD_FUZZ_REPORT=fuzz.json python -m pytest
tests/test_fuzz_api.py -q -s``: the tally per endpoint and role is printed, and written as JSON
with every finding. Findings are collected, not raised, so one run reports them all.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
import traceback
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from klantbeeld.collect.sources import create_key

schemathesis = pytest.importorskip("schemathesis")
import requests  # noqa: E402  (comes with schemathesis)
GenerationMode = schemathesis.GenerationMode

EXAMPLES = int(os.environ.get("KLANTBEELD_FUZZ_EXAMPLES", "10"))
# The default run (CI) draws the same examples every time, so it does not turn red on a change
# that is not to blame; a run with KLANTBEELD_FUZZ_EXAMPLES set draws new ones each time.
DERANDOMIZE = "KLANTBEELD_FUZZ_EXAMPLES" not in os.environ
REPORT = os.environ.get("KLANTBEELD_FUZZ_REPORT")
NOW = datetime.now(timezone.utc)

# -- who may call what (docs/api.md) -------------------------------------------------------------

READERS = ("admin", "read")
PRIVACY = ("admin", "privacy")
ADMIN = ("admin",)
ALLOWED: dict[str, tuple[str, ...]] = {
    # profiles
    "search_profiles": READERS, "get_profile": READERS, "profile_events": READERS,
    # consent
    "profile_consent": ("admin", "read", "privacy"), "record_consent": PRIVACY,
    # data-subject requests
    "submit_privacy_request": PRIVACY, "list_privacy_requests": PRIVACY,
    "get_privacy_request": PRIVACY, "cancel_privacy_request": PRIVACY,
    "download_privacy_archive": PRIVACY, "process_privacy_requests": PRIVACY,
    # keys, audit, retention
    "list_audit": PRIVACY, "list_keys": ADMIN, "create_key": ADMIN, "revoke_key": ADMIN,
    "retention_rules": ADMIN, "run_retention": ADMIN,
    # segments and traits: the reads
    "list_segments": READERS, "get_segment": READERS, "segment_members": READERS,
    "segment_changes": READERS, "export_segment": READERS, "preview_segment": READERS,
    "segment_overlap": READERS, "list_traits": READERS, "get_trait": READERS,
}
# Routes a generated path can land on besides the fuzzed ones (a segment id "x/members" …).
OTHER_ROUTES = {"update_segment": ADMIN, "delete_segment": ADMIN, "create_segment": ADMIN,
                "refresh_segments": ADMIN, "define_trait": ADMIN, "delete_trait": ADMIN}
ROLES = ("none", "unknown", "write", "read", "privacy", "admin")   # refused ones first

# -- the documented answers (docs/api.md) --------------------------------------------------------

STR, INT, NUM, OBJ, ARR = ({"type": "string"}, {"type": "integer"}, {"type": "number"},
                           {"type": "object"}, {"type": "array"})
NSTR = {"type": ["string", "null"]}


def obj(required: dict[str, Any], exact: bool = False) -> dict[str, Any]:
    schema = {"type": "object", "required": list(required), "properties": required}
    if exact:
        schema["additionalProperties"] = False
    return schema


def listing(key: str, item: dict[str, Any], **more: Any) -> dict[str, Any]:
    return obj({key: {"type": "array", "items": item}, **more})


ERROR = {"type": "object", "required": ["code", "message"], "additionalProperties": False,
         "properties": {"code": STR, "message": STR,
                        "errors": {"type": "array", "items": obj({"path": STR, "message": STR})}}}
REFUSAL = obj({"code": {"enum": ["unauthorized", "forbidden"]}, "message": STR}, exact=True)
PROFILE = obj({"profile_id": STR, "created_at": STR, "first_seen": NSTR, "last_seen": NSTR,
               "identities": ARR, "traits": OBJ, "aliases": ARR, "merges": ARR, "kept_out": ARR,
               "events": obj({"total": INT, "by_channel": OBJ, "by_type": OBJ})})
CONSENT_VIEW = obj({"profile_id": STR, "history": ARR, "purposes": {
    "type": "object", "additionalProperties": obj({
        "status": NSTR, "allowed": {"type": "boolean"}, "since": NSTR, "lawful_basis": NSTR})}})
PRIVACY_REQUEST = obj({
    "request_id": STR, "type": STR, "status": {"enum": ["pending", "in_progress", "completed",
                                                         "cancelled", "failed"]},
    "identities": {"type": "array", "items": obj({"type": STR, "hash": STR}, exact=True)},
    "received_time": STR, "expected_completion_time": STR, "started_time": NSTR,
    "completed_time": NSTR, "cancelled_time": NSTR, "requested_by": NSTR,
    "has_detail": {"type": "boolean"}, "result": {"type": ["object", "null"]}, "error": NSTR})
KEY_ROW = obj({"key_id": STR, "role": {"enum": ["admin", "write", "read", "privacy"]},
               "source": NSTR, "label": NSTR, "created_at": STR, "revoked_at": NSTR,
               "revoked": {"type": "boolean"}})
KEY_ROW["not"] = {"anyOf": [{"required": ["key"]}, {"required": ["key_hash"]}]}
SEGMENT = obj({"id": STR, "name": STR, "description": NSTR, "definition": OBJ, "origin": STR,
               "size": INT, "created_at": STR, "updated_at": STR, "computed_at": NSTR})
TRAIT = obj({"name": STR, "definition": OBJ, "origin": STR, "computed_at": NSTR})
SHAPES: dict[str, dict[str, Any]] = {
    "get_profile": PROFILE,
    "profile_events": obj({"profile_id": STR, "events": ARR, "next_cursor": NSTR}),
    "search_profiles": listing("profiles", obj({"profile_id": STR, "identities": ARR,
                                                "traits": OBJ}), count=INT),
    "profile_consent": CONSENT_VIEW, "record_consent": CONSENT_VIEW,
    "submit_privacy_request": obj({"request_id": STR, "type": STR, "status": {"const": "pending"},
                                   "received_time": STR, "expected_completion_time": STR},
                                  exact=True),
    "list_privacy_requests": listing("requests", PRIVACY_REQUEST),
    "get_privacy_request": PRIVACY_REQUEST,
    "cancel_privacy_request": {**PRIVACY_REQUEST, "properties": {
        **PRIVACY_REQUEST["properties"], "status": {"const": "cancelled"}}},
    "process_privacy_requests": listing("requests", PRIVACY_REQUEST),
    "list_audit": listing("entries", obj({"audit_id": INT, "occurred_at": STR, "actor": STR,
                                          "action": STR, "subject": NSTR, "detail": {}}),
                          next_after={"type": ["integer", "null"]}),
    "list_keys": listing("keys", KEY_ROW),
    "create_key": {"allOf": [obj({"key": {"type": "string", "pattern": "^kb_"}}),
                             {**KEY_ROW, "not": {"required": ["key_hash"]}}]},
    "revoke_key": {**KEY_ROW, "properties": {**KEY_ROW["properties"],
                                             "revoked": {"const": True}}},
    "retention_rules": listing("rules", obj({"name": STR, "target": STR, "keep_days": NUM})),
    "run_retention": obj({"dry_run": {"type": "boolean"}, "rules": ARR, "totals": OBJ,
                          "rebuild": {}, "segments": {}}),
    "list_segments": listing("segments", SEGMENT),
    "get_segment": SEGMENT,
    "segment_members": listing("profiles", obj({"profile_id": STR, "traits": OBJ}),
                               segment_id=STR, next_cursor=NSTR),
    "segment_changes": listing("changes", obj({
        "seq": INT, "occurred_at": STR, "kind": {"enum": ["segment.entered", "segment.exited"]},
        "profile_id": STR, "segment_id": STR}), next_after={"type": ["integer", "null"]}),
    "preview_segment": obj({"size": INT, "took_ms": NUM}),
    "segment_overlap": listing("segments", obj({"id": STR, "size": INT}), pairs={
        "type": "array", "items": obj({"a": STR, "b": STR, "shared": INT, "union": INT,
                                       "jaccard": NUM})}),
    "list_traits": listing("traits", TRAIT),
    "get_trait": TRAIT,
}
# What FastAPI answers, before any key is looked at, for a JSON body that does not parse.
BODY_PARSE_ERRORS = ((422, r"body(\.\d+)?: JSON decode error"),
                     (400, r"There was an error parsing the body"))
FILE_TYPES = {"download_privacy_archive": ("application/zip",),
              "export_segment": ("text/csv", "application/x-ndjson",
                                 "application/vnd.apache.parquet")}

# -- the people ----------------------------------------------------------------------------------


def ago(minutes: float) -> str:
    return (NOW - timedelta(minutes=minutes)).isoformat()


def person(user: str, email: str, phone: str, city: str, orders: int) -> list[dict]:
    msgs = [{"type": "page", "anonymousId": f"cookie-{user}", "name": "Home",
             "timestamp": ago(200)},
            {"type": "identify", "userId": user, "anonymousId": f"cookie-{user}",
             "traits": {"email": email, "phone": phone, "city": city, "first_name": user[:4]},
             "timestamp": ago(190)}]
    msgs += [{"type": "track", "userId": user, "event": "Order Completed",
              "properties": {"revenue": 40 + i, "order_id": f"{user}-{i}"},
              "timestamp": ago(180 - i)} for i in range(orders)]
    return msgs


# Values at the edges: NUL (which PostgreSQL text refuses), LIKE and quoting characters, the
# last code point before the surrogates, long text; integers past 64 bits (JSON holds none).
NUL = "a\x00b"
EDGE_TEXT = [NUL, "\x00", "%", "_", "'", '"', "\\", "😀", "\ud7ff", " ", "x" * 300]
EDGE_INT = [2**63, 2**64, 10**30, -(2**63) - 1]

# Alice and Bob are the data a refused role must never see; fuzzed mutations (erasure,
# rectification, consent) aim at Vera only, so that they stay there to leak all run long.
PEOPLE = {"alice": ("alice-1", "alice@example.nl", "+31 6 1111 2222", "Utrecht", 3),
          "bob": ("bob-2", "bob@shop.nl", "+31 6 3333 4444", "Amsterdam", 1),
          "vera": ("vera-9", "vera@winkel.nl", "+31 6 5555 6666", "Utrecht", 2)}


class Fuzz:
    """The workspace behind ``collect_api``, seeded, with a key per role and pools of real ids."""

    def __init__(self, api) -> None:
        self.api, self.ws, self.client = api, api.workspace, api.client
        with self.ws.engine.transaction() as tx:
            read, privacy = create_key(tx, "read"), create_key(tx, "privacy")
        self.keys = {"none": None, "unknown": f"kb_admin_{secrets.token_urlsafe(24)}",
                     "write": api.write_key, "read": read, "privacy": privacy,
                     "admin": api.admin_key}
        self.tally: dict[str, Counter] = defaultdict(Counter)     # op -> role -> requests
        self.statuses: dict[str, Counter] = defaultdict(Counter)  # op -> status -> requests
        self.findings: list[str] = []
        self.kinds: Counter = Counter()   # findings per kind: server_error, role, leak, shape
        self.early_parse_errors = 0
        self.seconds = 0.0
        self._seed()

    def note(self, kind: str, op_id: str, role: str, finding: str) -> None:
        self.kinds[kind] += 1
        self.findings.append(f"[{kind}] {op_id} as {role}: {finding}")

    def call(self, method: str, path: str, role: str = "admin", **kw):
        return self.client.request(method, path, headers=self.auth(role), **kw)

    def auth(self, role: str, basic: bool = False) -> dict[str, str]:
        key = self.keys[role]
        if key is None:
            return {}
        if basic:
            return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        return {"Authorization": f"Bearer {key}"}

    def _seed(self) -> None:
        for source in ("web", "app"):
            batch = [m for user, email, phone, city, orders in PEOPLE.values()
                     for m in person(user, email, phone, city, orders)] if source == "web" else [
                {"type": "track", "userId": user, "event": "App Opened", "timestamp": ago(100)}
                for user, *_ in PEOPLE.values()]
            r = self.api.post("/v1/batch", {"batch": batch}, key=self.api.write_keys[source])
            assert r.status_code == 200 and not r.json()["failed"], r.text
        self.ws.resolve()
        self.pids = {name: self.ws.engine.fetchone(
            "SELECT profile_id FROM identifiers WHERE id_type = 'user_id' AND id_value = $u",
            {"u": user})[0] for name, (user, *_) in PEOPLE.items()}

        r = self.call("POST", "/v1/segments", json={"name": "Utrecht buyers", "definition": {
            "and": [{"trait": "city", "op": "=", "value": "Utrecht"},
                    {"event": "Order Completed", "count": {"at_least": 2}}]}})
        assert r.status_code == 201, r.text
        self.segment = r.json()["id"]
        r = self.call("POST", "/v1/privacy/consent", "privacy", json={
            "identifier": "email:alice@example.nl", "purposes": {"email_marketing": "granted"},
            "proof": "form-1"})
        assert r.status_code == 200, r.text

        def submit(kind: str, user: str) -> str:
            r = self.call("POST", "/v1/privacy/requests", "privacy", json={
                "type": kind, "identities": [{"type": "user_id", "value": user}]})
            assert r.status_code == 201, r.text
            return r.json()["request_id"]

        self.access_request = submit("access", "alice-1")
        done = self.call("POST", "/v1/privacy/process", "privacy").json()["requests"]
        assert [d["status"] for d in done] == ["completed"], done
        assert self.call("GET", f"/v1/privacy/requests/{self.access_request}/download",
                         "privacy").status_code == 200
        self.pending_request = submit("restriction", "vera-9")

        made = [self.call("POST", "/v1/keys", json={"role": "read", "label": f"spare {i}"})
                for i in range(2)]
        assert all(r.status_code == 201 for r in made), [r.text for r in made]
        own = [k["key_id"] for k in self.call("GET", "/v1/keys").json()["keys"]
               if k["role"] == "admin"]
        # Revocable by fuzzing: the spare keys, and the admin's own (409: not itself).
        self.key_ids = [r.json()["key_id"] for r in made] + own

        # What a refused role must never see, and no answer at all may hold.
        self.secrets = [v for name in ("alice", "bob") for v in (
            PEOPLE[name][0], PEOPLE[name][1], "".join(PEOPLE[name][2].split()),
            f"cookie-{PEOPLE[name][0]}", self.pids[name])]
        self.plain_keys = [k for k in self.keys.values() if k]

    # -- real values for the generated requests --------------------------------------------------

    def refs(self, mutable: bool = False) -> list[str]:
        if mutable:
            user, email, phone, *_ = PEOPLE["vera"]
            return [f"user_id:{user}", f"email:{email}", f"phone:{phone}",
                    f"id:{self.pids['vera']}", "email:nobody@example.nl", f"user_id:{NUL}"]
        out = []
        for name, (user, email, phone, *_rest) in PEOPLE.items():
            out += [f"user_id:{user}", f"email:{email}", f"email:{email.upper()}",
                    f"phone:{phone}", f"anonymous_id:cookie-{user}", f"id:{self.pids[name]}"]
        return out + ["email:nobody@example.nl", "id:p_nope", "user_id:", "email:not-an-address",
                      "bogus:1", "id:", ":", "no-colon", "crm_id:C0012", f"user_id:{NUL}",
                      "id:\x00", f"anonymous_id:{NUL}", f"email:{NUL}@shop.nl", "user_id:%",
                      "email:'@shop.nl"]

    def path_values(self, name: str) -> list[str]:
        return {
            "ref": self.refs(),
            "request_id": [self.access_request, self.pending_request, "dsr_nope", "", NUL],
            "segment_id": [self.segment, "lead", "loyal", "new-customer", "nope", NUL],
            "name": ["order_count", "lifetime_revenue", "last_order_at", "nope", NUL],
            "key_id": [*self.key_ids, "key_nope", NUL],
        }.get(name, [])

    def query_values(self, op: str) -> st.SearchStrategy[dict[str, Any]]:
        purposes = list(self.ws.privacy_config.purposes)
        pools: dict[str, dict[str, list[Any]]] = {
            "search_profiles": {"identifier": ["email:alice", "email:", "user_id:vera", "x",
                                               "phone:+316", "bogus:1", "email:%", "user_id:_",
                                               f"user_id:{NUL}"],
                                "trait.city": ["Utrecht", "Amsterdam", "", *EDGE_TEXT],
                                "trait.first_name": ["alic"], f"trait.{NUL}": ["x"],
                                "limit": [1, 500, 0, 501]},
            "profile_events": {"channel": ["web", "app", "pos", NUL],
                               "type": ["track", "identify", NUL],
                               "event": ["Order Completed", "App Opened", NUL], "limit": [1, 1000],
                               "cursor": ["", "abc", "eyJ4IjoxfQ==", "MTIz", NUL]},
            "list_privacy_requests": {"status": ["pending", "completed", "nope"],
                                      "limit": [1, 1000, 0]},
            "list_audit": {"action": ["privacy.", "consent.update", "identity.", ".", "%", NUL],
                           "actor": ["key:x", "schedule", NUL], "since": [
                               ago(60), "2020-01-01", "not-a-date", "2020-13-45", "0001-01-01",
                               "9999-12-31T23:59:59+14:00", NUL],
                           "after": [0, 1, 10**12, *EDGE_INT], "limit": [1, 10000]},
            "segment_members": {"limit": [1, 10000], "cursor": ["", "p_", "zzz", NUL],
                                "traits": ["city,order_count", "nope,", NUL, "x" * 300]},
            "segment_changes": {"after": [0, 1, 2**62, *EDGE_INT], "limit": [1, 10000]},
            "export_segment": {"purpose": [*purposes, "nope", "", NUL],
                               "format": ["csv", "jsonl", "parquet"],
                               "traits": ["city,order_count", "nope", "", NUL],
                               "identifiers": ["email,user_id", "phone", "nope", NUL]},
        }
        pool = pools.get(op)
        if not pool:
            return st.just({})
        names = st.lists(st.sampled_from(sorted(pool)), unique=True, max_size=len(pool))
        return names.flatmap(
            lambda keys: st.fixed_dictionaries({k: st.sampled_from(pool[k]) for k in keys}))

    def bodies(self, op: str) -> st.SearchStrategy[Any] | None:
        """Bodies that name real things, for the operations that take one."""
        purposes = [*self.ws.privacy_config.purposes, "nope"]
        status = st.sampled_from(["granted", "denied", "withdrawn"])
        text = st.text(max_size=12) | st.sampled_from(EDGE_TEXT)
        edge = st.sampled_from(EDGE_TEXT + EDGE_INT)
        segments = [self.segment, "lead", "loyal", "nope", NUL]
        victim = PEOPLE["vera"]
        real_identity = st.sampled_from([{"type": "email", "value": victim[1]},
                                         {"type": "user_id", "value": victim[0]},
                                         {"type": "phone", "value": victim[2]},
                                         {"type": "email", "value": "nobody@example.nl"}])
        identity = st.one_of(
            real_identity, real_identity,
            st.fixed_dictionaries({"type": st.sampled_from(["email", "user_id", "phone"]),
                                   "value": st.sampled_from(["not-an-address", "", "+1",
                                                             "test@example.com"])}),
            st.fixed_dictionaries({"type": st.sampled_from(["email", "bogus"]),
                                   "hash": st.sampled_from(["ab" * 32, "xyz", ""])}),
            st.fixed_dictionaries({"type": text, "value": text}))
        trees = st.sampled_from([
            {"trait": "city", "op": "=", "value": "Utrecht"},
            {"event": "Order Completed", "count": {"at_least": 1}, "within_days": 90},
            {"segment": self.segment}, {"consent": "email_marketing"}, {"identifier": "email"},
            {"and": [{"trait": "lifetime_revenue", "op": ">", "value": 10}, {"not": {
                "segment": "lead"}}]},
            {"trait": "city", "op": "nope"}, {"and": []}, {"segment": "nope"}, {},
            {"trait": NUL, "op": "=", "value": NUL}, {"trait": "city", "op": "in", "value": [NUL]},
            {"trait": "lifetime_revenue", "op": ">", "value": 10**30}, {"consent": NUL},
            {"identifier": NUL}, {"segment": NUL},
            {"event": NUL, "where": [{"property": NUL, "op": "=", "value": NUL}]},
            {"event": "Order Completed", "between_days": [1, 10**8]},
            {"event": "Order Completed", "within_days": 10**30},
            {"event": "Order Completed", "count": {"at_least": 2**64}},
            {"trait": "last_order_at", "op": "within_last_days", "value": 10**30},
            {"trait": "last_order_at", "op": "before", "value": "0001-01-01"}])
        return {
            "record_consent": st.fixed_dictionaries(
                {"identifier": st.sampled_from(self.refs(mutable=True) + ["bogus:1", "x"]),
                 "purposes": st.dictionaries(st.sampled_from(purposes), status, min_size=1,
                                             max_size=3) | st.just({})},
                optional={"lawful_basis": st.sampled_from(["consent", "contract", "", NUL]),
                          "proof": st.one_of(st.none(), text, edge,
                                             st.dictionaries(text, text | edge))}),
            "submit_privacy_request": st.fixed_dictionaries(
                {"type": st.sampled_from(["access", "portability", "erasure", "rectification",
                                          "restriction", "objection", "nope"]),
                 "identities": st.lists(identity, min_size=1, max_size=3) | st.just([])},
                optional={"detail": st.one_of(st.none(), st.fixed_dictionaries({
                    "traits": st.dictionaries(st.sampled_from(["city", "first_name", "email"]),
                                              st.one_of(text, st.integers(), st.none(), edge))}),
                    st.dictionaries(text, text))}),
            "create_key": st.fixed_dictionaries(
                {"role": st.sampled_from(["admin", "read", "privacy", "write", "owner"])},
                optional={"source": st.sampled_from(["web", "app", "nope", "", NUL]),
                          "label": st.one_of(text, st.text(min_size=201, max_size=205))}),
            "run_retention": st.fixed_dictionaries({}, optional={"dry_run": st.booleans()}),
            "preview_segment": st.fixed_dictionaries({"definition": trees}),
            "segment_overlap": st.fixed_dictionaries({"segments": st.lists(
                st.sampled_from(segments), unique=True, min_size=2, max_size=4)
                | st.lists(st.sampled_from(segments), max_size=3)}),
        }.get(op)


# -- the fuzzer ----------------------------------------------------------------------------------


@cache
def operations() -> dict[str, Any]:
    from klantbeeld.app import create_app

    schema = schemathesis.openapi.from_dict(create_app().openapi())
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        op_id = operation.definition.raw.get("operationId")
        if op_id in ALLOWED:
            found[op_id] = operation
    missing = set(ALLOWED) - set(found)
    assert not missing, f"operations gone from the OpenAPI document: {missing}"
    return found


@cache
def strategy(op_id: str, mode: str):
    return operations()[op_id].as_strategy(generation_mode=GenerationMode(mode))


class Recorder:
    """The app as the fuzzer calls it: notes the route each request was given to."""

    def __init__(self, app) -> None:
        self.app, self.route = app, None

    async def __call__(self, scope, receive, send) -> None:
        self.route = None
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.route = scope.get("route")   # set by the router that took the request


def prepared(case, body: Any) -> requests.PreparedRequest:
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    if body is not None:
        kwargs.pop("json", None)
        kwargs.pop("data", None)
        kind, value = body
        if kind == "json":
            kwargs["json"] = value
        else:
            kwargs["data"] = value
            kwargs["headers"]["Content-Type"] = kind
    known = {"method", "url", "headers", "params", "json", "data", "files", "cookies"}
    return requests.Request(**{k: v for k, v in kwargs.items() if k in known}).prepare()


def is_json(body: bytes | str | None) -> bool:
    try:
        json.loads(body or b"")
        return True
    except ValueError:
        return False


class Check:
    """Sends one generated request as every role and judges the answers."""

    def __init__(self, fuzz: Fuzz) -> None:
        self.fuzz = fuzz
        # A second client on the same app, its lifespan already run by collect_api's client.
        self.recorder = Recorder(fuzz.client.app)
        self.client = TestClient(self.recorder)

    def __call__(self, op_id: str, request: requests.PreparedRequest, basic: bool) -> None:
        """Findings are noted, not raised: one run reports every problem it meets."""
        fuzz = self.fuzz
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("authorization", "content-length", "host")}
        url = request.url.removeprefix("http://testserver")
        sent = f"{request.method} {url}" + (f" body {request.body[:200]!r}" if request.body
                                            else "")
        for role in ROLES:
            started = time.perf_counter()
            try:
                r = self.client.request(request.method, url, content=request.body,
                                        headers={**headers, **fuzz.auth(role, basic)})
            except Exception as exc:   # raise_server_exceptions: a server would answer 500
                fuzz.tally[op_id][role] += 1
                fuzz.statuses[op_id][500] += 1
                fuzz.note("server_error", op_id, role,
                          f"{sent} raised {type(exc).__name__}: {exc}\n"
                          + traceback.format_exc(limit=-6))
                continue
            finally:
                fuzz.seconds += time.perf_counter() - started
            fuzz.tally[op_id][role] += 1
            fuzz.statuses[op_id][r.status_code] += 1
            try:
                self.judge(op_id, role, r, request)
            except AssertionError as exc:
                kind, _, what = str(exc).partition(": ")
                fuzz.note(kind, op_id, role, f"{sent} → {r.status_code} {r.text[:300]}\n  {what}")

    def judge(self, op_id: str, role: str, r, request) -> None:
        """Raises AssertionError("KIND: what"), KIND one of server_error, role, leak, shape."""
        fuzz = self.fuzz
        assert r.status_code < 500, "server_error: a 5xx"
        text = r.text
        for key in fuzz.plain_keys:
            assert key not in text, "leak: an answer holds a key in plain text"
        route = self.recorder.route
        if route is None or r.request.method not in (getattr(route, "methods", None) or ()):
            # No route has this path (404), or not for this method (405): the same for everyone.
            assert r.status_code == (404 if route is None else 405), "role: expected 404 or 405"
            conform(r, ERROR)
            return
        routed = getattr(route, "operation_id", None) or route.name
        admitted = ALLOWED.get(routed) or OTHER_ROUTES.get(routed)
        assert admitted is not None, f"role: landed on route {routed!r}, unknown to the test"
        if role not in admitted:
            body = conform(r, ERROR)
            if not is_json(request.body) and any(
                    r.status_code == status and re.fullmatch(message, body["message"])
                    for status, message in BODY_PARSE_ERRORS):
                # FastAPI reads a JSON body before any dependency runs: a body that is not JSON
                # is refused before the key is looked at, and nothing but that is said.
                fuzz.early_parse_errors += 1
            else:
                expected = 401 if role in ("none", "unknown") else 403
                assert r.status_code == expected, f"role: a {role} key must get {expected} here"
                conform(r, REFUSAL, "role")
            for secret in fuzz.secrets:
                assert secret not in text, f"leak: a refused {role} key got {secret!r}"
            return
        assert r.status_code not in (401, 403), f"role: a {role} key is refused where admitted"
        if r.status_code >= 300 or r.status_code == 204:
            if r.status_code != 204:
                conform(r, ERROR)
            return
        if routed in FILE_TYPES:
            media = r.headers["content-type"].split(";")[0]
            assert media in FILE_TYPES[routed], f"shape: answered as {media}"
            if routed == "download_privacy_archive":
                assert r.content.startswith(b"PK"), "shape: not a ZIP"
            return
        if routed in SHAPES:
            conform(r, SHAPES[routed])


def conform(r, schema: dict[str, Any], kind: str = "shape") -> Any:
    """The answer's JSON, if it has the shape; AssertionError("KIND: …") if not."""
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"{kind}: not JSON") from None
    try:
        jsonschema.validate(body, schema)
    except jsonschema.ValidationError as exc:
        raise AssertionError(f"{kind}: not the documented shape: {exc.message} at "
                             f"{list(exc.absolute_path)}") from None
    return body


JUNK = st.one_of(
    st.tuples(st.just("application/json"), st.binary(max_size=40)),
    st.tuples(st.sampled_from(["text/plain", "application/x-www-form-urlencoded",
                               "application/octet-stream"]), st.binary(max_size=40)),
    st.tuples(st.just("json"), st.recursive(
        st.none() | st.booleans() | st.integers() | st.text()
        | st.floats(allow_nan=False, allow_infinity=False),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8)))


def fuzz_operation(fuzz: Fuzz, op_id: str, examples: int) -> None:
    operation = operations()[op_id]
    check = Check(fuzz)
    has_inputs = bool(operation.path_parameters or operation.query or operation.body)
    modes = ["positive", "negative"] if has_inputs else ["positive"]
    path_names = [p.name for p in operation.path_parameters]
    crafted = fuzz.bodies(op_id)
    takes_body = bool(operation.body)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=DERANDOMIZE,
              phases=[Phase.generate], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data) -> None:
        mode = data.draw(st.sampled_from(modes), label="mode")
        case = data.draw(strategy(op_id, mode), label="case")
        for name in path_names:
            pool = fuzz.path_values(name)
            if pool and data.draw(st.booleans(), label=f"real {name}"):
                case.path_parameters = {**(case.path_parameters or {}),
                                        name: data.draw(st.sampled_from(pool), label=name)}
        extra = data.draw(fuzz.query_values(op_id), label="query")
        if extra:
            case.query = {**(case.query or {}), **extra}
        body = None
        if takes_body:
            choice = data.draw(st.sampled_from(["schema", "crafted", "junk"] if crafted is not None
                                               else ["schema", "junk"]), label="body from")
            if choice == "crafted":
                body = ("json", data.draw(crafted, label="body"))
            elif choice == "junk":
                body = data.draw(JUNK, label="body")
        basic = data.draw(st.booleans(), label="basic auth")
        check(op_id, prepared(case, body), basic)

    run()


def write_report(fuzz: Fuzz, engine: str, took: float) -> None:
    lines = [f"fuzzed {engine}: {sum(sum(c.values()) for c in fuzz.tally.values())} requests in "
             f"{took:.1f} s ({fuzz.seconds:.1f} s in the app), "
             f"{sum(c[s] for c in fuzz.statuses.values() for s in c if s >= 500)} server errors; "
             f"findings: {dict(fuzz.kinds) or 'none'}; "
             f"{fuzz.early_parse_errors} refused as bad JSON before the key"]
    lines.append(f"{'endpoint':28}" + "".join(f"{r:>9}" for r in ROLES) + "   statuses")
    for op in ALLOWED:
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(fuzz.statuses[op].items()))
        lines.append(f"{op:28}" + "".join(f"{fuzz.tally[op][r]:>9}" for r in ROLES)
                     + f"   {statuses}")
    print("\n".join(lines))
    if REPORT:
        try:
            with open(REPORT) as f:
                report = json.load(f)
        except (OSError, ValueError):
            report = {}
        report[engine] = {
            "examples_per_endpoint": EXAMPLES, "seconds": round(took, 1),
            "requests": {op: dict(fuzz.tally[op]) for op in ALLOWED},
            "statuses": {op: {str(s): n for s, n in fuzz.statuses[op].items()} for op in ALLOWED},
            "findings_per_kind": dict(fuzz.kinds), "findings": fuzz.findings,
            "refused_as_bad_json_before_key": fuzz.early_parse_errors}
        with open(REPORT, "w") as f:
            json.dump(report, f, indent=1)


def test_fuzz_privacy_profile_and_segment_endpoints(collect_api, database_url):
    started = time.perf_counter()
    fuzz = Fuzz(collect_api)
    try:
        for op_id in ALLOWED:
            fuzz_operation(fuzz, op_id, EXAMPLES)
    finally:
        write_report(fuzz, database_url.split(":", 1)[0], time.perf_counter() - started)
    assert not fuzz.findings, f"{len(fuzz.findings)} findings:\n" + "\n".join(fuzz.findings[:20])
    # Every role was tried on every endpoint, and the seeded data is still there to leak.
    assert all(fuzz.tally[op][role] for op in ALLOWED for role in ROLES)
    for name in ("alice", "bob"):
        assert fuzz.call("GET", f"/v1/profiles/id:{fuzz.pids[name]}", "read").status_code == 200
