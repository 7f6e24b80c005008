"""``klantbeeld demo-data``: write the synthetic demo data set."""

from __future__ import annotations

import json

import click

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
