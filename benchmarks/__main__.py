"""`python -m benchmarks [ingest] [import] [identity] [segments] [realtime] [erasure] [dmp] [predict] [--engines duckdb,postgres] [--quick]`.

Prints one table per benchmark and writes every figure to bench-results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS = ("ingest", "import", "identity", "segments", "realtime", "erasure", "dmp", "predict")


def _table(title: str, rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
        return str(v)

    lines = [f"\n## {title}", "", "| " + " | ".join(columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("which", nargs="*", default=list(BENCHMARKS),
                        help="Which benchmarks: " + ", ".join(BENCHMARKS) + " (default: all).")
    parser.add_argument("--engines", default="duckdb,postgres")
    parser.add_argument("--quick", action="store_true", help="Smaller runs, for a smoke check.")
    parser.add_argument("--segments-pg-full", action="store_true",
                        help="Segments: run PostgreSQL at the full scale too (loading 20M events "
                             "takes many minutes); by default it runs at the --quick scale.")
    parser.add_argument("--pg-server", default=os.environ.get(
        "KLANTBEELD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
    unknown = sorted(set(args.which) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    engines = args.engines.split(",")
    results: dict = {"when": datetime.now(timezone.utc).isoformat(), "cpus": os.cpu_count(),
                     "python": platform.python_version()}
    out = []
    if "ingest" in args.which:
        from . import ingest

        requests = 300 if args.quick else 2000
        rows = ingest.run(engines, requests, 100, 16, args.pg_server)
        results["ingest_http"] = rows
        out.append(_table(f"HTTP /v1/batch ingestion ({requests} requests × 100 events, 16 "
                          "connections, durable)", rows,
                          ["engine", "load", "workers", "ingest_processes", "events_per_s",
                           "floor_events_per_s", "ratio_to_floor", "p50_ms", "p99_ms",
                           "acknowledged", "stored", "unresolved_at_end", "caught_up_s"]))
    if "import" in args.which:
        from . import bulk_import

        count = 200_000 if args.quick else 1_000_000
        rows = bulk_import.run(engines, count, args.pg_server)
        results["import_csv"] = rows
        out.append(_table(f"CSV bulk import ({count:,} receipt lines, 11 columns, mapping)", rows,
                          ["engine", "rows", "seconds", "rows_per_s", "floor_rows_per_s",
                           "ratio_to_floor", "resolve_s", "reimport_duplicates",
                           "reimport_rows_per_s"]))
    if "identity" in args.which:
        from . import identity

        people = 50_000 if args.quick else 1_000_000
        res = identity.run(people, people // 10,
                           pg_server=args.pg_server if "postgres" in engines else None)
        results.update(res)
        out.append(_table(f"Identity: synthetic history ({people:,} people, set-based in DuckDB)",
                          res["identity_data"], ["store", "people", "events", "seconds",
                                                 "events_per_s", "checkpoint_seconds"]))
        out.append(_table("Identity: bulk rebuild (`rebuild`), seconds per stage", res["identity_rebuild"],
                          ["store", "events", "links", "identifiers", "profiles", "components",
                           "replayed_components", "seconds", "read_s", "components_s", "settle_s",
                           "write_s", "peak_rss_gb", "load_1m"]))
        out.append(_table("Identity: connected components on the rebuild's edges (same run)",
                          res["identity_peers"], ["store", "method", "nodes", "edges", "components",
                                                  "build_s", "cc_s", "seconds", "rebuild_ratio",
                                                  "memory_gb", "note"]))
        out.append(_table("Identity: one event in real time (graph of the full store loaded)",
                          res["identity_incremental"], ["path", "count", "p50_ms", "p99_ms",
                                                        "max_ms", "mean_ms", "p99_under_2ms", "note"]))
        out.append(_table("Identity: profile lookup by identifier, open loop", res["identity_lookup"],
                          ["mode", "profiles", "rate", "seconds", "requests", "achieved_rate",
                           "p50_ms", "p99_ms", "max_ms", "errors", "p99_under_20ms", "statuses"]))
    if "segments" in args.which:
        from . import segments

        profiles, events = (100_000, 2_000_000) if args.quick else (1_000_000, 20_000_000)
        pg = (profiles, events) if args.segments_pg_full else (100_000, 2_000_000)
        res = segments.run(engines, profiles, events, args.pg_server, *pg)
        results.update(res)
        out.append(_table("Segments: the store (set-based in DuckDB) and the computed trait "
                          "lifetime_revenue", res["segments_data"],
                          ["engine", "scale", "profiles", "profile_rows", "identifiers", "events",
                           "order_events", "identity_links", "profile_traits", "generate_s",
                           "events_s", "load", "load_s", "trait_refresh_s", "trait_rows"]))
        out.append(_table(f"Segments: typical segment and preview (a warm-up, then the median of "
                          f"{segments.RUNS})", res["segments_queries"],
                          ["engine", "scale", "query", "members", "median_ms", "min_ms", "max_ms",
                           "first_ms", "ratio_to_hand", "target", "met", "same_ids", "load_1m"]))
    if "realtime" in args.which:
        from . import segments_realtime

        profiles, events = (100_000, 2_000_000) if args.quick else (1_000_000, 20_000_000)
        rows = segments_realtime.run(profiles, events)
        results["segments_realtime"] = rows
        out.append(_table("Keeping traits and segments current (DuckDB)", rows,
                          ["scale", "step", "profiles", "mode", "seconds"]))
    if "erasure" in args.which:
        from . import erasure

        profiles, events = (100_000, 2_000_000) if args.quick else (1_000_000, 20_000_000)
        res = erasure.run(profiles, events)
        results.update(res)
        out.append(_table("Erasure: the store (DuckDB, set-based)", res["erasure_store"],
                          ["profiles", "events", "identifiers", "identity_links",
                           "profile_traits", "generate_s", "segments_sync_s", "file_gb"]))
        out.append(_table("Erasure of one person (request → completed) and the zero-hit search",
                          res["erasure"],
                          ["status", "values", "profile_ids", "events_erased", "seconds_total",
                           "delete_s", "compaction_s", "file_scan_s", "file_gb_before",
                           "file_gb_after", "rows_hit_before", "file_hits_before",
                           "rows_hit_after", "file_hits_after", "table_search_s",
                           "others_events_unchanged"]))
        out.append(_table("Erasure: the collection gate on 20,000 events", res["erasure_gate"],
                          ["suppressions_before", "split_20k_ms_before", "suppressions_after",
                           "split_20k_ms_after"]))
    if "dmp" in args.which:
        from . import dmp

        rows, pg_rows = (200_000, 100_000) if args.quick else (10_000_000, 1_000_000)
        res = dmp.run(engines, rows, args.pg_server, pg_rows)
        results["dmp"] = res
        out.append(_table(f"DMP cookie segments: load, expiry of {rows:,} rows (PostgreSQL "
                          f"{pg_rows:,}), cookie read, feed apply", res,
                          ["engine", "step", "rows", "seconds", "per_s", "note"]))
    if "predict" in args.which:
        from . import predict

        customers, profiles = (20_000, 100_000) if args.quick else (100_000, 1_000_000)
        res = predict.run(customers, profiles)
        results.update(res)
        out.append(_table(f"Lifetime value: BG/NBD + Gamma-Gamma fit on {customers:,} simulated "
                          "customers, beside lifetimes (same data, same run)", res["predict_fit"],
                          ["implementation", "customers", "repeat_buyers", "bgnbd_s", "gamma_gamma_s",
                           "seconds", "speed_ratio", "under_2s", "bgnbd_log_likelihood",
                           "gamma_gamma_log_likelihood", "max_rel_diff_to_other",
                           "bgnbd_rel_error_to_truth", "gamma_gamma_rel_error_to_truth",
                           "converged", "note"]))
        out.append(_table("Lifetime value: parameters (true, fitted)", res["predict_fit_params"],
                          ["parameter", "true", "klantbeeld", "lifetimes", "rel_diff"]))
        out.append(_table(f"Lifetime value: scoring {profiles:,} profiles (DuckDB workspace)",
                          res["predict_score"], ["stage", "profiles", "orders", "customers",
                                                 "seconds", "peak_rss_gb", "trait_rows",
                                                 "under_30s", "load_1m"]))
    print("\n".join(out))
    # Keep the figures of benchmarks not run this time; replace those that were.
    latest = Path("bench-results/latest.json")
    latest.parent.mkdir(exist_ok=True)
    kept = json.loads(latest.read_text()) if latest.exists() else {}
    latest.write_text(json.dumps({**kept, **results}, indent=2, default=str))


if __name__ == "__main__":
    main()
