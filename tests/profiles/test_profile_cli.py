"""`klantbeeld profile show|events|search`, on both engines: the same profile, timeline and search
as the API gives, a readable form for people, paging hints, and exit code 1 with a clear message."""

from __future__ import annotations

import re

import pytest
from conftest import Cli as BaseCli
from conftest import CollectApi
from fastapi.testclient import TestClient

from klantbeeld.app import create_app
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

JAN_EVENTS = [  # (source, message) — Jan on the website, then in the app
    ("web", {"type": "page", "anonymousId": "cookie-1", "name": "Home",
             "timestamp": "2024-03-01T09:00:00Z"}),
    ("web", {"type": "track", "anonymousId": "cookie-1", "event": "Product Viewed",
             "timestamp": "2024-03-01T09:05:00Z"}),
    ("web", {"type": "identify", "anonymousId": "cookie-1", "userId": "u-jan",
             "traits": {"email": "Jan@Example.nl", "city": "Amsterdam"},
             "timestamp": "2024-03-01T09:10:00Z"}),
    ("app", {"type": "track", "anonymousId": "install-9", "event": "App Opened",
             "timestamp": "2024-03-02T08:00:00Z"}),
    # The app learns who it is: its profile merges into Jan's, the older one.
    ("app", {"type": "identify", "anonymousId": "install-9", "traits": {"city": "Utrecht"},
             "context": {"externalIds": [{"type": "email", "id": "jan@example.nl"}]},
             "timestamp": "2024-03-02T08:01:00Z"}),
]
OTHERS = [
    ("web", {"type": "identify", "userId": "u-piet", "traits": {"email": "piet@example.nl",
                                                                 "city": "Amsterdam"},
             "timestamp": "2024-03-01T10:00:00Z"}),
    ("web", {"type": "identify", "userId": "u-janneke", "traits": {"email": "janneke@example.nl",
                                                                    "city": "Utrecht"},
             "timestamp": "2024-03-01T11:00:00Z"}),
    ("web", {"type": "identify", "userId": "u-janneke", "traits": {"city": "Delft"},
             "timestamp": "2024-03-01T12:00:00Z"}),
]


class Cli(BaseCli):
    """`klantbeeld …` in-process against one workspace; the API over the same store for comparison."""

    def seed(self, events: list[tuple[str, dict]]) -> None:
        """Send through the API as a server takes it, resolve, let go of the store."""
        settings = load_settings(home=self.home, database_url=self.database_url)
        with Workspace.open(settings) as ws:
            keys = ws.init(["web", "app"])
            with TestClient(create_app(workspace=ws)) as client:
                api = CollectApi(ws, client, keys)
                for source, message in events:
                    sent = api.post("/v1/batch", {"batch": [message]}, key=api.write_keys[source])
                    assert sent.status_code == 200 and sent.json()["accepted"] == 1, sent.text
            ws.resolve()
            self.admin_key = keys["admin_key"]

    def api(self, path: str, **params):
        """GET from the API over the same store (admin key), then let go of it."""
        settings = load_settings(home=self.home, database_url=self.database_url)
        with Workspace.open(settings) as ws, TestClient(create_app(workspace=ws)) as client:
            response = client.get(path, params=params or None,
                                  headers={"Authorization": f"Bearer {self.admin_key}"})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def cli(database_url, tmp_path):
    cli = Cli(tmp_path / "home", database_url)
    cli.seed(JAN_EVENTS + OTHERS)
    return cli


def test_profile_show_json_is_the_profile_the_api_gives(cli):
    from_api = cli.api("/v1/profiles/email:jan@example.nl")
    assert cli.json("profile", "show", "email:JAN@example.nl") == from_api
    assert cli.json("profile", "show", "anonymous_id:install-9") == from_api
    assert cli.json("profile", "show", f"id:{from_api['profile_id']}") == from_api
    (merge,) = from_api["merges"]
    assert cli.json("profile", "show", f"id:{merge['merged']}") == from_api
    assert {(i["type"], i["value"]) for i in from_api["identities"]} == {
        ("anonymous_id", "cookie-1"), ("anonymous_id", "install-9"), ("user_id", "u-jan"),
        ("email", "jan@example.nl")}
    assert from_api["events"]["by_channel"] == {"web": 3, "app": 2}
    assert from_api["traits"]["city"]["value"] == "Utrecht"


