"""Identity resolution at scale, beside its peers on the same edges in the same run.

1. A synthetic event history (see :mod:`.identity_data`) generated set-based in DuckDB.
2. The bulk rebuild (``klantbeeld.identity.rebuild``) on it, with its stages.
3. Connected components on the rebuild's own edges (each event's identifiers linked to its primary
   one): ``scipy.sparse.csgraph`` alone (the floor) and networkx; networkx also on a 10 % sample
   of the people, where the rebuild is timed as well.
4. One event, real time: the in-memory :meth:`IdentityGraph.resolve` step, and the whole path
   (append one event, ``Resolver.catch_up``: extract, resolve, persist, commit).
5. Profile lookup by identifier at a fixed request rate (open loop: latency counted from the time a
   request was due, so a slow answer also delays the ones queued behind it).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from klantbeeld.identity.identifiers import event_identifiers
from klantbeeld.identity.links import read_links
from klantbeeld.identity.rebuild import components, rebuild
from klantbeeld.workspace import Workspace

from . import identity_data

NETWORKX_MEMORY_SHARE = 0.6   # run networkx on the full edges only if its estimate fits in this
LOOKUP_SAMPLE = 20_000        # distinct known identifiers the lookup draws from
UNLOADED = 20                 # HTTP lookups sent one at a time before the paced run
WARM_UP = 200                 # HTTP lookups sent (not counted) before those
ANSWER_WAIT = 30              # seconds the HTTP lookup waits for answers after its last request


# -- helpers -----------------------------------------------------------------------------------------
def _rss_gb() -> float:
    """Resident memory of this process now (GB)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 1e9


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def _available_gb() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1e6
    return 0.0


def _ms(samples: list[float]) -> dict:
    a = np.array(samples) * 1000
    return {"count": len(a), "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()),
            "mean_ms": float(a.mean())}


def _open(home: Path) -> Workspace:
    return Workspace.open(home=home, resolve_identities=False)


def _generate(ws: Workspace, people: int) -> dict:
    started = time.perf_counter()
    with ws.engine.transaction() as tx:
        figures = identity_data.fill(tx.raw, people)
    generated = time.perf_counter() - started
    ws.engine.checkpoint()
    return {"people": people, "events": figures["events"], "seconds": generated,
            "events_per_s": figures["events"] / generated,
            "checkpoint_seconds": time.perf_counter() - started - generated}


# -- 2. rebuild, 3. peers ------------------------------------------------------------------------------
def _rebuild(ws: Workspace, label: str) -> dict:
    gc.collect()
    load = os.getloadavg()[0]
    report = rebuild(ws.engine, ws.resolver)
    stages = report.pop("stages")
    return {"store": label, **report, **{f"{k}_s": v for k, v in stages.items()},
            "peak_rss_gb": _peak_rss_gb(), "load_1m": f"{load:.1f}→{os.getloadavg()[0]:.1f}"}


def _edges(ws: Workspace) -> tuple[np.ndarray, np.ndarray, int, float]:
    """The edges the rebuild takes components of: (primary identifier, identifier) per link row."""
    started = time.perf_counter()
    links = read_links(ws.engine, ws.resolver.normaliser, set())
    primary, _, _ = components(links)
    return primary, links.iid.copy(), links.n_ids, time.perf_counter() - started


def _scipy(a: np.ndarray, b: np.ndarray, n: int) -> dict:
    started = time.perf_counter()
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    built = time.perf_counter()
    count, _ = connected_components(graph, directed=False)
    done = time.perf_counter()
    return {"method": "scipy.sparse.csgraph.connected_components", "components": int(count),
            "build_s": built - started, "cc_s": done - built, "seconds": done - started}


def _networkx(a: np.ndarray, b: np.ndarray) -> dict:
    import networkx as nx

    gc.collect()
    before = _rss_gb()
    started = time.perf_counter()
    graph = nx.Graph()
    graph.add_edges_from(zip(a.tolist(), b.tolist()))
    built = time.perf_counter()
    count = sum(1 for _ in nx.connected_components(graph))
    done = time.perf_counter()
    grown = _rss_gb() - before
    del graph
    gc.collect()
    return {"method": "networkx.connected_components", "components": count,
            "build_s": built - started, "cc_s": done - built, "seconds": done - started,
            "memory_gb": grown}


