"""``klantbeeld demo``: demo data → a fresh workspace → every file imported, ready to serve.

This is what ``make demo`` runs before ``klantbeeld serve``. It goes through the same public steps
a user takes (init, sources, import, the DMP feed and taxonomy, a model run), so the demo shows
the product, not a shortcut.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ..collect.importer import import_file
from ..collect.sources import SourceError, create_key, create_source, get_source
from ..dmp import apply_feed, load_taxonomy_file, read_feed, workspace_config
from ..identity.evaluate import evaluate, read_truth
from ..identity.matching import run_matching
from ..predict.cards import metrics
from ..settings import Settings
from ..workspace import Workspace
from .generate import generate

KEYS_FILE = "demo-keys.json"


def run_demo(settings: Settings, out: Path, customers: int = 2000, seed: int = 42,
             fresh: bool = False, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Generate (unless present), create the workspace, import every file; return a summary."""
    started = time.perf_counter()
    manifest_path = out / "manifest.json"
    if fresh or not _same_data(manifest_path, customers, seed):
        say(f"generating demo data for {customers:,} customers (seed {seed}) in {out}")
        shutil.rmtree(out, ignore_errors=True)
        manifest = generate(out, customers=customers, seed=seed)
    else:
        manifest = json.loads(manifest_path.read_text())
        say(f"using the demo data in {out}")
    if fresh and settings.database_url is None:
        _remove_embedded_store(settings)
    _install_identity_rules(settings)
    with Workspace.open(settings) as ws:
        init = ws.init([])
        keys: dict[str, str] = {}
        imports = []
        for entry in manifest["files"]:
            keys[entry["source"]] = _source_key(ws, entry["source"], entry["channel"])
            if entry["kind"] == "aam-tsv":
                say(f"loading the DMP taxonomy and {entry['path']} into source {entry['source']}")
                imports.append(_load_dmp(ws, out, entry))
                continue
            say(f"importing {entry['path']} into source {entry['source']}")
            report = import_file(
                ws, out / entry["path"], entry["source"],
                as_=entry.get("as") or ("segment" if entry["kind"] == "segment-jsonl" else None),
                mapping=out / entry["mapping"] if entry.get("mapping") else None,
            )
            imports.append({"file": entry["path"], "source": entry["source"],
                            "rows": report.rows_read, "accepted": report.accepted,
                            "duplicates": report.duplicates, "failed": report.failed,
                            "seconds": round(report.elapsed_seconds, 2)})
        say("matching profiles that share no identifier (probabilistic)")
        matching = run_matching(ws, actor="demo")
        identity = evaluate(ws.engine, read_truth(out / manifest["ground_truth"]))
        say("computing traits and segments")
        ws.update_segments()
        say("training the predictive models (lifetime value, RFM, churn, affinity, look-alike)")
        run = ws.predict.run(actor="demo")
        models = [{"model": m["model"], "status": m["status"], "error": m.get("error"),
                   "metrics": metrics(m["model"], m.get("card"))}
                  for m in ws.predict.models()]
        segments = [{"id": s["id"], "name": s["name"], "size": s["size"]}
                    for s in ws.segments.list()]
        say("training a look-alike audience of loyal customers' cookies (DMP)")
        lookalike = _dmp_lookalike(ws, out / manifest["lookalike_truth"])
        sample = ws.engine.fetchone(
            "SELECT i.id_type || ':' || i.id_value FROM identifiers i WHERE i.id_type = 'email' "
            "AND i.profile_id IN (SELECT profile_id FROM identifiers WHERE id_type = 'user_id') "
            "ORDER BY i.identifier_id LIMIT 1")
    summary = {"admin_key": init["admin_key"], "write_keys": keys, "imports": imports,
               "matching": matching, "identity": identity, "segments": segments,
               "models": models, "predict_seconds": run["took_s"], "dmp_lookalike": lookalike,
               "sample_profile": sample[0] if sample else None,
               "data": str(out), "workspace": str(settings.home),
               "seconds": round(time.perf_counter() - started, 1)}
    _write_keys(settings.home, summary)
    return summary


def _load_dmp(ws: Workspace, out: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """The demo DMP: its taxonomy, then its Audience Manager feed (cookie → segment ids)."""
    started = time.perf_counter()
    load_taxonomy_file(ws.engine, out / entry["taxonomy"])
    report = apply_feed(ws.engine, entry["source"], read_feed(out / entry["path"], "aam"),
                        config=workspace_config(ws), name=entry["path"])
    return {"file": entry["path"], "source": entry["source"], "rows": report.lines,
            "accepted": report.lines - report.rejected, "duplicates": 0,
            "failed": report.rejected, "cookies": report.cookies,
            "unknown_segments": report.unknown_total,
            "seconds": round(time.perf_counter() - started, 2)}


def _dmp_lookalike(ws: Workspace, truth_path: Path) -> dict[str, Any]:
    """Look-alike cookies of the loyal segment, and how many of the top 5 % are the planted
    loyal-alikes of the demo data (lift against their share among all scored cookies)."""
    from datetime import datetime, timezone

    from ..dmp.lookalike import build

    truth = {}
    with open(truth_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            truth[row["cookie_id"]] = row["is_seed_like"] == "1"
    with ws.engine.session() as s:
        try:
            result = build(s, "loyal", datetime.now(timezone.utc),
                           privacy_config=ws.privacy_config)
        except ValueError as exc:   # a small demo: too few loyal customers' cookies
            return {"error": str(exc)}
    scored = [truth.get(c, False) for c in result.cookie_ids]
    top = scored[:max(1, len(scored) * 5 // 100)]
    base = sum(scored) / len(scored) if scored else 0.0
    quality = result.quality(5.0)
    return {"seed_cookies": result.card.get("positives"), "scored": len(scored),
            "top5_lift_vs_truth": round(sum(top) / len(top) / base, 2) if base else None,
            "heldout_lift_top5": quality.get("lift")}


def _install_identity_rules(settings: Settings) -> None:
    """Give the demo workspace the demo retailer's identity rules and segments, unless it has
    its own."""
    for target, name in ((settings.identity_config_path(), "identity.yaml"),
                         (settings.segments_config_path(), "segments.yaml")):
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text((Path(__file__).parent / name).read_text())


def _remove_embedded_store(settings: Settings) -> None:
    """Delete the demo's DuckDB file (and its WAL and keys), nothing else in the directory."""
    database = Path(settings.resolved_database_url()[len("duckdb:///"):])
    for path in (database, database.with_name(database.name + ".wal"), settings.home / KEYS_FILE):
        path.unlink(missing_ok=True)


def _same_data(manifest_path: Path, customers: int, seed: int) -> bool:
    if not manifest_path.exists():
        return False
    manifest = json.loads(manifest_path.read_text())
    return manifest.get("customers") == customers and manifest.get("seed") == seed


def _source_key(ws: Workspace, name: str, channel: str) -> str:
    """The source's write key: a new source, or a fresh key for an existing one."""
    try:
        source = get_source(ws.engine, name)
    except SourceError:
        _, key = create_source(ws.engine, name, channel)
        return key
    with ws.engine.transaction() as tx:
        return create_key(tx, "write", source.source_id, label=f"demo key of {name}")


def _write_keys(home: Path, summary: dict[str, Any]) -> None:
    """Keep the demo's keys beside its workspace, readable by the owner only."""
    path = home / KEYS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"admin_key": summary["admin_key"], "write_keys": summary["write_keys"]}, fh,
                  indent=2)
