"""The `klantbeeld` CLI for collection, on both engines: init, sources, status, failed events, and
the exit codes a script can rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pytest
from click.testing import CliRunner
from conftest import Cli as BaseCli
from conftest import CollectApi
from fastapi.testclient import TestClient

from klantbeeld.app import create_app
from klantbeeld.cli import main
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

PLAN = {"mode": "block", "events": {"Order Completed": {
    "type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}}}}


class Cli(BaseCli):
    """The shared in-process runner, plus sending through the API first."""

    def send(self, path: str, body: dict, key: str, times: int = 1):
        """Post through the API, as a running server would take it, then let go of the store.

        With ``times`` > 1 the same request is sent that often to one server; the last answer is
        returned."""
        settings = load_settings(home=self.home, database_url=self.database_url)
        with Workspace.open(settings) as ws, TestClient(create_app(workspace=ws)) as client:
            for _ in range(times):
                response = client.post(path, json=body, headers=CollectApi.basic(key))
            return response


@pytest.fixture
def cli(database_url, tmp_path):
    return Cli(tmp_path / "home", database_url)


def order(mid: str, **properties) -> dict:
    return {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": mid,
            "properties": properties}


def test_init_json_gives_the_admin_key_and_one_write_key_per_source(cli):
    made = cli.json("init", "--channel", "web", "--channel", "pos")
    assert made["admin_key"].startswith("kb_admin_")
    assert [(s["name"], s["channel"]) for s in made["sources"]] == [("web", "web"), ("pos", "pos")]
    assert all(s["write_key"] for s in made["sources"])
    response = cli.send("/v1/track", {"userId": "u", "event": "e"}, made["sources"][1]["write_key"])
    assert response.status_code == 200

    again = cli.json("init", "--channel", "web", "--channel", "app")  # re-runnable
    assert [s["name"] for s in again["sources"]] == ["app"]
    assert again["admin_key"] != made["admin_key"]
    assert sorted(s["name"] for s in cli.json("sources", "list")) == ["app", "pos", "web"]

    human = cli("init", "--channel", "crm").stdout
    assert "admin key: kb_admin_" in human and "write key: kb_write_" in human


def test_sources_add_prints_a_write_key_that_works(cli):
    cli("init", "--channel", "web")
    added = cli.json("sources", "add", "shop", "--channel", "web")
    assert added["name"] == "shop" and added["write_key"].startswith("kb_write_")
    response = cli.send("/v1/track", {"userId": "u", "event": "e"}, added["write_key"])
    assert response.status_code == 200
    rows = {r["source"]: r for r in cli.json("status")["sources"]}
    assert rows["shop"]["accepted"] == 1 and rows["web"]["accepted"] == 0

    duplicate = cli("sources", "add", "shop", "--channel", "web", code=1)
    assert "exists already" in duplicate.output and "Traceback" not in duplicate.output
    cli("sources", "add", "till", "--channel", "teletext", code=2)  # not a channel: usage error


def test_rate_limits_from_the_cli(cli):
    cli("init", "--channel", "web")
    key = cli.json("sources", "add", "kiosk", "--channel", "pos", "--rate-limit", "1")["write_key"]
    burst = {"batch": [order(f"k{i}", revenue=1) for i in range(100)]}
    limited = cli.send("/v1/batch", burst, key, times=2)  # 200 events in well under 100 s
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["code"] == "rate_limited"
    assert cli.json("status")["sources"][0]["accepted"] == 100

    cli("sources", "rate-limit", "kiosk")  # no number: no limit
    assert cli.send("/v1/batch", burst, key, times=3).status_code == 200
    cli("sources", "rate-limit", "kiosk", "2")
    assert {s["name"]: s["rate_limit"] for s in cli.json("sources", "list")}["kiosk"] == 2
    assert cli.send("/v1/batch", burst, key, times=2).status_code == 429
    assert "positive" in cli("sources", "rate-limit", "kiosk", "0", code=1).output
    assert "no source named" in cli("sources", "rate-limit", "nope", "5", code=1).output


def test_a_disabled_source_takes_no_data_until_enabled(cli, tmp_path):
    key = cli.json("init", "--channel", "pos")["sources"][0]["write_key"]
    cli("sources", "disable", "pos")
    refused = cli.send("/v1/batch", {"batch": [order("d1", revenue=1)]}, key)
    assert refused.status_code == 403 and refused.json()["code"] == "source_disabled"
    lines = tmp_path / "lines.jsonl"
    lines.write_text(json.dumps(order("d2", revenue=2)) + "\n")
    assert "disabled" in cli("import", str(lines), "--source", "pos", code=1).output
    assert cli.json("status")["sources"][0]["accepted"] == 0

    cli("sources", "enable", "pos")
    assert cli.send("/v1/batch", {"batch": [order("d1", revenue=1)]}, key).status_code == 200
    assert cli.json("status")["sources"][0]["accepted"] == 1


def test_status_per_source(cli):
    keys = cli.json("init", "--channel", "web", "--channel", "app")
    web = keys["sources"][0]["write_key"]
    cli.send("/v1/batch", {"batch": [
        {"type": "track", "userId": "u", "event": "a", "messageId": "1",
         "timestamp": "2024-02-01T10:00:00Z"},
        {"type": "track", "userId": "u", "event": "b", "messageId": "2",
         "timestamp": "2024-03-01T10:00:00Z"},
        {"type": "track", "userId": "u", "event": "a", "messageId": "1"},
        {"type": "track", "event": "no ids"},
    ]}, web)
    rows = {r["source"]: r for r in cli.json("status")["sources"]}
    web_row = rows["web"]
    assert (web_row["accepted"], web_row["duplicates"], web_row["failed"]) == (2, 1, 1)
    assert datetime.fromisoformat(web_row["last_event_at"]) == datetime.fromisoformat(
        "2024-03-01T10:00:00+00:00")
    assert (rows["app"]["accepted"], rows["app"]["last_event_at"]) == (0, None)
    table = cli("status").stdout
    assert "accepted" in table and "duplicates" in table and "web" in table


def test_failed_list_show_and_replay_after_relaxing_the_plan(cli, tmp_path):
    keys = cli.json("init", "--channel", "web")
    key = keys["sources"][0]["write_key"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    cli("sources", "plan", "web", str(plan))
    sent = cli.send("/v1/batch", {"batch": [order(f"o{i}", revenue="ten") for i in range(4)]
                                  + [order("ok", revenue=10)]}, key)
    assert sent.json()["accepted"] == 1

    listed = cli.json("failed", "list")
    assert listed["total"] == 4
    assert {i["reason_code"] for i in listed["items"]} == {"tracking_plan_violation"}
    assert "4 in all" in cli("failed", "list").stdout
    first = listed["items"][0]["failed_id"]
    shown = cli.json("failed", "show", str(first))
    assert json.loads(shown["payload"]) == order("o0", revenue="ten")
    human = cli("failed", "show", str(first)).stdout
    assert "tracking_plan_violation" in human and '"revenue": "ten"' in human
    assert "no failed event" in cli("failed", "show", "999999", code=1).output

    assert "name failed-event ids" in cli("failed", "replay", code=1).output
    still = cli.json("failed", "replay", "--source", "web")
    assert still == {"replayed": 0, "duplicates": 0, "failed_again": 4}

    cli("sources", "plan", "web", "--remove")
    done = cli.json("failed", "replay", "--all")
    assert done == {"replayed": 4, "duplicates": 0, "failed_again": 0}
    row = cli.json("status")["sources"][0]
    assert (row["accepted"], row["failed"], row["failed_pending"], row["failed_replayed"]) == (
        5, 4, 0, 4)
    assert cli.json("failed", "list")["total"] == 0
    assert cli.json("failed", "list", "--status", "replayed")["total"] == 4
    assert "replayed 0" in cli("failed", "replay", "--all").stdout


def test_failed_replay_with_a_corrected_payload_file(cli, tmp_path):
    keys = cli.json("init", "--channel", "web")
    key = keys["sources"][0]["write_key"]
    cli.send("/v1/track", {"event": "Signed Up", "messageId": "s1"}, key)
    (item,) = cli.json("failed", "list", "--reason", "no_user_anon_id")["items"]
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({"type": "track", "userId": "u7", "event": "Signed Up",
                                 "messageId": "s1"}))
    assert cli.json("failed", "replay", str(item["failed_id"]), "--payload", str(fixed))[
        "replayed"] == 1
    assert cli.json("status")["sources"][0]["accepted"] == 1


def test_a_broken_plan_file_is_refused_with_the_place_it_breaks(cli, tmp_path):
    cli("init", "--channel", "web")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"events": {"Order Completed": {"type": 12}}}))
    result = cli("sources", "plan", "web", str(broken), code=1)
    assert "Order Completed" in result.output and "Traceback" not in result.output
    not_json = tmp_path / "not.json"
    not_json.write_text("{mode: block")
    assert "not valid JSON" in cli("sources", "plan", "web", str(not_json), code=1).output
    assert "plan file, or --remove" in cli("sources", "plan", "web", code=1).output
    assert cli.json("sources", "list")[0]["tracking_plan"] is False


def _klantbeeld(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "klantbeeld.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_store_held_by_a_running_server(live_server):
    """DuckDB: a clear error and exit code 3. PostgreSQL: the CLI works beside the server."""
    args = ["--data-dir", str(live_server.home), "--database", live_server.database_url]
    for command in (["status"], ["failed", "list"], ["sources", "add", "x", "--channel", "web"]):
        result = _klantbeeld(*command, *args)
        if live_server.database_url.startswith("duckdb"):
            assert result.returncode == 3, result
            assert "in use by another process" in result.stderr
            assert "klantbeeld serve" in result.stderr
            assert "Traceback" not in result.stderr + result.stdout
        else:
            assert result.returncode == 0, result.stderr


def test_an_unreachable_database_is_exit_code_3(tmp_path):
    result = _klantbeeld("status", "--data-dir", str(tmp_path),
                         "--database", "postgresql://kb:pw@127.0.0.1:1/none")
    assert result.returncode == 3
    assert "cannot connect to PostgreSQL" in result.stderr and "Traceback" not in result.stderr


def test_the_default_data_dir_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("KLANTBEELD_HOME", "KLANTBEELD_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["init", "--channel", "web", "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "klantbeeld-data" / "klantbeeld.duckdb").is_file()
    result = CliRunner().invoke(main, ["sources", "list", "--json"])
    assert [s["name"] for s in json.loads(result.stdout)] == ["web"]


def test_serve_refuses_several_workers_on_duckdb(tmp_path):
    """A DuckDB file has one writing process; asking for more is an error, not a crash later."""
    from click.testing import CliRunner

    from klantbeeld.cli import main

    result = CliRunner().invoke(main, ["serve", "--workers", "2", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "PostgreSQL" in result.output


def test_status_says_how_far_processing_is_behind_collection(cli, monkeypatch):
    key = cli.json("init", "--channel", "web")["sources"][0]["write_key"]
    monkeypatch.setenv("KLANTBEELD_RESOLVE_IDENTITIES", "false")   # resolution waits, as in a burst
    cli.send("/v1/batch", {"batch": [
        {"type": "track", "userId": "u1", "event": "a"},
        {"type": "identify", "userId": "u2", "traits": {"plan": "gold"}},
        {"type": "page", "anonymousId": "c3"}]}, key)
    assert cli.json("status")["processing"] == {"events_unresolved": 3,
                                                "events_awaiting_segments": 0}
    assert "3 events not resolved to profiles yet" in cli("status").stdout

    settings = load_settings(home=cli.home, database_url=cli.database_url)
    with Workspace.open(settings) as ws:
        assert ws.resolver.catch_up() == 3
    assert cli.json("status")["processing"] == {"events_unresolved": 0,
                                                "events_awaiting_segments": 3}
    with Workspace.open(settings) as ws:
        ws.update_segments()
    assert cli.json("status")["processing"] == {"events_unresolved": 0,
                                                "events_awaiting_segments": 0}
    assert "behind" not in cli("status").stdout
