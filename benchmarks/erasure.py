"""Erasure at scale: one person out of a DuckDB store of 1M profiles and 20M events.

1. The store of the segment benchmark (:mod:`.segments_data`): profiles, identifiers (user id,
   e-mail, the cookies of merged profiles), events with the user id in column and payload, identity
   links and sent traits (the e-mail among them), generated set-based in DuckDB and checkpointed.
2. The person: a profile that has a merged profile (so a cookie too), with an index of the most
   digits (six at a million), so that none of their values is a substring of someone else's
   (``u123456`` vs ``u1234567`` cannot occur below a million) and a plain substring search is an
   exact one.
3. Before: every table searched for the person's values (one pass per table, each row cast to
   text), and the database file's bytes.
4. The erasure, as production runs it: ``dsr.submit`` (the e-mail, raw) and
   ``dsr.process_pending`` — the deletes in one transaction, then the compaction of the file and
   the byte search of the new file; the seconds of each part.
5. After: the same table search, other people's event counts, and — once the workspace is closed —
   the file's bytes again. Zero hits expected everywhere.
6. The collection gate's cost: the writer's split of 20,000 event rows with no suppression and
   with the erased person suppressed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from klantbeeld.privacy import dsr
from klantbeeld.privacy.suppression import install
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

from . import segments_data as data

DUCKDB_MEMORY = "6GB"


def _settings(home: Path, url: str):
    return load_settings(home=home, database_url=url, resolve_identities=False)


def _pick(ws: Workspace, n: int) -> dict:
    """A survivor with a merged profile and an index of the most digits: its values and profile
    ids."""
    digits = len(str(n - 1))
    row = ws.engine.fetchone(
        "SELECT i.id_value, i.profile_id FROM identifiers i JOIN profiles p "
        "ON p.merged_into = i.profile_id WHERE i.id_type = 'user_id' "
        "AND length(i.id_value) = $len AND i.id_value >= $low ORDER BY i.id_value LIMIT 1",
        {"len": digits + 1, "low": "u1" + "0" * (digits - 1)})
    user, pid = row
    values = [v for (v,) in ws.engine.fetchall(
        "SELECT id_value FROM identifiers WHERE profile_id = $p ORDER BY id_value", {"p": pid})]
    pids = [pid] + [p for (p,) in ws.engine.fetchall(
        "SELECT profile_id FROM profiles WHERE merged_into = $p", {"p": pid})]
    email = next(v for v in values if "@" in v)
    return {"user": user, "email": email, "values": values, "profile_ids": pids}


def _search_tables(ws: Workspace, needles: list[str]) -> tuple[dict, float]:
    """(table → hits, seconds): rows whose text contains any needle, one pass per table."""
    started = time.perf_counter()
    hits = {}
    tables = [t for (t,) in ws.engine.fetchall(
        "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1")]
    cond = " OR ".join(f"strpos(txt, $n{k}) > 0" for k in range(len(needles)))
    params = {f"n{k}": v.lower() for k, v in enumerate(needles)}
    for table in tables:
        n = ws.engine.fetchone(f"SELECT count(*) FROM (SELECT lower(CAST(t AS VARCHAR)) AS txt "
                               f"FROM {table} t) x WHERE {cond}", params)[0]
        if n:
            hits[table] = n
    return hits, time.perf_counter() - started


def _file_hits(path: Path, needles: list[str]) -> tuple[int, float]:
    from klantbeeld.privacy.scrub import file_hits

    started = time.perf_counter()
    paths = [path, path.with_name(path.name + ".wal")]
    return file_hits(paths, needles), time.perf_counter() - started


def _gate_cost(ws: Workspace) -> dict:
    """Seconds the writer's gate takes for 20,000 event rows, without and with a suppression."""
    gate = install(ws)
    with ws.engine.session() as s:
        rows = s.fetch_arrow(
            "SELECT source_id, type, user_id, anonymous_id, device_id, previous_id, "
            "CAST(payload AS VARCHAR) AS payload FROM events WHERE seq <= 20000")
    rows = pa.table({c: rows.column(c).cast(pa.string()) for c in rows.column_names})
    out = {}
    for label in ("suppressed_0", "suppressed_n"):
        if label == "suppressed_n":
            gate.refresh(force=True)
        started = time.perf_counter()
        gate.split(rows)
        out[f"gate_{label}_ms_per_20k"] = round(1000 * (time.perf_counter() - started), 2)
    out["gate_suppressions"] = gate.size
    return out


