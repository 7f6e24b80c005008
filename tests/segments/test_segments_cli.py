"""`klantbeeld segments …` and `klantbeeld traits …` on both engines: what an operator types."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from conftest import Cli, feed

from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

NOW = datetime.now(timezone.utc)


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


@pytest.fixture
def cli(database_url, tmp_path) -> Cli:
    home = tmp_path / "home"
    with Workspace.open(load_settings(home=home, database_url=database_url)) as ws:
        ws.init(["web"])
        messages = []
        for i, city in enumerate(["Utrecht", "Utrecht", "Delft"]):
            messages.append({"type": "identify", "userId": f"u{i}", "timestamp": ago(300),
                             "traits": {"email": f"u{i}@shop.nl", "city": city}})
            messages += [{"type": "track", "userId": f"u{i}", "event": "Order Completed",
                          "properties": {"revenue": 50, "category": "shoes" if k else "bags"},
                          "timestamp": ago(10 + k)} for k in range(i + 1)]
        feed(ws, messages, tmp_path)
    return Cli(home, database_url)


def test_define_preview_members_export(cli, tmp_path):
    tree = tmp_path / "tree.json"
    tree.write_text(json.dumps({"trait": "city", "op": "=", "value": "Utrecht"}))
    out = cli("segments", "create", "Utrecht", "--definition", f"@{tree}")
    assert "utrecht: 2 members" in out.output
    assert cli.json("segments", "preview", "--definition",
                    '{"event": "Order Completed", "count": {"at_least": 2}}')["size"] == 2
    page = cli.json("segments", "members", "utrecht", "--traits", "city,order_count")
    assert sorted(p["traits"]["order_count"] for p in page["profiles"]) == [1, 2]
    assert {s["id"] for s in cli.json("segments", "list")["segments"]} >= {"utrecht", "loyal"}

    # a bad tree: exit code 1 and the path of the problem
    bad = cli("segments", "create", "Bad", "--definition",
              '{"or": [{"trait": "city", "op": "like", "value": "U"}]}', code=1)
    assert "/or/0/op" in bad.output

    target = tmp_path / "utrecht.csv"
    cli("segments", "export", "utrecht", "--traits", "city", "--identifiers", "email",
        "--purpose", "analytics", "--output", str(target))
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert sorted(r["email"] for r in rows) == ["u0@shop.nl", "u1@shop.nl"]
    assert {r["city"] for r in rows} == {"Utrecht"}

    overlap = cli.json("segments", "overlap", "utrecht", "repeat-customer")
    assert overlap["pairs"][0]["shared"] == 1


def test_traits_add_refresh_and_changes(cli):
    trait = cli.json("traits", "add", "--definition", json.dumps(
        {"name": "shoe_orders", "kind": "count", "event": "Order Completed",
         "where": [{"property": "category", "op": "=", "value": "shoes"}]}))
    assert trait["profiles"] == 2
    cli("traits", "add", "--definition", '{"name": "shoe_orders", "kind": "count", '
        '"event": "X"}', code=1)   # exists; --replace changes it
    listed = {t["name"]: t for t in cli.json("traits", "list")["traits"]}
    assert listed["shoe_orders"]["origin"] == "api" and listed["order_count"]["origin"] == "builtin"
    cli("segments", "create", "Shoe fans", "--definition",
        '{"trait": "shoe_orders", "op": ">=", "value": 1}')
    refreshed = cli.json("traits", "refresh")
    assert "shoe_orders" in refreshed["traits"] and "shoe-fans" in refreshed["segments"]
    changes = cli.json("segments", "changes", "shoe-fans")["changes"]
    assert [c["kind"] for c in changes] == ["segment.entered", "segment.entered"]
    cli("traits", "delete", "shoe_orders", code=1)   # a segment uses it
    cli("segments", "delete", "shoe-fans")
    cli("traits", "delete", "shoe_orders")
    cli("traits", "refresh", "nope", code=1)
