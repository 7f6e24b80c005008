"""Retention on both engines: rules validate on load; a dry run counts and deletes nothing; a run
deletes exactly what expired — per source, channel and event name, failed events, a sent trait —
and profiles, traits and segment memberships follow; the CLI prints the same counts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from conftest import Cli, feed

from klantbeeld.privacy.config import PrivacyConfigError, load_privacy_config
from klantbeeld.privacy.retention import RetentionError, plan, run
from klantbeeld.profiles.lookup import get_profile, resolve_ref
from klantbeeld.profiles.materialise import display
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

NOW = datetime.now(timezone.utc)

RULES = """
retention:
  - name: app-screens        # source and event: both must match
    source: app
    event: Screen Viewed
    keep_days: 30
  - name: web
    channel: web
    keep_days: 400
  - name: dmp
    channel: dmp
    keep_days: 90
  - name: failed
    failed_events: true
    keep_days: 7
  - name: phone
    trait: phone
    keep_days: 365
"""


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def order(user: str, days: float) -> dict:
    return {"type": "track", "userId": user, "event": "Order Completed",
            "properties": {"revenue": 25}, "timestamp": ago(days)}


def screen(user: str, days: float) -> dict:
    return {"type": "track", "userId": user, "event": "Screen Viewed", "timestamp": ago(days)}


def open_ws(home, database_url) -> Workspace:
    return Workspace.open(load_settings(home=home, database_url=database_url))


@pytest.fixture
def home(database_url, tmp_path):
    """A workspace with sources web, app and dmp; events of every age; two failed events."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "privacy.yaml").write_text(RULES)
    with open_ws(home, database_url) as ws:
        ws.init(["web", "app", "dmp"])
        feed(ws, [
            {"type": "identify", "userId": "u1", "timestamp": ago(10),
             "traits": {"email": "u1@shop.nl", "phone": "+31612345678", "city": "Utrecht"}},
            order("u1", 600),                               # app orders: no rule, kept
            {"type": "identify", "userId": "u2", "timestamp": ago(500),
             "traits": {"email": "u2@shop.nl", "phone": "+31687654321", "city": "Delft"}},
            {"type": "identify", "userId": "u3", "timestamp": ago(50),
             "traits": {"email": "u3@shop.nl"}},
            screen("u3", 40),                               # expired (app-screens)
            screen("u3", 10),
        ], tmp_path, source="app")
        feed(ws, [order("u1", 500), order("u1", 450),       # expired (web)
                  order("u1", 100),
                  order("u2", 420), order("u2", 410),       # expired: u2's only orders
                  screen("u3", 40)],                        # web: 400 days, kept
             tmp_path, source="web")
        feed(ws, [{"type": "track", "anonymousId": "dmp-1", "event": "Audience Matched",
                   "timestamp": ago(100)},                  # expired (dmp)
                  {"type": "track", "anonymousId": "dmp-1", "event": "Audience Matched",
                   "timestamp": ago(30)}], tmp_path, source="dmp")
        (web,) = ws.engine.fetchone("SELECT source_id FROM sources WHERE name = 'web'")
        for days in (30, 1):
            at = NOW - timedelta(days=days)
            ws.engine.execute(
                "INSERT INTO failed_events (source_id, origin, received_at, reason_code, reason, "
                "payload, status, attempts, last_attempt_at) VALUES ($s, 'http', $at, "
                "'invalid_json', 'not JSON', '{', 'failed', 1, $at)", {"s": web, "at": at})
    return home


def counts(ws) -> dict[str, int]:
    rows = ws.engine.fetchall("SELECT s.name, count(*) FROM events e JOIN sources s "
                              "ON s.source_id = e.source_id GROUP BY s.name")
    return dict(rows)


def trait(ws, ref: str, name: str):
    pid = resolve_ref(ws, ref)
    row = ws.engine.fetchone("SELECT value, num, txt, ts FROM profile_traits WHERE "
                             "profile_id = $p AND name = $n", {"p": pid, "n": name})
    return None if row is None else display(*row)


