"""Identity resolution against a real store (DuckDB and PostgreSQL): real time, rebuild, rules."""

from __future__ import annotations

import time

import pytest
from conftest import feed, profile_of

from klantbeeld.demo.pipeline import run_demo
from klantbeeld.identity.manage import IdentityError, block_value, merge_profiles, split_identifier
from klantbeeld.identity.rebuild import rebuild
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace


def msg(n: int, kind: str = "track", **fields) -> dict:
    base = {"type": kind, "messageId": f"m-{n}", "timestamp": f"2026-05-01T10:{n // 60:02d}:{n % 60:02d}Z"}
    if kind == "track":
        base["event"] = "Product Viewed"
    return {**base, **fields}


def snapshot(ws: Workspace) -> dict:
    e = ws.engine
    return {
        "identifiers": {(t, v): p for t, v, p in e.fetchall(
            "SELECT id_type, id_value, profile_id FROM identifiers")},
        "primary": dict(e.fetchall(
            "SELECT l.seq, i.id_type || ':' || i.id_value FROM identity_links l "
            "JOIN identifiers i USING (identifier_id) WHERE l.is_primary")),
        "live": {r[0] for r in e.fetchall("SELECT profile_id FROM profiles "
                                          "WHERE merged_into IS NULL")},
        "decisions": sorted(e.fetchall("SELECT seq, id_type, id_value, reason "
                                       "FROM identity_decisions")),
    }


def test_the_server_resolves_each_event_after_its_commit(collect_api):
    r = collect_api.post("/v1/identify", {"userId": "u-1", "anonymousId": "c-1",
                                          "traits": {"email": " Jan@Example.nl"}})
    assert r.status_code == 200
    ws = collect_api.workspace
    deadline = time.monotonic() + 10
    while profile_of(ws, "email", "jan@example.nl") is None:  # no manual resolve: the writer's job
        assert time.monotonic() < deadline, "the event was not resolved after its commit"
        time.sleep(0.02)
    pid = profile_of(ws, "email", "jan@example.nl")
    assert profile_of(ws, "user_id", "u-1") == pid == profile_of(ws, "anonymous_id", "c-1")


def test_rebuild_gives_the_real_time_profiles(database_url, tmp_path):
    """Real-time resolution, file by file, of the multi-channel demo data (typos, shared devices,
    CRM duplicates) equals a rebuild from the event history, identifier for identifier."""
    settings = load_settings(home=tmp_path / "home", database_url=database_url)
    run_demo(settings, tmp_path / "data", customers=60, seed=11)
    with Workspace.open(settings) as ws:
        live = snapshot(ws)
        assert len(live["live"]) > 60 and live["identifiers"]
        figures = rebuild(ws.engine, ws.resolver)
        assert snapshot(ws) == live
        assert figures["profiles"] == len(live["live"])
        # and the resolver, reloaded, carries on where the rebuild left off
        feed(ws, [msg(1, "identify", userId="late-user", anonymousId="late-cookie")], tmp_path,
             source="webshop")
        assert profile_of(ws, "user_id", "late-user") is not None


def test_split_and_block_are_rules_the_rebuild_applies_again(workspace, tmp_path):
    ws = workspace
    ws.init(["web"])
    feed(ws, [msg(1, "identify", userId="A", anonymousId="shared-pc",
                  traits={"email": "a@x.nl"}),
              msg(2, anonymousId="shared-pc"),
              msg(3, "identify", anonymousId="c-2", traits={"email": "a@x.nl"}),
              msg(4, "identify", anonymousId="null", userId="B")], tmp_path)
    a = profile_of(ws, "user_id", "A")
    assert profile_of(ws, "anonymous_id", "shared-pc") == a == profile_of(ws, "anonymous_id", "c-2")
    assert profile_of(ws, "anonymous_id", "null") is None  # blocked by default

    result = split_identifier(ws, "anonymous_id:shared-pc", "tester", "a shared computer")
    assert result["from_profile"] == a
    assert profile_of(ws, "anonymous_id", "shared-pc") not in (None, a)
    assert profile_of(ws, "user_id", "A") == a  # the person keeps their profile id

    block_value(ws, "anonymous_id:c-2", "tester", "a test cookie")
    assert profile_of(ws, "anonymous_id", "c-2") is None

    # New events that would undo the rules: the real-time path refuses them too...
    feed(ws, [msg(5, "identify", userId="A", anonymousId="shared-pc"),
              msg(6, "identify", anonymousId="c-2", userId="A")], tmp_path)
    assert profile_of(ws, "anonymous_id", "shared-pc") != a
    assert profile_of(ws, "anonymous_id", "c-2") is None
    # ...and a rebuild agrees with it.
    before = snapshot(ws)
    rebuild(ws.engine, ws.resolver)
    assert snapshot(ws) == before

    trail = ws.engine.fetchall("SELECT actor, action, subject FROM audit_log ORDER BY audit_id")
    assert [(t[0], t[1]) for t in trail] == [("tester", "identity.split"),
                                              ("tester", "identity.block")]
    assert trail[1][2] == "anonymous_id:c-2"