def _peers(ws: Workspace, label: str, rebuild_row: dict, networkx: bool | float) -> list[dict]:
    """scipy alone and (if ``networkx`` is True, or a memory estimate in GB that fits) networkx on
    the rebuild's edges. Returns rows with the rebuild's ratio to each."""
    a, b, n, read_s = _edges(ws)
    rows = [{"store": label, "method": "klantbeeld rebuild (whole)", "nodes": n, "edges": len(a),
             "components": rebuild_row["components"], "seconds": rebuild_row["seconds"]}]
    sc = _scipy(a, b, n)
    rows.append({"store": label, "nodes": n, "edges": len(a), **sc})
    if networkx is True or (networkx and networkx < NETWORKX_MEMORY_SHARE * _available_gb()):
        rows.append({"store": label, "nodes": n, "edges": len(a), **_networkx(a, b)})
    elif networkx:
        rows.append({"store": label, "method": "networkx.connected_components", "nodes": n,
                     "edges": len(a), "seconds": float("nan"),
                     "note": f"skipped: needs about {networkx:.0f} GB, "
                             f"{_available_gb():.0f} GB available"})
    for row in rows:
        if row.get("seconds") == row.get("seconds") and row.get("seconds"):
            row["rebuild_ratio"] = rebuild_row["seconds"] / row["seconds"]
    rows[0]["read_again_s"] = read_s
    return rows


# -- 4. one event, real time -----------------------------------------------------------------------------
def _event_mix(people: int, count: int, prefix: str, seed: int) -> list[dict]:
    """``count`` events mixing known and new identifiers: 40 % a known cookie; 15 % a new cookie;
    15 % a login joining one of those new cookies to a known user (a merge); 15 % a login on a
    known user's own cookie; 10 % a sign-up (all new); 5 % a login on someone else's cookie (the
    user_id limit keeps the cookie out)."""
    rng = random.Random(seed)
    fresh: list[str] = []
    events = []
    for k in range(count):
        p, q = rng.randrange(people), rng.randrange(people)
        email = f"klant{p}@{identity_data.EMAIL_DOMAIN}"
        r = rng.random()
        if r < 0.40:
            e = {"type": "page", "anonymous_id": f"c{p}_0"}
        elif r < 0.55:
            fresh.append(f"{prefix}c{k}")
            e = {"type": "page", "anonymous_id": fresh[-1]}
        elif r < 0.70:
            cookie = fresh.pop(rng.randrange(len(fresh))) if fresh else f"{prefix}c{k}"
            e = {"type": "identify", "user_id": f"u{p}", "anonymous_id": cookie, "email": email}
        elif r < 0.85:
            e = {"type": "identify", "user_id": f"u{p}", "anonymous_id": f"c{p}_1", "email": email}
        elif r < 0.95:
            e = {"type": "identify", "user_id": f"{prefix}u{k}", "anonymous_id": f"{prefix}c{k}",
                 "email": f"{prefix}{k}@{identity_data.EMAIL_DOMAIN}"}
        else:
            e = {"type": "identify", "user_id": f"u{p}", "anonymous_id": f"c{q}_0",
                 "email": email}
        e["payload"] = (json.dumps({"type": "identify", "traits": {"email": e["email"]}})
                        if "email" in e else "{}")
        events.append(e)
    return events


def _resolve_in_memory(ws: Workspace, events: list[dict], first_seq: int) -> list[float]:
    """(a) IdentityGraph.resolve alone, one event at a time, on the loaded graph. The changes are
    drained but never persisted: run this last (it leaves the graph ahead of the store)."""
    resolver = ws.resolver
    graph = resolver.graph
    at = datetime(2026, 11, 29, tzinfo=UTC)
    prepared = [event_identifiers(resolver.normaliser, e["type"], e.get("user_id"),
                                  e.get("anonymous_id"), None, None, e["payload"]) for e in events]
    times = []
    clock = time.perf_counter
    for k, idents in enumerate(prepared):
        started = clock()
        graph.resolve(idents, first_seq + k, at)
        times.append(clock() - started)
        if k % 100 == 99:
            graph.drain()
    graph.drain()
    resolver.invalidate()
    return times


def _real_time(ws: Workspace, events: list[dict]) -> tuple[list[float], list[float]]:
    """(b) append one event (its own transaction) then ``catch_up``; per event the catch_up time
    and the append + catch_up time."""
    resolver = ws.resolver
    catch, whole = [], []
    sql = ("INSERT INTO events (message_id, source_id, channel, origin, type, user_id, anonymous_id,"
           ' "timestamp", received_at, payload) VALUES ($m, \'bench\', \'web\', \'http\', $t, $u, '
           "$a, $ts, $ts, $p)")
    for k, e in enumerate(events):
        now = datetime.now(UTC)
        started = time.perf_counter()
        with ws.engine.transaction() as tx:
            tx.execute(sql, {"m": f"rt{k}", "t": e["type"], "u": e.get("user_id"),
                             "a": e.get("anonymous_id"), "ts": now, "p": e["payload"]})
        appended = time.perf_counter()
        done = resolver.catch_up()
        finished = time.perf_counter()
        if done != 1:
            raise RuntimeError(f"catch_up resolved {done} events, expected 1")
        catch.append(finished - appended)
        whole.append(finished - started)
    return catch, whole