def members(ws, segment: str) -> set[str]:
    return {r[0] for r in ws.engine.fetchall(
        "SELECT i.id_value FROM segment_members m JOIN identifiers i ON i.profile_id = "
        "m.profile_id WHERE m.segment_id = $s AND i.id_type = 'user_id'", {"s": segment})}


EXPECTED = {"app-screens": {"events_deleted": 1}, "web": {"events_deleted": 4},
            "dmp": {"events_deleted": 1}, "failed": {"failed_events_deleted": 1},
            "phone": {"events_rewritten": 1, "trait_rows_deleted": 1}}


def by_rule(report: dict) -> dict[str, dict[str, int]]:
    keys = ("events_deleted", "failed_events_deleted", "events_rewritten", "trait_rows_deleted",
            "internal_events_deleted")
    found = {r["rule"]: {k: r[k] for k in keys if r[k]} for r in report["rules"]}
    return {rule: c for rule, c in found.items() if c}


def test_dry_run_counts_and_run_deletes_exactly_what_expired(home, database_url):
    with open_ws(home, database_url) as ws:
        ws.resolve()
        before = counts(ws)
        assert before == {"app": 6, "web": 6, "dmp": 2}
        u1 = resolve_ref(ws, "user_id:u1")
        assert get_profile(ws, u1)["events"]["total"] == 5
        assert trait(ws, "user_id:u1", "order_count") == 4
        assert trait(ws, "user_id:u2", "order_count") == 2
        assert "u1" in members(ws, "loyal") and "u2" in members(ws, "repeat-customer")

        noted = [ws.engine.fetchone(f"SELECT source_id, message_id FROM events WHERE {where}")
                 for where in ("user_id = 'u2' AND type = 'track'",      # expires
                               "user_id = 'u1' AND channel = 'app' AND type = 'track'")]
        for sid, mid in noted:   # tracking-plan violations recorded for two events
            ws.engine.execute("INSERT INTO plan_violations VALUES ($s, $m, 'track', "
                              "'Order Completed', '[]', $at)", {"s": sid, "m": mid, "at": NOW})

        dry = run(ws, dry_run=True, now=NOW)
        assert by_rule(dry) == EXPECTED
        assert [r["rule"] for r in plan(ws, NOW)] == list(EXPECTED)
        assert counts(ws) == before                                   # nothing deleted
        assert trait(ws, "user_id:u2", "phone") == "+31687654321"

        done = run(ws, now=NOW)
        assert by_rule(done) == EXPECTED
        assert done["totals"]["events_deleted"] == 6 and done["rebuild"] is not None
        assert counts(ws) == {"app": 5, "web": 2, "dmp": 1}
        left = ws.engine.fetchall(
            "SELECT s.name, e.event, e.user_id FROM events e JOIN sources s "
            "ON s.source_id = e.source_id WHERE e.type = 'track' ORDER BY e.\"timestamp\"")
        assert left == [("app", "Order Completed", "u1"), ("web", "Order Completed", "u1"),
                        ("web", "Screen Viewed", "u3"), ("dmp", "Audience Matched", None),
                        ("app", "Screen Viewed", "u3")]
        assert ws.engine.fetchone("SELECT count(*) FROM failed_events")[0] == 1
        assert ws.engine.fetchall("SELECT message_id FROM plan_violations") == [(noted[1][1],)]
        orphans = ws.engine.fetchone("SELECT count(*) FROM identity_links l WHERE NOT EXISTS "
                                     "(SELECT 1 FROM events e WHERE e.seq = l.seq)")[0]
        assert orphans == 0

        # derived data followed: the timeline, traits, computed traits and memberships
        assert resolve_ref(ws, "user_id:u1") == u1                    # the profile id is stable
        profile = get_profile(ws, u1)
        assert profile["events"]["total"] == 3
        assert profile["events"]["by_channel"] == {"app": 2, "web": 1}
        assert trait(ws, "user_id:u1", "order_count") == 2
        assert trait(ws, "user_id:u2", "order_count") in (0, None)   # no orders left
        assert "u1" not in members(ws, "loyal") and "u1" in members(ws, "repeat-customer")
        assert "u2" not in members(ws, "repeat-customer") and "u2" in members(ws, "lead")
        # the sent trait older than a year is gone, newer ones and other traits stay
        assert trait(ws, "user_id:u2", "phone") is None
        assert trait(ws, "user_id:u2", "city") == "Delft"
        assert trait(ws, "user_id:u1", "phone") == "+31612345678"
        assert ws.engine.fetchone("SELECT count(*) FROM identifiers WHERE id_type = 'phone'")[0] \
            == 1
        payload = orjson.loads(ws.engine.fetchone(
            "SELECT payload FROM events WHERE user_id = 'u2' AND type = 'identify'")[0])
        assert payload["traits"] == {"email": "u2@shop.nl", "city": "Delft"}

        # nothing left to do: a second run deletes nothing and rebuilds nothing
        again = run(ws, now=NOW)
        assert by_rule(again) == {} and again["rebuild"] is None
        audit = ws.engine.fetchall("SELECT actor, detail FROM audit_log "
                                   "WHERE action = 'retention.run' ORDER BY audit_id")
        assert len(audit) == 3
        detail = orjson.loads(audit[1][1])
        assert detail["dry_run"] is False and detail["rules"]["web"] == {"events_deleted": 4}


