"""`klantbeeld dmp …` on both engines: what an operator types to load feeds, the taxonomy and ID
syncs, look at a cookie and the status, and expire."""

from __future__ import annotations

import gzip
import json

import pytest

from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace


class DmpCli:
    """Runs the `dmp` commands in-process against one workspace."""

    def __init__(self, home, database_url):
        from click.testing import CliRunner

        self.home, self.database_url = home, database_url
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0):
        from klantbeeld.dmp.cli import dmp_group

        result = self.runner.invoke(dmp_group, [*args, "--data-dir", str(self.home),
                                                "--database", self.database_url])
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    def json(self, *args: str):
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def cli(database_url, tmp_path) -> DmpCli:
    home = tmp_path / "home"
    with Workspace.open(load_settings(home=home, database_url=database_url)) as ws:
        ws.init(["web", "dmp"])
    return DmpCli(home, database_url)


def test_feed_taxonomy_cookie_status_expire(cli, tmp_path):
    taxonomy = tmp_path / "taxonomy.csv"
    taxonomy.write_text("id,parent_id,name,tier\n1,,Interest,1\n10,1,Interest | Sports,2\n")
    assert "2 nodes" in cli("taxonomy", str(taxonomy)).output

    feed = tmp_path / "ftp_dpm_1_1700000000.sync.gz"
    feed.write_bytes(gzip.compress(b"c-1\t10,9001\nc-2\td_sid=10\nann@example.nl\t10\n"))
    out = cli("import", str(feed), "--source", "dmp").output
    assert "3 lines, 2 cookies; 3 added" in out
    assert "1 lines rejected (personal_data 1)" in out and "line 3:" in out
    assert "1 segment ids not in the taxonomy (kept): 9001 (1)" in out

    removal = tmp_path / "removal.jsonl"
    removal.write_text('{"cookie_id": "c-1", "removed": ["9001"]}\n')
    report = cli.json("import", str(removal), "--source", "dmp")
    assert (report["removed"], report["mode"], report["name"]) == (1, "incremental",
                                                                   "removal.jsonl")
    cookie = cli.json("cookie", "c-1")
    assert [(s["segment_id"], s["name"]) for s in cookie["segments"]] == [
        ("10", "Interest | Sports")]
    assert "Interest | Sports" in cli("cookie", "c-1").output

    status = cli.json("status")
    assert (status["cookies"], status["rows"], len(status["feeds"])) == (2, 2, 2)
    assert "2 cookies, 2 live segment rows" in cli("status").output
    result = cli.json("expire")
    assert result["segments_removed"] == 0 and result["took_s"] >= 0


def test_full_overwrite_and_partner_feed(cli, tmp_path):
    first = tmp_path / "first.csv"
    first.write_text('cookie_id,segments\nc-1,"1,2"\nc-2,3\n')
    cli("import", str(first), "--source", "dmp")
    sync = tmp_path / "pairs.csv"
    sync.write_text("partner_id,cookie_id\nP-1,c-1\nP-2,c-3\n")
    assert "acme: 2 pairs; 2 new" in cli("sync", str(sync), "--partner", "acme").output

    full = tmp_path / "partner.tsv"
    full.write_text("P-1\t2\nP-9\t4\n")
    report = cli.json("import", str(full), "--source", "dmp", "--mode", "full",
                      "--partner", "acme")
    assert (report["cookies"], report["refreshed"], report["removed"], report["unmatched"]) \
        == (1, 1, 2, 1)
    assert [s["segment_id"] for s in cli.json("cookie", "c-1")["segments"]] == ["2"]
    assert "no live cookie profile" in cli("cookie", "c-2", code=1).output


def test_clear_errors(cli, tmp_path):
    feed = tmp_path / "feed.tsv"
    feed.write_text("c-1\t1\n")
    assert "channel web" in cli("import", str(feed), "--source", "web", code=1).output
    assert "channel dmp" in cli("import", str(feed), "--source", "nope", code=1).output
    assert "no feed file" in cli("import", str(tmp_path / "missing.tsv"), "--source", "dmp",
                                 code=1).output
    bad = tmp_path / "bad.csv"
    bad.write_text("id,parent_id,name,tier\n1,,A,1\n2,3,B,2\n")
    assert "the parent 3 of 2 is not in the taxonomy" in cli("taxonomy", str(bad), code=1).output
    (tmp_path / "home" / "dmp.yaml").write_text("default_ttl_days: 0\n")
    assert "dmp.yaml: default_ttl_days" in cli("import", str(feed), "--source", "dmp",
                                               code=1).output