def _incremental(ws: Workspace, people: int, resolves: int, appends: int) -> list[dict]:
    gc.collect()
    started = time.perf_counter()
    left = ws.resolver.catch_up()           # loads the graph; nothing is left to resolve
    if left:
        raise RuntimeError(f"the rebuild left {left} events unresolved")
    load_s = time.perf_counter() - started
    rss = _rss_gb()
    catch, whole = _real_time(ws, _event_mix(people, appends, "rt", 11))
    max_seq = ws.engine.fetchone("SELECT max(seq) FROM events")[0]
    memory = _resolve_in_memory(ws, _event_mix(people, resolves, "mem", 7), max_seq + 1)
    note = f"graph loaded from the store in {load_s:.1f} s; process RSS {rss:.1f} GB"
    rows = [
        {"path": "(a) IdentityGraph.resolve, in memory", **_ms(memory)},
        {"path": "(b) append 1 event + Resolver.catch_up", **_ms(whole)},
        {"path": "(b) of which Resolver.catch_up", **_ms(catch)},
    ]
    for row in rows:
        row["p99_under_2ms"] = "yes" if row["p99_ms"] < 2 else "no"
    rows[0]["note"] = note
    rows[0]["graph_load_s"] = load_s
    return rows


# -- 5. profile lookup ------------------------------------------------------------------------------------
def _profiles_route() -> bool:
    """Whether the HTTP route GET /v1/profiles/{type}:{value} exists (another change adds it)."""
    if importlib.util.find_spec("klantbeeld.profiles") is None:
        return False
    from klantbeeld.app import create_app

    return any(path.startswith("/v1/profiles/{") for path in create_app().openapi()["paths"])


def _known(ws: Workspace, people: int, count: int) -> list[tuple[str, str]]:
    return [tuple(r) for r in ws.engine.fetchall(
        identity_data.known_identifiers_sql(people, count, 3))]


def _paced(call, items: list, rate: float, seconds: float, threads: int = 8) -> dict:
    """Call ``call(item)`` at ``rate`` per second for ``seconds``, open loop: a scheduler hands each
    call to a pool of ``threads`` (as a server's thread pool would) at its due time, whatever the
    earlier ones are doing; latency runs from the due time to the answer. Gives up once more than
    ten seconds of requests are waiting (those not sent count as errors)."""
    from concurrent.futures import ThreadPoolExecutor

    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    pending = 0
    lock = threading.Lock()

    def one(item, due):
        nonlocal errors, pending
        try:
            ok = call(item)
        except Exception:  # noqa: BLE001 - any failure of a lookup counts as an error
            ok = False
        finished = time.perf_counter()
        with lock:
            latencies.append(finished - due)
            pending -= 1
            if not ok:
                errors += 1

    start = time.perf_counter() + 0.05
    with ThreadPoolExecutor(threads) as pool:
        for k in range(total):
            due = start + k / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            if pending > 10 * rate:
                errors += total - k
                break
            with lock:
                pending += 1
            pool.submit(one, items[k % len(items)], due)
    elapsed = time.perf_counter() - start
    return {"requests": total, "achieved_rate": len(latencies) / elapsed, "errors": errors,
            **_ms(latencies)}


def _lookup_sql(ws: Workspace, known: list, rate: float, seconds: float, api: bool) -> list[dict]:
    engine = ws.engine
    # By value alone, the type checked in Python, as the profile lookup does: DuckDB serves a
    # one-column equality from its index and scans for two.
    by_id = "SELECT id_type, identifier_id, profile_id FROM identifiers WHERE id_value = $v"
    members = "SELECT id_type, id_value FROM identifiers WHERE profile_id = $p"

    def profile_id(ident) -> list:
        return [r for r in engine.fetchall(by_id, {"v": ident[1]}) if r[0] == ident[0]]

    def with_members(ident) -> bool:
        with engine.session() as s:
            found = [r for r in s.fetchall(by_id, {"v": ident[1]}) if r[0] == ident[0]]
            return bool(found) and bool(s.fetchall(members, {"p": found[0][2]}))

    rows = []
    tag = "store lookup, in process (floor)" if api else "store lookup (API not built yet)"
    for label, call in ((f"{tag}: identifier → profile id", profile_id),
                        (f"{tag}: + the profile's identifiers (2 queries)", with_members)):
        unloaded = []
        for ident in known[-UNLOADED * 10:]:  # one at a time: warms up, and the latency alone
            started = time.perf_counter()
            call(ident)
            unloaded.append(time.perf_counter() - started)
        rows.append({"mode": f"{label}, one at a time ({len(unloaded)})", "rate": "-",
                     "requests": len(unloaded),
                     "errors": 0, **_ms(unloaded)})
        result = _paced(lambda i, call=call: bool(call(i)), known, rate, seconds)
        rows.append({"mode": f"{label}, open loop, 8 threads", "rate": rate, "seconds": seconds,
                     **result})
    return rows + _documents(ws, known) if api else rows