def test_small_batches_delete_the_same(home, database_url):
    with open_ws(home, database_url) as ws:
        ws.resolve()
        lines = []
        report = run(ws, now=NOW, batch_rows=1, progress=lines.append)
        assert by_rule(report) == EXPECTED
        assert counts(ws) == {"app": 5, "web": 2, "dmp": 1}
        assert any("so far" in line for line in lines)


def test_trait_rule_alone_refreshes_traits_without_rebuilding(database_url, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "privacy.yaml").write_text(
        "retention:\n  - {name: birthdays, trait: birth_date, keep_days: 30}\n")
    with open_ws(home, database_url) as ws:
        ws.init(["crm"])
        feed(ws, [
            {"type": "identify", "userId": "a", "timestamp": ago(90),
             "traits": {"birth_date": "1980-01-01", "city": "Delft"}},
            {"type": "identify", "userId": "b", "timestamp": ago(90),
             "traits": {"birth_date": "1990-01-01"}},
            {"type": "identify", "userId": "b", "timestamp": ago(5),
             "traits": {"birth_date": "1990-02-02"}},
            {"type": "track", "userId": "a", "event": "Viewed", "timestamp": ago(60),
             "context": {"traits": {"birth_date": "1980-01-01"}}},
        ], tmp_path, source="crm")
        ws.resolve()
        dry = run(ws, dry_run=True, now=NOW)
        assert by_rule(dry) == {"birthdays": {"events_rewritten": 3, "trait_rows_deleted": 1}}
        report = run(ws, now=NOW)
        assert by_rule(report) == by_rule(dry) and report["rebuild"] is None
        assert trait(ws, "user_id:a", "birth_date") is None
        assert trait(ws, "user_id:a", "city") == "Delft"
        assert trait(ws, "user_id:b", "birth_date") == "1990-02-02"
        track = orjson.loads(ws.engine.fetchone(
            "SELECT payload FROM events WHERE type = 'track'")[0])
        assert track["context"]["traits"] == {}


def test_one_run_at_a_time_across_server_processes(home, database_url):
    if database_url.startswith("duckdb"):
        pytest.skip("a DuckDB file has one process")
    import psycopg

    from klantbeeld.privacy.retention import LOCK_KEY

    with open_ws(home, database_url) as ws, psycopg.connect(database_url,
                                                             autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema()))", (LOCK_KEY,))
        report = run(ws, now=NOW)              # another process holds the run: skipped
        assert report["skipped"] and report["rules"] == []
        assert counts(ws) == {"app": 6, "web": 6, "dmp": 2}
        other.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (LOCK_KEY,))
        assert by_rule(run(ws, dry_run=True, now=NOW)) == EXPECTED


