"""Orchestrates the demo data set: latent people -> channels -> files.

Each stage gets its own random stream spawned from one ``SeedSequence``,
so the output is a pure function of ``(customers, seed, end)`` and a change
in one channel's code does not reshuffle the others.
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import date
from importlib import resources
from pathlib import Path

import numpy as np

from .app import render_app
from .catalog import CATEGORIES, TIERS, Catalog
from .clock import DEFAULT_END, Window, iso_s
from .crm import CRM_COLUMNS, crm_rows
from .dmp import dmp_lines
from .engagement import EMAIL_COLUMNS, email_rows
from .orders import simulate_orders
from .people import Person, Prospect, build_population, build_prospects
from .pos import POS_COLUMNS, pos_rows
from .sessions import Device, plan_sessions
from .taxonomy import taxonomy_rows
from .web import Renderer
from .writer import EventStream, GroundTruth, write_csv

STAGES = ["catalog", "people", "prospects", "orders", "sessions", "render",
          "pos", "crm", "email", "dmp"]
MAPPINGS = ["crm_contacts.yaml", "pos_transactions.yaml", "email_engagement.yaml"]
TRUTH_ORDER = ["crm_contacts", "web_events", "app_events", "pos_transactions",
               "email_engagement", "dmp_feed"]
PROSPECT_VISITORS_PER_CUSTOMER = 0.4
PROSPECT_COOKIES_PER_CUSTOMER = 1.6


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}",
                  file=sys.stderr, flush=True)


def _streams(seed: int) -> dict[str, tuple[np.random.Generator, random.Random]]:
    children = np.random.SeedSequence(seed).spawn(len(STAGES))
    out = {}
    for name, child in zip(STAGES, children):
        rng = np.random.default_rng(child)
        out[name] = (rng, random.Random(int(rng.integers(2**63))))
    return out


def generate(out_dir: str | Path, customers: int = 2000, seed: int = 42,
             end: date | None = None, progress: bool = False) -> dict:
    """Write the demo data set into ``out_dir`` and return its manifest.

    ``customers`` known people (leads and buyers) are simulated over the
    two years before ``end`` (default 2026-11-01), plus anonymous prospects.
    Same arguments give byte-identical files.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    end = end or DEFAULT_END
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mappings").mkdir(exist_ok=True)
    log = _Progress(progress)
    window = Window(end)
    rs = _streams(seed)

    catalog = Catalog(rs["catalog"][0])
    people = build_population(customers, window, *rs["people"])
    prospects = build_prospects(round(customers * PROSPECT_VISITORS_PER_CUSTOMER),
                                round(customers * PROSPECT_COOKIES_PER_CUSTOMER),
                                *rs["prospects"])
    orders = simulate_orders(people, catalog, window, *rs["orders"])
    log(f"{len(people)} people, {len(prospects)} prospects, {len(orders)} orders")
    sessions, browsers, devices = plan_sessions(people, prospects, window,
                                                rs["sessions"][1])
    log(f"{len(sessions)} online sessions planned")

    truth = GroundTruth()
    web = EventStream(out / "web_events.jsonl", "web_events", truth)
    app = EventStream(out / "app_events.jsonl", "app_events", truth)
    renderer = Renderer(rs["render"][1], catalog, web, app)
    for s in sessions:
        ms = s.ts * 1000
        web.flush_before(ms)
        app.flush_before(ms)
        if s.channel == "web":
            renderer.render_web(s)
        else:
            render_app(renderer, s)
    rows = {"web_events.jsonl": web.close(), "app_events.jsonl": app.close()}
    log(f"web {rows['web_events.jsonl']} and app {rows['app_events.jsonl']} events")

    rows["pos_transactions.csv"] = write_csv(
        out / "pos_transactions.csv", POS_COLUMNS,
        pos_rows(orders, rs["pos"][1], truth))
    rows["crm_contacts.csv"] = write_csv(
        out / "crm_contacts.csv", CRM_COLUMNS,
        crm_rows(people, window, rs["crm"][1], truth))
    rows["email_engagement.csv"] = write_csv(
        out / "email_engagement.csv", EMAIL_COLUMNS,
        email_rows(people, window, rs["email"][1], truth))
    feed, lookalike = dmp_lines(browsers, prospects, rs["dmp"][1], truth)
    with open(out / "dmp_feed.tsv", "w", encoding="utf-8", newline="") as f:
        f.writelines(f"{cookie}\t{segs}\n" for cookie, segs in feed)
    rows["dmp_feed.tsv"] = len(feed)
    write_csv(out / "dmp_taxonomy.csv", ["id", "parent_id", "name", "tier"],
              taxonomy_rows())
    write_csv(out / "lookalike_truth.csv", ["cookie_id", "is_seed_like"], lookalike)
    log("channel files written")

    truth.write(out / "ground_truth.csv", TRUTH_ORDER)
    write_csv(out / "persons_truth.csv", PERSON_COLUMNS,
              _person_rows(people, prospects))
    shared = _shared_device_rows(devices, people)
    write_csv(out / "shared_devices.csv",
              ["device_id", "anonymous_id", "person_id", "household_id"], shared)
    for name in MAPPINGS:
        text = (resources.files("klantbeeld.demo") / "mappings" / name).read_text("utf-8")
        (out / "mappings" / name).write_text(text, encoding="utf-8")

    manifest = _manifest(customers, seed, end, rows, truth, prospects, shared)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n",
                                       encoding="utf-8")
    log(f"done: {sum(rows.values())} records, {manifest['persons']} persons")
    return manifest