def _documents(ws: Workspace, known: list) -> list[dict]:
    """The whole profile document (``resolve_ref`` + ``get_profile``), in process, one at a time:
    what one HTTP lookup costs the server before HTTP."""
    from klantbeeld.profiles.lookup import get_profile, resolve_ref

    took = []
    for ident in known[-UNLOADED * 10:]:
        started = time.perf_counter()
        get_profile(ws, resolve_ref(ws, f"{ident[0]}:{ident[1]}"))
        took.append(time.perf_counter() - started)
    return [{"mode": f"profile document in process (resolve_ref + get_profile), one at a time "
                     f"({len(took)}), {ws.engine.name}", "rate": "-", "requests": len(took),
             "errors": 0, **_ms(took)}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lookup_http(home: Path, known: list, rate: float, seconds: float,
                 database: str | None = None, workers: int = 1) -> list[dict]:
    """The HTTP lookups against ``klantbeeld serve`` on the store in ``home`` (or ``database``,
    a PostgreSQL URL, served by ``workers`` processes)."""
    import httpx

    store = ["--data-dir", str(home)] + (["--database", database] if database else [])
    keys = json.loads(subprocess.run(
        [sys.executable, "-m", "klantbeeld.cli", "init", "--channel", "web", "--json", *store],
        check=True, capture_output=True, text=True).stdout)
    key = keys["admin_key"]
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "klantbeeld.cli", "serve", "--port", str(port), *store,
         "--workers", str(workers), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        result = asyncio.run(_drive_http(port, key, known, rate, seconds))
    finally:
        proc.terminate()
        proc.wait()
    where = "PostgreSQL" if database else "DuckDB"
    serving = f"{where}, {workers} server process{'es' if workers > 1 else ''}"
    return [{"mode": f"HTTP GET /v1/profiles/{{type}}:{{value}}, one at a time ({UNLOADED}), "
                     f"{serving}", "rate": "-", **result["unloaded"]},
            {"mode": f"HTTP GET /v1/profiles/{{type}}:{{value}} (admin key), open loop, {serving}",
             "rate": rate, "seconds": seconds, **result["paced"]}]


async def _drive_http(port: int, key: str, known: list, rate: float, seconds: float) -> dict:
    from urllib.parse import quote

    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    statuses_unloaded: dict[int | str, int] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers,
                                 limits=limits, timeout=ANSWER_WAIT) as client:
        # Warm-up, not counted: 200 requests, 16 at a time, so that every server process has
        # opened its connections and imported what a lookup needs before the clock starts.
        warm = [f"/v1/profiles/{quote(i[0] + ':' + i[1], safe=':@')}" for i in known[-WARM_UP:]]
        for k in range(0, len(warm), 16):
            await asyncio.gather(*(client.get(path) for path in warm[k:k + 16]))
        unloaded = []
        for ident in known[:UNLOADED]:  # one at a time: the latency without load
            started = time.perf_counter()
            r = await client.get(f"/v1/profiles/{quote(ident[0] + ':' + ident[1], safe=':@')}")
            unloaded.append(time.perf_counter() - started)
            statuses_unloaded[r.status_code] = statuses_unloaded.get(r.status_code, 0) + 1

        async def one(ident, due):
            try:
                r = await client.get(f"/v1/profiles/{quote(ident[0] + ':' + ident[1], safe=':@')}")
                status = r.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            latencies.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1

        # The load generator's own garbage collections (thousands of tasks and responses) paused
        # it for 50-80 ms at a time, and every request due meanwhile counted that pause: off
        # during the paced run, so the tail measured is the server's.
        gc.collect()
        gc.disable()
        total = int(rate * seconds)
        tasks = []
        not_sent = 0
        start = time.perf_counter() + 0.05
        for k in range(total):
            due = start + k / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            if len(tasks) - len(latencies) > 10 * rate:  # ten seconds of requests waiting
                not_sent = total - k
                break
            tasks.append(asyncio.create_task(one(known[k % len(known)], due)))
        _, late = await asyncio.wait(tasks, timeout=ANSWER_WAIT) if tasks else (None, set())
        for task in late:
            task.cancel()
        elapsed = time.perf_counter() - start
        gc.enable()
    if not_sent:
        statuses["not sent (backlog)"] = not_sent
    if late:
        statuses[f"no answer {ANSWER_WAIT} s after the last send"] = len(late)
    errors = sum(n for s, n in statuses.items() if s != 200)
    return {"paced": {"requests": total, "achieved_rate": len(latencies) / elapsed,
                      "errors": errors, "statuses": statuses, **_ms(latencies)},
            "unloaded": {"requests": len(unloaded), "statuses": statuses_unloaded,
                         "errors": sum(n for s, n in statuses_unloaded.items() if s != 200),
                         **_ms(unloaded)}}


