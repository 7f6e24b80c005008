"""``klantbeeld demo-data``: write the synthetic demo data set."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..cli_support import EXIT_STORE, fail, json_option, print_json, store_options
from ..store import StoreError
from .generate import generate


@click.command("demo-data")
@click.option("--customers", "-n", default=2000, show_default=True,
              type=click.IntRange(min=1), help="Known people to simulate.")
@click.option("--seed", default=42, show_default=True, type=int,
              help="Random seed; the same seed gives identical files.")
@click.option("--out", "out_dir", default="demo-data", show_default=True,
              type=click.Path(file_okay=False), help="Output directory.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the manifest as JSON instead of a summary.")
def demo_data(customers: int, seed: int, out_dir: str, as_json: bool) -> None:
    """Generate synthetic multi-channel retail data with ground truth."""
    # stage timings on stderr only for runs long enough to wait for
    manifest = generate(out_dir, customers=customers, seed=seed,
                        progress=not as_json and customers >= 5000)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    click.echo(f"Demo data in {out_dir} (seed {seed}, history ending {manifest['end']})")
    for f in manifest["files"]:
        click.echo(f"  {f['path']:<24} {f['rows']:>9,} rows  ({f['channel']})")
    click.echo(f"  {'total':<24} {manifest['records']:>9,} records")
    click.echo(f"Persons in ground truth: {manifest['persons']:,} "
               f"({manifest['customers']:,} customers and leads, "
               f"{manifest['prospects']:,} prospects)")
    click.echo(f"Truth: {manifest['ground_truth']}, {manifest['lookalike_truth']}, "
               f"{manifest['persons_truth']}, {manifest['shared_devices']}")


@click.command("demo")
@click.option("--customers", "-n", default=2000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--out", "out_dir", default="demo-data", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where the demo data goes.")
@click.option("--fresh", is_flag=True,
              help="Start over: new demo data and an empty workspace (DuckDB only).")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the API will be served, for the printed instructions.")
@store_options
@json_option
def demo_command(customers, seed, out_dir, fresh, url, home, database_url, as_json) -> None:
    """Load the demo: generate data, create a workspace, import every file, print the keys."""
    from ..settings import load_settings
    from .pipeline import KEYS_FILE, run_demo

    settings = load_settings(home=home or Path("demo-workspace"), database_url=database_url)
    say = (lambda _: None) if as_json else (lambda m: click.echo(f"· {m}", err=True))
    try:
        summary = run_demo(settings, out_dir, customers, seed, fresh, say)
    except StoreError as exc:
        fail(str(exc), EXIT_STORE)
    if as_json:
        print_json(summary)
        return
    click.echo("")
    for row in summary["imports"]:
        if "skipped" in row:
            click.echo(f"  {row['file']:<24} skipped: {row['skipped']}")
        else:
            click.echo(f"  {row['file']:<24} {row['rows']:>8,} rows → {row['accepted']:>8,} events, "
                       f"{row['failed']:,} failed ({row['seconds']} s)")
    ident = summary["identity"]
    click.echo(f"\nIdentity: {ident['profiles']:,} profiles for {ident['people']:,} people; "
               f"pairwise precision {ident['precision']:.4f}, recall {ident['recall']:.4f} "
               f"(upper bound for these records {ident['recall_upper_bound']:.4f}); "
               f"probabilistic matches merged {summary['matching'].get('merged', 0)}, "
               f"queued for review {summary['matching'].get('queued', 0)}")
    click.echo(f"\nModels ({summary['predict_seconds']} s; klantbeeld predict models):")
    for m in summary["models"]:
        figures = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v:,}"
                            for k, v in m["metrics"].items())
        click.echo(f"  {m['model']:<13} {m['status']:<7} {figures or m['error'] or ''}")
    click.echo("\nSegments: " + ", ".join(f"{s['id']} {s['size']:,}" for s in summary["segments"]))
    la = summary["dmp_lookalike"]
    if "error" in la:
        click.echo(f"\nDMP look-alike of loyal customers: not built: {la['error']}")
    else:
        click.echo(f"\nDMP look-alike of loyal customers: {la['scored']:,} unlinked cookies "
                   f"scored; top 5 %: lift {la['top5_lift_vs_truth']} against the planted "
                   f"loyal-alikes, held-out seed lift {la['heldout_lift_top5']}")
    click.echo(f"\nDemo loaded in {summary['seconds']} s. Workspace: {summary['workspace']}")
    click.echo(f"API (once served): {url}   interactive docs: {url}/docs")
    click.echo(f"admin key:  {summary['admin_key']}")
    for name, key in summary["write_keys"].items():
        click.echo(f"write key {name:<8} {key}")
    click.echo(f"(keys also in {Path(summary['workspace']) / KEYS_FILE})")
    if summary.get("sample_profile"):
        click.echo(f"\nA customer: curl -H 'Authorization: Bearer {summary['admin_key']}' "
                   f"{url}/v1/profiles/{summary['sample_profile']}")
    click.echo(f"\nTry:  curl -H 'Authorization: Bearer {summary['admin_key']}' {url}/v1/status")