def test_profile_show_for_people_lists_identities_traits_events_and_merges(cli):
    profile = cli.json("profile", "show", "user_id:u-jan")
    out = cli("profile", "show", "user_id:u-jan").stdout
    assert f"profile {profile['profile_id']}" in out
    identities = out.split("\nidentities\n")[1].split("\ntraits\n")[0]
    for kind, value in [("anonymous_id", "cookie-1"), ("anonymous_id", "install-9"),
                        ("email", "jan@example.nl"), ("user_id", "u-jan")]:
        assert re.search(rf"^{kind}\s+{re.escape(value)}\s", identities, re.M), identities
    traits = out.split("\ntraits\n")[1]
    city = re.search(r"^city\s+(\S+)\s+(\S+)\s.*\s(\d+)\s*$", traits, re.M)
    assert city and city.groups() == ("Utrecht", "app", "1"), traits  # Amsterdam is the other
    assert "events: 5  app 2, web 3" in out
    assert f"merges: 1 (aliases: {profile['aliases'][0]})" in out
    assert "u-piet" not in out and "piet@example.nl" not in out


@pytest.mark.parametrize("command", ["show", "events"])
def test_unknown_or_malformed_references_exit_1_with_a_message(cli, command):
    missing = cli("profile", command, "email:nobody@example.nl", code=1)
    assert missing.stdout == ""
    assert "error: no profile with email 'nobody@example.nl'" in missing.stderr
    malformed = cli("profile", command, "jan@example.nl", code=1)
    assert "TYPE:VALUE" in malformed.stderr and "Traceback" not in malformed.output
    unknown = cli("profile", command, "shoe_size:42", code=1)
    assert "unknown identifier type 'shoe_size'" in unknown.stderr


def test_profile_events_pages_with_a_cursor_hint(cli):
    seen, args = [], ["profile", "events", "user_id:u-jan", "--limit", "2"]
    cursor = None
    for _ in range(10):
        out = cli(*args, *(["--cursor", cursor] if cursor else [])).stdout
        lines = out.strip().splitlines()
        assert lines[0].split() == ["time", "channel", "type", "event", "source"]
        hint = re.search(r"^more: --cursor (\S+)$", out, re.M)
        rows = lines[1:-1] if hint else lines[1:]
        seen += rows
        if not hint:
            break
        assert len(rows) == 2
        cursor = hint.group(1)
    assert len(seen) == 5
    assert [r.split()[2:] for r in seen] == [  # newest first: type, event, source
        ["identify", "app"], ["track", "App", "Opened", "app"],
        ["identify", "web"], ["track", "Product", "Viewed", "web"],
        ["page", "Home", "web"]]

    first = cli.json("profile", "events", "user_id:u-jan", "--limit", "2")
    assert first == cli.api("/v1/profiles/user_id:u-jan/events", limit=2)
    second = cli.json("profile", "events", "user_id:u-jan", "--limit", "2",
                      "--cursor", first["next_cursor"])
    assert [e["event"] for e in second["events"]] == [None, "Product Viewed"]
    app = cli.json("profile", "events", "email:jan@example.nl", "--channel", "app")
    assert [(e["channel"], e["type"]) for e in app["events"]] == [("app", "identify"),
                                                                  ("app", "track")]
    only = cli.json("profile", "events", "email:jan@example.nl", "--type", "track",
                    "--event", "App Opened")
    assert [e["event"] for e in only["events"]] == ["App Opened"]
    assert "invalid cursor" in cli("profile", "events", "user_id:u-jan", "--cursor", "nonsense",
                                   code=1).stderr


def test_profile_search_by_trait_and_identifier(cli):
    jan = cli.json("profile", "show", "user_id:u-jan")["profile_id"]
    found = cli.json("profile", "search", "--trait", "city=Utrecht")
    # Janneke lived in Utrecht but moved to Delft; Piet never did.
    assert found == cli.api("/v1/profiles", **{"trait.city": "Utrecht"})
    assert [p["profile_id"] for p in found["profiles"]] == [jan] and found["count"] == 1
    assert found["profiles"][0]["traits"]["city"] == "Utrecht"

    prefixed = cli.json("profile", "search", "--identifier", "email:jan")
    assert {i["value"] for p in prefixed["profiles"] for i in p["identities"]
            if i["type"] == "user_id"} == {"u-jan", "u-janneke"}
    both = cli.json("profile", "search", "--identifier", "email:jan", "--trait", "city=Delft")
    assert [i["value"] for p in both["profiles"] for i in p["identities"]
            if i["type"] == "user_id"] == ["u-janneke"]
    assert cli.json("profile", "search", "--trait", "city=Utrecht", "--trait",
                    "email=nobody")["count"] == 0

    table = cli("profile", "search", "--trait", "city=Utrecht").stdout
    assert re.search(rf"^{jan}\s+anonymous_id:cookie-1, anonymous_id:install-9, email:jan@", table,
                     re.M), table
    assert cli("profile", "search", "--trait", "city=Nowhere").stdout.strip() == "(none)"
    assert "NAME=VALUE" in cli("profile", "search", "--trait", "city", code=1).stderr
    assert "at least one" in cli("profile", "search", code=1).stderr