def test_cli_retention_run_and_show(home, database_url):
    cli = Cli(home, database_url)
    shown = cli.json("retention", "show")
    assert [r["name"] for r in shown["rules"]] == list(EXPECTED)
    assert shown["rules"][0] == {"name": "app-screens", "target": "events", "keep_days": 30,
                                 "source": "app", "event": "Screen Viewed"}
    with open_ws(home, database_url) as ws:
        ws.resolve()
    dry = cli.json("retention", "run", "--dry-run")
    assert dry["dry_run"] is True and by_rule(dry) == EXPECTED
    text = cli("retention", "run", "--dry-run").output
    assert "would be deleted" in text and "app-screens" in text
    with open_ws(home, database_url) as ws:
        assert counts(ws) == {"app": 6, "web": 6, "dmp": 2}
    done = cli.json("retention", "run")
    assert by_rule(done) == EXPECTED
    audit = cli.json("audit", "--action", "retention.run")["entries"]
    assert [e["detail"]["dry_run"] for e in audit] == [True, True, False]
    assert all(e["actor"].startswith("cli") for e in audit)


def test_a_rule_naming_an_unknown_source_fails_naming_the_rule(database_url, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "privacy.yaml").write_text(
        "retention:\n  - {name: typo, source: webb, keep_days: 10}\n")
    with open_ws(home, database_url) as ws:
        ws.init(["web"])
        with pytest.raises(RetentionError, match="'typo': no source named 'webb'"):
            run(ws, dry_run=True)
    out = Cli(home, database_url)("retention", "run", code=1).output
    assert "typo" in out and "webb" in out


@pytest.mark.parametrize("text, message", [
    ("retention: [name: x", "not valid YAML"),
    ("retention:\n  - {name: web, channel: web, keep_days: 30, keep: 1}",
     "retention 'web': unknown key 'keep'"),
    ("retention:\n  - {name: nothing, keep_days: 30}",
     "retention 'nothing': say what it applies to"),
    ("retention:\n  - {name: web, channel: web}", "retention 'web': keep_days must be"),
    ("retention:\n  - {name: web, channel: web, keep_days: 0}",
     "retention 'web': keep_days must be"),
    ("retention:\n  - {name: w, channel: webb, keep_days: 3}", "retention 'w': unknown channel"),
    ("retention:\n  - {name: t, trait: phone, source: web, keep_days: 3}",
     "retention 't': a trait rule takes no source"),
    ("retention:\n  - {name: f, failed_events: true, event: X, keep_days: 3}",
     "retention 'f': failed events are kept unparsed"),
    ("retention:\n  - {name: i, internal_events: true, channel: web, keep_days: 3}",
     "retention 'i': an internal_events rule takes no source"),
    ("retention:\n  - {name: a, channel: web, keep_days: 3}\n"
     "  - {name: a, channel: app, keep_days: 3}", "two rules are named 'a'"),
    ("retention:\n  - {name: a, trait: phone, keep_days: 3}\n"
     "  - {name: b, trait: phone, keep_days: 9}", "retention 'b': trait 'phone' has a rule"),
    ("retention:\n  - {channel: web, keep_days: 3}", "a retention rule needs a name"),
])
def test_rules_validate_on_load(tmp_path, text, message):
    path = tmp_path / "privacy.yaml"
    path.write_text(text)
    with pytest.raises(PrivacyConfigError) as err:
        load_privacy_config(path)
    assert message in str(err.value) and str(err.value).startswith("privacy.yaml:")


def test_internal_events_rule(database_url, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "privacy.yaml").write_text(
        "retention:\n  - {name: internal, internal_events: true, keep_days: 30}\n")
    with open_ws(home, database_url) as ws:
        ws.init(["web"])
        for days in (40, 1):
            ws.engine.execute("INSERT INTO internal_events (occurred_at, kind, profile_id) "
                              "VALUES ($at, 'segment.entered', 'p_x')",
                              {"at": NOW - timedelta(days=days)})
        ws.engine.execute("INSERT INTO segment_history VALUES ('s', 'p_x', $a, $b)",
                          {"a": NOW - timedelta(days=50), "b": NOW - timedelta(days=40)})
        assert by_rule(run(ws, dry_run=True)) == {"internal": {"internal_events_deleted": 1}}
        assert by_rule(run(ws)) == {"internal": {"internal_events_deleted": 1}}
        assert ws.engine.fetchone("SELECT count(*) FROM internal_events")[0] == 1
        assert ws.engine.fetchone("SELECT count(*) FROM segment_history")[0] == 0
