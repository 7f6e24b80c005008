"""`klantbeeld demo` loads every demo file through the real import path, ready to serve."""

from __future__ import annotations

import csv
import json
import stat

from click.testing import CliRunner

from klantbeeld.cli import main
from klantbeeld.collect.sources import KeyRing
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace


def test_demo_loads_every_record_of_the_imported_files(tmp_path):
    out, home = tmp_path / "data", tmp_path / "ws"
    result = CliRunner().invoke(main, ["demo", "--customers", "150", "--seed", "3", "--out",
                                       str(out), "--data-dir", str(home), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert all(r["failed"] == 0 and r["accepted"] == r["rows"] for r in summary["imports"])
    imported = [r for r in summary["imports"] if r["source"] != "dmp"]
    assert {r["source"] for r in imported} == {"crm", "webshop", "app", "pos", "email"}
    # the DMP feed lands on cookie profiles (not events): one per line of the file
    dmp, = [r for r in summary["imports"] if r["source"] == "dmp"]
    feed_cookies = {line.split("\t")[0] for line in (out / "dmp_feed.tsv").read_text().splitlines()}
    assert dmp["cookies"] == len(feed_cookies) == dmp["rows"]

    keys_file = home / "demo-keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    with Workspace.open(load_settings(home=home)) as ws:
        stored = {mid for (mid,) in ws.engine.fetchall("SELECT message_id FROM events")}
        ring = KeyRing(ws.engine)
        for name, key in summary["write_keys"].items():
            principal = ring.resolve(key)
            assert principal.role == "write" and principal.source.name == name
        assert ring.resolve(summary["admin_key"]).role == "admin"
        cookies = {c for (c,) in ws.engine.fetchall("SELECT DISTINCT cookie_id FROM cookie_segments")}
        assert cookies == feed_cookies
    # Every ground-truth record of an imported file is an event, under its own message id.
    with open(out / "ground_truth.csv", newline="") as fh:
        keys = [row["record_key"] for row in csv.DictReader(fh)]
    wanted = {k.split(":", 1)[1] for k in keys if not k.startswith("dmp_feed:")}
    assert wanted and wanted <= stored
    assert len(stored) == sum(r["accepted"] for r in imported)


def test_demo_run_twice_with_fresh_starts_over(tmp_path):
    args = ["demo", "--customers", "60", "--out", str(tmp_path / "d"), "--data-dir",
            str(tmp_path / "w"), "--json", "--fresh"]
    first = json.loads(CliRunner().invoke(main, args).output)
    (tmp_path / "w" / "keep.txt").write_text("mine")
    second = json.loads(CliRunner().invoke(main, args).output)
    assert [r.get("accepted") for r in second["imports"]] == \
        [r.get("accepted") for r in first["imports"]]
    assert (tmp_path / "w" / "keep.txt").read_text() == "mine"  # --fresh deletes only its store