PERSON_COLUMNS = ["person_id", "customer_type", "household_id", "gender",
                  "age", "price_tier", "top_category", "purchase_rate_per_year",
                  "dropout_p", "mean_spend", "n_orders", "first_order_at",
                  "last_order_at", "churned_at", "alive_at_end", "user_id",
                  "loyalty_card", "uses_app", "seed_like"]


def _person_rows(people: list[Person], prospects: list[Prospect]) -> list[list]:
    """Latent truth per person, for churn / CLV / segmentation checks."""
    rows = []
    for p in people:
        times = sorted(o.ts for o in p.orders)
        top = CATEGORIES[max(range(len(p.prefs)), key=p.prefs.__getitem__)]
        rows.append([
            p.pid, p.ctype, p.household, p.gender, p.age, TIERS[p.tier], top,
            f"{p.lam:.4f}", f"{p.p_drop:.4f}", f"{p.mean_spend:.2f}", len(times),
            iso_s(times[0]) if times else "", iso_s(times[-1]) if times else "",
            iso_s(p.death) if p.death is not None else "",
            int(p.is_buyer and p.death is None), p.user_id, p.loyalty_card,
            int(p.uses_app), int(p.ctype == "loyal")])
    for pr in prospects:
        top = CATEGORIES[max(range(len(pr.prefs)), key=pr.prefs.__getitem__)]
        rows.append([pr.pid, "prospect", "", pr.gender, pr.age, TIERS[pr.tier],
                     top, "", "", "", 0, "", "", "", 0, "", "", 0,
                     int(pr.seed_like)])
    return rows


def _shared_device_rows(devices: list[Device], people: list[Person]) -> list[list]:
    by_pid = {p.pid: p for p in people}
    rows = []
    for d in devices:
        if len(d.users) > 1:
            for pid in d.users:
                rows.append([d.device_id, d.anon, pid, by_pid[pid].household])
    return rows


def _manifest(customers: int, seed: int, end: date, rows: dict[str, int],
              truth: GroundTruth, prospects: list[Prospect],
              shared: list[list]) -> dict:
    files = [
        {"path": "crm_contacts.csv", "source": "crm", "channel": "crm",
         "kind": "csv", "as": "identify", "mapping": "mappings/crm_contacts.yaml",
         "timezone": "UTC"},
        {"path": "web_events.jsonl", "source": "webshop", "channel": "web",
         "kind": "segment-jsonl"},
        {"path": "app_events.jsonl", "source": "app", "channel": "app",
         "kind": "segment-jsonl"},
        {"path": "pos_transactions.csv", "source": "pos", "channel": "pos",
         "kind": "csv", "as": "track", "mapping": "mappings/pos_transactions.yaml",
         "timezone": "Europe/Amsterdam"},
        {"path": "email_engagement.csv", "source": "email", "channel": "email",
         "kind": "csv", "as": "track", "mapping": "mappings/email_engagement.yaml",
         "timezone": "UTC"},
        {"path": "dmp_feed.tsv", "source": "dmp", "channel": "dmp",
         "kind": "aam-tsv", "taxonomy": "dmp_taxonomy.csv"},
    ]
    for f in files:
        f["rows"] = rows[f["path"]]
    return {
        "seed": seed,
        "customers": customers,
        "end": end.isoformat(),
        "generated_at": f"{end.isoformat()}T00:00:00Z",
        "files": files,
        "ground_truth": "ground_truth.csv",
        "lookalike_truth": "lookalike_truth.csv",
        "persons_truth": "persons_truth.csv",
        "shared_devices": "shared_devices.csv",
        "taxonomy": "dmp_taxonomy.csv",
        "persons": truth.persons(),
        "prospects": len(prospects),
        "shared_device_count": len({r[0] for r in shared}),
        "records": sum(rows.values()),
    }