def run(profiles: int, events: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="kb-bench-erasure-"))
    try:
        path = home / "bench.duckdb"
        url = f"duckdb:///{path.as_posix()}"
        Workspace.open(_settings(home, url)).close()       # migrations
        import duckdb

        con = duckdb.connect(str(path))
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        started = time.perf_counter()
        counts = data.fill(con, profiles, events)
        # The generated links are the resolver's output: mark every event resolved, traits and
        # segments caught up (as in a store that has been running).
        con.execute("UPDATE identity_state SET value = (SELECT max(seq) FROM events) "
                    "WHERE name IN ('resolved_seq', 'segments_seq')")
        con.execute("CHECKPOINT")
        con.close()
        store = {"profiles": counts["profiles"], "events": counts["events"],
                 "identifiers": counts["identifiers"], "identity_links": counts["identity_links"],
                 "profile_traits": counts["profile_traits"],
                 "generate_s": round(time.perf_counter() - started, 1),
                 "file_gb": round(path.stat().st_size / 1e9, 2)}

        ws = Workspace.open(_settings(home, url))
        with ws.engine.session() as s:
            s.raw.execute(f"SET GLOBAL memory_limit = '{DUCKDB_MEMORY}'")
        started = time.perf_counter()
        ws.segments  # built-in traits and segments computed once, as a running server has them
        store["segments_sync_s"] = round(time.perf_counter() - started, 1)
        person = _pick(ws, profiles)
        needles = person["values"] + person["profile_ids"]
        before_tables, before_search_s = _search_tables(ws, needles)
        others = ws.engine.fetchone("SELECT count(*) FROM events WHERE user_id <> $u",
                                    {"u": person["user"]})[0]
        gate_before = _gate_cost(ws)
        before_file, _ = _file_hits(path, needles)

        made = dsr.submit(ws, "erasure", [{"type": "email", "value": person["email"]}],
                          "benchmark")
        started = time.perf_counter()
        (done,) = dsr.process_pending(ws, "benchmark")
        total = time.perf_counter() - started
        result = done["result"]
        storage = result["storage"]

        after_tables, after_search_s = _search_tables(ws, needles)
        others_after = ws.engine.fetchone("SELECT count(*) FROM events WHERE user_id <> $u",
                                          {"u": person["user"]})[0]
        gate_after = _gate_cost(ws)
        ws.close()
        after_file, file_scan_s = _file_hits(path, needles)
        erasure = {
            "request_id": made["request_id"], "status": done["status"],
            "values": len(person["values"]), "profile_ids": len(person["profile_ids"]),
            "events_erased": result["events"], "seconds_total": round(total, 2),
            "compaction_s": storage["compaction"]["seconds"],
            "delete_s": round(total - storage["seconds"], 2),
            "file_scan_s": storage["scan_seconds"],
            "file_gb_before": round(storage["compaction"]["bytes_before"] / 1e9, 2),
            "file_gb_after": round(storage["compaction"]["bytes_after"] / 1e9, 2),
            "rows_hit_before": sum(before_tables.values()),
            "tables_hit_before": ", ".join(sorted(before_tables)),
            "file_hits_before": before_file,
            "rows_hit_after": sum(after_tables.values()),
            "file_hits_after": after_file, "file_hits_in_result": storage["file_hits"],
            "table_search_s": round(after_search_s, 1),
            "others_events_unchanged": others == others_after,
        }
        gate = {"suppressions_before": gate_before["gate_suppressions"],
                "split_20k_ms_before": gate_before["gate_suppressed_0_ms_per_20k"],
                "suppressions_after": gate_after["gate_suppressions"],
                "split_20k_ms_after": gate_after["gate_suppressed_n_ms_per_20k"]}
        return {"erasure_store": [store], "erasure": [erasure], "erasure_gate": [gate],
                "erasure_search_before_s": round(before_search_s, 1),
                "erasure_file_scan_s": round(file_scan_s, 2)}
    finally:
        shutil.rmtree(home, ignore_errors=True)