def test_manual_merge_follows_the_limits_and_keeps_history(workspace, tmp_path):
    ws = workspace
    ws.init(["web"])
    feed(ws, [msg(1, "identify", anonymousId="c-1", traits={"email": "x@x.nl"}),
              msg(2, "identify", anonymousId="c-2", traits={"phone": "0612345678"}),
              msg(3, "identify", userId="U1", anonymousId="c-3"),
              msg(4, "identify", userId="U2", anonymousId="c-4")], tmp_path)
    older, newer = profile_of(ws, "email", "x@x.nl"), profile_of(ws, "phone", "+31612345678")
    result = merge_profiles(ws, "email:X@x.nl", "phone:06-12345678", "tester", "same person")
    assert result["merged"] and result["profile_id"] == older
    assert profile_of(ws, "phone", "+31612345678") == older
    assert ws.engine.fetchone("SELECT merged_into FROM profiles WHERE profile_id = $p",
                              {"p": newer})[0] == older
    refused = merge_profiles(ws, "user_id:U1", "user_id:U2", "tester")
    assert not refused["merged"] and "limit 1" in refused["refused"][0]
    assert profile_of(ws, "user_id", "U1") != profile_of(ws, "user_id", "U2")
    with pytest.raises(IdentityError, match="belongs to no profile"):
        merge_profiles(ws, "email:nobody@x.nl", "user_id:U1", "tester")
    # the merge is a rule: a rebuild keeps it
    before = snapshot(ws)
    rebuild(ws.engine, ws.resolver)
    assert snapshot(ws)["identifiers"] == before["identifiers"]
    assert ws.engine.fetchone("SELECT count(*) FROM audit_log WHERE action = 'identity.merge'")[0] == 2


def test_on_postgres_one_process_resolves_for_all(pg_database, tmp_path):
    """Two server processes on one database: the one holding the resolver role resolves the
    other's events; when it goes, the other takes over."""
    from conftest import fresh_postgres_url

    url = fresh_postgres_url(pg_database)
    a = Workspace.open(load_settings(home=tmp_path / "a", database_url=url))
    b = Workspace.open(load_settings(home=tmp_path / "b", database_url=url))
    try:
        a.init(["web"])
        b.settings.resolve_identities = False          # b stores; resolution is a's job
        assert a.resolver.catch_up(follow=True) == 0   # a takes the resolver role
        feed(b, [msg(1, "identify", userId="U1", anonymousId="c-1")], tmp_path)
        assert b.resolver.catch_up(follow=True) == 0   # b is a follower: leaves it to a
        assert profile_of(b, "user_id", "U1") is None
        assert a.resolver.catch_up(follow=True) == 1
        assert profile_of(b, "user_id", "U1") == profile_of(b, "anonymous_id", "c-1")
        a.close()
        b.resolver._next_try = 0                       # skip the wait between attempts
        feed(b, [msg(2, "identify", userId="U2", anonymousId="c-2")], tmp_path)
        assert b.resolver.catch_up(follow=True) == 1   # the role passed to b
        assert profile_of(b, "user_id", "U2") is not None
    finally:
        a.close()
        b.close()


def test_on_postgres_the_resolving_process_picks_up_what_others_store(pg_database, tmp_path):
    """The process holding the resolver role is poked by its own commits only; events another
    process stores after those are resolved all the same, without a commit of its own."""
    from conftest import fresh_postgres_url

    url = fresh_postgres_url(pg_database)
    a = Workspace.open(load_settings(home=tmp_path / "a", database_url=url))
    b = Workspace.open(load_settings(home=tmp_path / "b", database_url=url))
    follower = a.follower   # what a's server runs after each of its commits
    try:
        a.init(["web"])
        b.settings.resolve_identities = False          # b stores; resolution is a's job
        follower.poke()                                # a's server starts: it takes the role
        deadline = time.monotonic() + 10
        while a.resolver._leader is None:
            assert time.monotonic() < deadline, "a did not take the resolver role"
            time.sleep(0.05)
        feed(b, [msg(1, "identify", userId="U1", anonymousId="c-1")], tmp_path)
        while profile_of(b, "user_id", "U1") is None:  # no poke reaches a
            assert time.monotonic() < deadline, "the event stored by b was never resolved"
            time.sleep(0.05)
        assert profile_of(b, "user_id", "U1") == profile_of(b, "anonymous_id", "c-1")
    finally:
        follower.stop()
        a.close()
        b.close()