# -- the run ------------------------------------------------------------------------------------------------
def _lookup_postgres(tmp: Path, known: list, rate: float, seconds: float,
                     pg_server: str) -> list[dict]:
    """The same lookups on PostgreSQL: the full store copied over, served by two processes."""
    from .identity_pg import copy_store
    from .ingest import fresh_pg_database

    import psycopg

    url = fresh_pg_database(pg_server)
    try:
        with _open(tmp / "full") as ws:
            copied = copy_store(ws.engine, url, tmp / "pg")
        print(f"identity: store copied to PostgreSQL in {copied['seconds']:.0f} s",
              file=sys.stderr)
        with Workspace.open(home=tmp / "pg", database_url=url, resolve_identities=False) as ws:
            # The built-in traits and segments, computed once for everyone, as a first server
            # start does — here, so that no server process is still at it while another serves.
            ws.segments  # noqa: B018 - the property syncs
            rows = _documents(ws, known)
        return rows + _lookup_http(tmp / "pg", known, rate, seconds, database=url, workers=2)
    finally:
        with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def run(people: int, sample_people: int, resolves: int = 10_000, appends: int = 1_000,
        rate: float = 200, lookup_seconds: float = 30,
        pg_server: str | None = None) -> dict[str, list[dict]]:
    tmp = Path(tempfile.mkdtemp(prefix="kb-identity-bench-"))
    out: dict[str, list[dict]] = {"identity_data": [], "identity_rebuild": [],
                                  "identity_peers": []}
    try:
        # The 10 % sample first: networkx on it also tells how much memory the full edges need.
        sample_label = f"{sample_people:,} people (10 % sample)"
        with _open(tmp / "sample") as ws:
            out["identity_data"].append({"store": sample_label, **_generate(ws, sample_people)})
            row = _rebuild(ws, sample_label)
            out["identity_rebuild"].append(row)
            peers = _peers(ws, sample_label, row, networkx=True)
            out["identity_peers"] += peers
            # Rebuilding a store whose identity tables are already filled (the usual case for
            # `klantbeeld identity rebuild`): the same work, but the old rows are deleted first.
            out["identity_rebuild"].append(_rebuild(ws, sample_label + ", again (tables filled)"))
        shutil.rmtree(tmp / "sample")
        nx_row = next(r for r in peers if r["method"].startswith("networkx"))
        nx_estimate = max(nx_row["memory_gb"], 0.1) * people / sample_people * 1.2

        label = f"{people:,} people"
        with _open(tmp / "full") as ws:
            out["identity_data"].insert(0, {"store": label, **_generate(ws, people)})
            row = _rebuild(ws, label)
            out["identity_rebuild"].insert(0, row)
            out["identity_peers"] = _peers(ws, label, row, networkx=nx_estimate) + \
                out["identity_peers"]
            gc.collect()
            out["identity_incremental"] = _incremental(ws, people, resolves, appends)
            gc.collect()
            known = _known(ws, people, LOOKUP_SAMPLE)
            api = _profiles_route()
            out["identity_lookup"] = _lookup_sql(ws, known, rate, lookup_seconds, api)
            profiles = ws.engine.fetchone(
                "SELECT count(*) FROM profiles WHERE merged_into IS NULL")[0]
        if api:
            out["identity_lookup"] += _lookup_http(tmp / "full", known, rate, lookup_seconds)
        if api and pg_server:
            out["identity_lookup"] += _lookup_postgres(tmp, known, rate, lookup_seconds, pg_server)
        for r in out["identity_lookup"]:
            r["profiles"] = profiles
            r["p99_under_20ms"] = "yes" if r["p99_ms"] < 20 else "no"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
