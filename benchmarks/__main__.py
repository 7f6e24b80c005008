"""`python -m benchmarks [ingest] [import] [--engines duckdb,postgres] [--quick]`.

Prints one table per benchmark and writes every figure to bench-results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path


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
    parser.add_argument("which", nargs="*", default=["ingest", "import"])
    parser.add_argument("--engines", default="duckdb,postgres")
    parser.add_argument("--quick", action="store_true", help="Smaller runs, for a smoke check.")
    parser.add_argument("--pg-server", default=os.environ.get(
        "KLANTBEELD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
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
                          ["engine", "workers", "ingest_processes", "events_per_s", "floor_events_per_s", "ratio_to_floor",
                           "p50_ms", "p99_ms", "acknowledged", "stored"]))
    if "import" in args.which:
        from . import bulk_import

        count = 200_000 if args.quick else 1_000_000
        rows = bulk_import.run(engines, count, args.pg_server)
        results["import_csv"] = rows
        out.append(_table(f"CSV bulk import ({count:,} receipt lines, 11 columns, mapping)", rows,
                          ["engine", "rows", "seconds", "rows_per_s", "floor_rows_per_s",
                           "ratio_to_floor", "reimport_duplicates", "reimport_rows_per_s"]))
    print("\n".join(out))
    Path("bench-results").mkdir(exist_ok=True)
    Path("bench-results/latest.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
