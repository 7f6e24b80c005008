"""Tests for the synthetic demo data set (klantbeeld.demo).

One small data set is generated per module and inspected the way a user
of the data would: parse every file, join it to the ground truth, and
check that the planted signal is really there.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import re
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from klantbeeld.demo import generate
from klantbeeld.demo.cli import demo_data
from klantbeeld.demo.dmp import LOOKALIKE_SEGMENTS

N = 400
SEED = 42
END = datetime(2026, 11, 1, tzinfo=timezone.utc)
START = datetime(2024, 11, 1, tzinfo=timezone.utc)

CSV_COLUMNS = {
    "pos_transactions.csv": "message_id,transaction_id,line_no,store_id,loyalty_card,"
                            "email,sku,product_id,category,quantity,unit_price,amount,"
                            "purchased_at",
    "crm_contacts.csv": "message_id,customer_id,first_name,last_name,email,phone,street,"
                        "house_number,postcode,city,birth_date,loyalty_card,"
                        "webshop_user_id,created_at,updated_at",
    "email_engagement.csv": "message_id,email,campaign_id,event,occurred_at",
    "dmp_taxonomy.csv": "id,parent_id,name,tier",
    "ground_truth.csv": "record_key,person_id",
    "lookalike_truth.csv": "cookie_id,is_seed_like",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "data"
    manifest = generate(out, customers=N, seed=SEED)
    return out, manifest


@pytest.fixture(scope="module")
def truth(data):
    out, _ = data
    with open(out / "ground_truth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


@pytest.fixture(scope="module")
def gt(truth):
    return {r["record_key"]: r["person_id"] for r in truth}


@pytest.fixture(scope="module")
def persons(data):
    out, _ = data
    with open(out / "persons_truth.csv", newline="") as f:
        return {r["person_id"]: r for r in csv.DictReader(f)}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def events(data):
    out, _ = data
    return {stem: read_jsonl(out / f"{stem}.jsonl") for stem in ("web_events", "app_events")}


@pytest.fixture(scope="module")
def orders_by_person(data, events, gt):
    """person_id -> {order id: date} from all sales channels."""
    out, _ = data
    orders = collections.defaultdict(dict)
    for stem, msgs in events.items():
        for m in msgs:
            if m["type"] == "track" and m["event"] == "Order Completed":
                orders[gt[f"{stem}:{m['messageId']}"]][m["properties"]["order_id"]] = \
                    parse_ts(m["timestamp"])
    for r in read_csv(out / "pos_transactions.csv"):
        when = datetime.strptime(r["purchased_at"], "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=timezone.utc)
        orders[gt["pos_transactions:" + r["message_id"]]][r["transaction_id"]] = when
    return orders


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- reproducibility ---------------------------------------------------------

def test_same_seed_gives_identical_bytes_even_in_another_process(data, tmp_path):
    out, _ = data
    again = tmp_path / "again"
    code = ("import sys; from klantbeeld.demo import generate; "
            f"generate(sys.argv[1], customers={N}, seed={SEED})")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(again)], check=True, env=env)
    first, second = tree_bytes(out), tree_bytes(again)
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], f"{name} differs between runs"


def test_different_seed_gives_different_data(data, tmp_path):
    out, _ = data
    other = tmp_path / "other"
    generate(other, customers=N, seed=SEED + 1)
    for name in ("web_events.jsonl", "crm_contacts.csv", "dmp_feed.tsv"):
        assert (out / name).read_bytes() != (other / name).read_bytes()


def test_end_date_moves_the_window(tmp_path):
    manifest = generate(tmp_path / "d", customers=30, seed=1, end=date(2025, 6, 1))
    assert manifest["end"] == "2025-06-01"
    stamps = [parse_ts(m["timestamp"]) for m in read_jsonl(tmp_path / "d" / "web_events.jsonl")]
    assert max(stamps) < datetime(2025, 6, 1, tzinfo=timezone.utc)
    assert min(stamps) >= datetime(2023, 6, 1, tzinfo=timezone.utc)


# --- manifest and file shapes ------------------------------------------------

def test_manifest_describes_the_files(data, truth):
    out, manifest = data
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["seed"] == SEED and manifest["customers"] == N
    assert manifest["end"] == "2026-11-01"
    assert manifest["generated_at"].startswith("2026-11-01")
    assert manifest["ground_truth"] == "ground_truth.csv"
    by_path = {f["path"]: f for f in manifest["files"]}
    assert set(by_path) == {"crm_contacts.csv", "web_events.jsonl", "app_events.jsonl",
                            "pos_transactions.csv", "email_engagement.csv", "dmp_feed.tsv"}
    assert by_path["crm_contacts.csv"]["as"] == "identify"
    assert by_path["pos_transactions.csv"]["as"] == "track"
    assert by_path["email_engagement.csv"]["as"] == "track"
    assert by_path["web_events.jsonl"]["kind"] == "segment-jsonl"
    assert by_path["dmp_feed.tsv"]["kind"] == "aam-tsv"
    assert by_path["pos_transactions.csv"]["timezone"] == "Europe/Amsterdam"
    for path, f in by_path.items():
        lines = (out / path).read_text(encoding="utf-8").splitlines()
        header = 1 if f["kind"] == "csv" else 0
        assert f["rows"] == len(lines) - header, path
        if "mapping" in f:
            assert (out / f["mapping"]).is_file()
    assert manifest["persons"] == len({r["person_id"] for r in truth})
    # sizes scale with N: roughly 50-125 records per customer, web dominating
    assert 50 * N < manifest["records"] < 125 * N
    assert by_path["web_events.jsonl"]["rows"] == max(f["rows"] for f in by_path.values())


@pytest.mark.parametrize("name", sorted(CSV_COLUMNS))
def test_csv_files_have_documented_columns(data, name):
    out, _ = data
    with open(out / name, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CSV_COLUMNS[name].split(",")
    assert len(rows) > 1
    assert all(len(r) == len(rows[0]) for r in rows)


def test_jsonl_lines_are_segment_messages(events):
    allowed = {"web_events": {"page", "track", "identify"},
               "app_events": {"screen", "track", "identify"}}
    for stem, msgs in events.items():
        assert msgs
        previous = ""
        for m in msgs:
            assert m["type"] in allowed[stem]
            assert m["messageId"].startswith("m-")
            assert m.get("userId") or m.get("anonymousId")
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", m["timestamp"])
            assert START <= parse_ts(m["timestamp"]) < END
            assert m["timestamp"] >= previous          # files are in time order
            previous = m["timestamp"]
            if m["type"] == "track":
                assert m["event"]
            elif m["type"] in ("page", "screen"):
                assert m["name"]
            else:
                assert m["userId"] and "@" in m["traits"]["email"]
                assert {"first_name", "last_name"} <= m["traits"].keys()
            if stem == "app_events":
                assert m["context"]["device"]["id"]
            else:
                assert m["anonymousId"].startswith("c-")
                assert m["context"]["userAgent"] and m["context"]["ip"]
                assert m["context"]["page"]["url"].startswith("https://")
            if m.get("event") == "Order Completed":
                props = m["properties"]
                assert props["order_id"] and props["currency"] == "EUR"
                assert props["products"]
                total = sum(p["price"] * p["quantity"] for p in props["products"])
                assert props["revenue"] == pytest.approx(total, abs=0.01)
                for p in props["products"]:
                    assert set(p) == {"product_id", "sku", "category", "price", "quantity"}


# --- ground truth --------------------------------------------------------------

def test_every_record_appears_exactly_once_in_ground_truth(data, truth, events):
    out, _ = data
    keys = collections.Counter(r["record_key"] for r in truth)
    assert max(keys.values()) == 1
    expected = []
    for stem, msgs in events.items():
        expected += [f"{stem}:{m['messageId']}" for m in msgs]
    for stem in ("crm_contacts", "pos_transactions", "email_engagement"):
        expected += [f"{stem}:{r['message_id']}" for r in read_csv(out / f"{stem}.csv")]
    with open(out / "dmp_feed.tsv", encoding="utf-8") as f:
        expected += [f"dmp_feed:{line.split(chr(9))[0]}" for line in f]
    assert len(expected) == len(set(expected))
    assert set(expected) == set(keys)


def test_ground_truth_person_ids(truth, persons):
    ids = {r["person_id"] for r in truth}
    assert ids <= set(persons)
    assert any(i.startswith("prospect-") for i in ids)
    assert sum(1 for i in ids if not i.startswith("prospect-")) == N


def test_users_ids_on_events_are_truthful(events, gt, persons):
    """A userId on a message always belongs to the true person (even on
    shared devices the other household member logs in as themselves)."""
    for stem, msgs in events.items():
        for m in msgs:
            if "userId" in m:
                assert persons[gt[f"{stem}:{m['messageId']}"]]["user_id"] == m["userId"]


def test_cookie_churn_and_anonymous_browsing(events, gt, persons):
    cookies = collections.defaultdict(set)
    logged_in = set()
    for m in events["web_events"]:
        pid = gt[f"web_events:{m['messageId']}"]
        cookies[pid].add(m["anonymousId"])
        if "userId" in m:
            logged_in.add(pid)
    known = [p for p in cookies if not p.startswith("prospect-")]
    assert sum(len(cookies[p]) > 2 for p in known) > 0.2 * len(known)
    # some known people browse but never log in; prospects never do
    assert any(p not in logged_in for p in known)
    assert not any(p.startswith("prospect-") for p in logged_in)
    # one cookie serves one person on the web (households share devices in the app only)
    owner = {}
    for pid, cs in cookies.items():
        for c in cs:
            assert owner.setdefault(c, pid) == pid


# --- behavioural signal --------------------------------------------------------

def test_purchase_counts_are_heterogeneous(orders_by_person, persons):
    counts = collections.defaultdict(list)
    for pid, p in persons.items():
        counts[p["customer_type"]].append(len(orders_by_person.get(pid, {})))
        assert len(orders_by_person.get(pid, {})) == int(p["n_orders"])
    assert set(counts["lead"]) == {0} and set(counts["prospect"]) == {0}
    assert set(counts["one_time"]) == {1}
    repeat = sorted(counts["repeat"])
    mean = sum(repeat) / len(repeat)
    sd = (sum((c - mean) ** 2 for c in repeat) / len(repeat)) ** 0.5
    assert sd / mean > 0.6, "repeat buyers should vary widely"
    assert repeat[-1] >= 4 * repeat[len(repeat) // 2]
    loyal = counts["loyal"]
    assert sum(loyal) / len(loyal) > 2 * mean


def test_churned_customers_stop_buying_well_before_end(orders_by_person, persons):
    churned = [pid for pid, p in persons.items()
               if p["customer_type"] in ("repeat", "loyal") and p["churned_at"]]
    alive = [pid for pid, p in persons.items() if p["alive_at_end"] == "1"]
    assert churned and alive
    gaps = [(END - max(orders_by_person[pid].values())).days for pid in churned]
    assert sum(g > 180 for g in gaps) > 0.3 * len(gaps)
    alive_gaps = [(END - max(orders_by_person[pid].values())).days for pid in alive]
    assert sorted(gaps)[len(gaps) // 2] > 2 * sorted(alive_gaps)[len(alive_gaps) // 2]


def test_email_opens_fade_before_churn_and_follow_loyalty(data, gt, persons):
    out, _ = data
    sent, opened = collections.Counter(), collections.Counter()
    for r in read_csv(out / "email_engagement.csv"):
        p = persons[gt["email_engagement:" + r["message_id"]]]
        ts = parse_ts(r["occurred_at"])
        assert START <= ts < END
        if p["customer_type"] in ("repeat", "loyal") and p["churned_at"]:
            days = (ts - parse_ts(p["churned_at"])).days
            bucket = "fading" if -60 <= days < 0 else ("gone" if days >= 0 else "early")
        else:
            bucket = p["customer_type"]
        sent[bucket] += r["event"] == "sent"
        opened[bucket] += r["event"] == "opened"
    rate = {b: opened[b] / sent[b] for b in sent if sent[b]}
    assert rate["loyal"] > rate["repeat"] > rate["one_time"]
    assert rate["fading"] < 0.7 * rate["early"]
    assert rate["gone"] < 0.3 * rate["early"]


def test_loyal_cookies_carry_planted_segments(data, gt, persons):
    out, _ = data
    tally = collections.Counter()
    for line in (out / "dmp_feed.tsv").read_text().splitlines():
        cookie, segs = line.split("\t")
        segs = {int(s) for s in segs.split(",")}
        loyal = persons[gt["dmp_feed:" + cookie]]["customer_type"] == "loyal"
        for seg in LOOKALIKE_SEGMENTS:
            tally[(loyal, seg in segs)] += 1
    odds_ratio = (tally[(True, True)] * tally[(False, False)]) / (
        tally[(True, False)] * tally[(False, True)])
    assert odds_ratio > 2


def test_lookalike_truth_marks_loyal_and_hidden_prospects(data, gt, persons):
    out, _ = data
    feed = [line.split("\t")[0] for line in (out / "dmp_feed.tsv").read_text().splitlines()]
    rows = read_csv(out / "lookalike_truth.csv")
    assert [r["cookie_id"] for r in rows] == feed
    hidden = 0
    for r in rows:
        p = persons[gt["dmp_feed:" + r["cookie_id"]]]
        if p["customer_type"] == "prospect":
            hidden += r["is_seed_like"] == "1"
        else:
            assert r["is_seed_like"] == str(int(p["customer_type"] == "loyal"))
    assert hidden > 0


def test_dmp_feed_joins_web_cookies_and_reports_unknown_segments(data, events, gt):
    out, _ = data
    taxonomy = read_csv(out / "dmp_taxonomy.csv")
    ids = {int(r["id"]) for r in taxonomy}
    assert 60 <= len(taxonomy) <= 120
    assert {r["tier"] for r in taxonomy} == {"1", "2", "3"}
    assert {r["name"] for r in taxonomy if r["tier"] == "1"} == {
        "Demographic", "Interest", "Purchase Intent"}
    for r in taxonomy:
        assert r["parent_id"] == "" or int(r["parent_id"]) in ids
    web_cookies = {m["anonymousId"] for m in events["web_events"]}
    feed = {}
    for line in (out / "dmp_feed.tsv").read_text().splitlines():
        cookie, segs = line.split("\t")
        assert re.fullmatch(r"\d+(,\d+)*", segs)
        feed[cookie] = {int(s) for s in segs.split(",")}
    in_web = [c for c in feed if c in web_cookies]
    assert in_web and any(not gt["dmp_feed:" + c].startswith("prospect-") for c in in_web)
    dmp_only = [c for c in feed if c not in web_cookies]
    assert len(dmp_only) > len(in_web)
    assert all(gt["dmp_feed:" + c].startswith("prospect-") for c in dmp_only)
    assert any(s not in ids for segs in feed.values() for s in segs)


# --- source-system realism --------------------------------------------------------

def test_crm_export_is_messy(data, gt, persons):
    out, _ = data
    rows = read_csv(out / "crm_contacts.csv")
    emails = [r["email"] for r in rows]
    assert any(e != e.strip() for e in emails)
    assert any(e.strip() != e.strip().lower() for e in emails)
    canonical = {p["person_id"]: p for p in persons.values()}
    formats = {re.sub(r"\d", "9", r["phone"]) for r in rows if r["phone"]}
    assert {"99-99999999", "+99 9 9999 9999", "9999999999999", "999999999"} <= formats
    assert any(not r["phone"] for r in rows) and any(not r["birth_date"] for r in rows)
    owners = collections.Counter(gt["crm_contacts:" + r["message_id"]] for r in rows)
    dup_share = sum(c > 1 for c in owners.values()) / len(owners)
    assert 0.01 < dup_share < 0.08
    types = collections.Counter(canonical[p]["customer_type"] for p in owners)
    assert types["lead"] > 0
    assert len({r["customer_id"] for r in rows}) == len(rows)
    for r in rows:
        assert re.fullmatch(r"\d{4} [A-Z]{2}", r["postcode"]) or r["postcode"] == ""
        if r["webshop_user_id"]:
            assert re.fullmatch(r"U\d{6}", r["webshop_user_id"])


def test_pos_receipts(data, gt):
    out, _ = data
    rows = read_csv(out / "pos_transactions.csv")
    assert any(r["loyalty_card"] for r in rows)
    assert any(r["email"] for r in rows)
    assert any(not r["loyalty_card"] and not r["email"] for r in rows)
    receipts = collections.defaultdict(list)
    for r in rows:
        datetime.strptime(r["purchased_at"], "%Y-%m-%d %H:%M:%S")
        assert float(r["amount"]) == pytest.approx(float(r["unit_price"]) * int(r["quantity"]))
        receipts[r["transaction_id"]].append(r)
    for lines in receipts.values():
        assert [int(r["line_no"]) for r in lines] == list(range(1, len(lines) + 1))
        assert len({gt["pos_transactions:" + r["message_id"]] for r in lines}) == 1


def test_shared_devices_are_recorded(data, events, gt, persons):
    out, manifest = data
    rows = read_csv(out / "shared_devices.csv")
    assert rows and manifest["shared_device_count"] >= 1
    by_device = collections.defaultdict(set)
    for r in rows:
        by_device[r["device_id"]].add(r["person_id"])
        assert persons[r["person_id"]]["household_id"] == r["household_id"] != ""
    users_on_device = collections.defaultdict(set)
    for m in events["app_events"]:
        users_on_device[m["context"]["device"]["id"]].add(gt[f"app_events:{m['messageId']}"])
    for device, people in by_device.items():
        assert len(people) == 2 and users_on_device[device] == people
    multi = {d for d, people in users_on_device.items() if len(people) > 1}
    assert multi == set(by_device)


def test_mappings_parse_and_name_existing_columns(data):
    out, manifest = data
    for f in manifest["files"]:
        if "mapping" not in f:
            continue
        mapping = yaml.safe_load((out / f["mapping"]).read_text())
        with open(out / f["path"], newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh))
        assert mapping["type"] == f["as"]
        referenced = [mapping[k] for k in ("message_id", "user_id", "anonymous_id",
                                           "timestamp", "event_column") if k in mapping]
        for section in ("traits", "properties", "external_ids"):
            for spec in (mapping.get(section) or {}).values():
                referenced.append(spec["column"] if isinstance(spec, dict) else spec)
        assert referenced and set(referenced) <= set(header), f["path"]
        assert mapping["message_id"] == "message_id"
        # every row needs an identifier: userId, anonymousId or an external id
        assert {"user_id", "anonymous_id", "external_ids"} & set(mapping)
        if mapping["type"] == "track":
            assert "event" in mapping or "event_column" in mapping
        if "timestamp_format" in mapping:
            first = read_csv(out / f["path"])[0]
            datetime.strptime(first[mapping["timestamp"]], mapping["timestamp_format"])
    crm = yaml.safe_load((out / "mappings" / "crm_contacts.yaml").read_text())
    assert crm["user_id"] == "webshop_user_id"
    assert {"email", "phone", "first_name", "last_name", "postcode"} <= set(crm["traits"])
    assert {"crm_id", "loyalty_card"} <= set(crm["external_ids"])


# --- CLI -----------------------------------------------------------------------

def test_cli_json_prints_manifest(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(demo_data, ["--customers", "40", "--seed", "3",
                                            "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["customers"] == 40 and manifest["seed"] == 3
    assert (out / "manifest.json").is_file()


def test_cli_summary(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(demo_data, ["--customers", "40", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "web_events.jsonl" in result.stdout and "persons" in result.stdout.lower()
    bad = CliRunner().invoke(demo_data, ["--customers", "0", "--out", str(out)])
    assert bad.exit_code != 0
