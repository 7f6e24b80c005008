"""``klantbeeld import``: a file or a SQL query into a source's events.

Exit codes: 0 when the import ran, even if some rows failed (they are in failed events, and the
output says how to list them); 1 when nothing could be read (missing file, bad mapping, unknown
source, a query that fails).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ...cli_support import fail, json_option, open_workspace, print_json, store_options, user_errors
from ..sources import SourceError
from .mapping import MappingError
from .readers import FORMATS, ImportInputError
from .run import AS_CHOICES, CHUNK_SIZE, ImportReport, import_file, import_sql

_DELIMITERS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


@click.command("import")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--source", required=True, help="The source the rows belong to (name or id).")
@click.option("--as", "as_", type=click.Choice(AS_CHOICES),
              help="Make identify or track messages (segment: JSON Lines that already are "
                   "Segment messages; the default for .jsonl without --mapping).")
@click.option("--mapping", type=click.Path(path_type=Path),
              help="YAML file saying which columns are ids, traits, event, timestamp, properties.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="The file's format [default: from its name].")
@click.option("--delimiter", help="CSV field separator, e.g. ';' or tab [default: guessed].")
@click.option("--encoding", default="utf-8", show_default=True, help="CSV text encoding.")
@click.option("--sql", "sql_url", metavar="URL",
              help="Import from a database instead: postgresql://…, duckdb:///path, sqlite:///path.")
@click.option("--query", help="The SELECT to run with --sql.")
@click.option("--cursor", help="With --sql: a column that grows (e.g. updated_at); each run "
                               "imports only rows above the last run's largest value.")
@click.option("--full", is_flag=True,
              help="With --cursor: ignore the stored cursor, read all rows.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=CHUNK_SIZE, show_default=True,
              help="Rows per transaction.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@store_options
@json_option
@user_errors(SourceError, MappingError, ImportInputError)
def import_command(file, source, as_, mapping, fmt, delimiter, encoding, sql_url, query, cursor,
                   full, chunk_size, quiet, home, database_url, as_json) -> None:
    """Import FILE (CSV, JSON Lines, Parquet; .gz/.zst too) or a SQL query as messages of a source.

    \b
    Examples:
      klantbeeld import contacts.csv --source crm --as identify --mapping contacts.yaml
      klantbeeld import events.jsonl --source web
      klantbeeld import --sql postgresql://crm@db/crm --query "SELECT * FROM contacts" \\
          --cursor updated_at --source crm --as identify --mapping contacts.yaml
    """
    if (file is None) == (sql_url is None):
        fail("give a FILE to import, or --sql URL with --query")
    if sql_url and not query:
        fail("--sql needs --query (the SELECT to run)")
    if file is not None and (query or cursor or full):
        fail("--query, --cursor and --full go with --sql, not with a file")
    if sql_url and (fmt or delimiter):
        fail("--format and --delimiter go with a file, not with --sql")
    if full and not cursor:
        fail("--full goes with --cursor")
    if file is not None and not file.is_file():
        fail(f"{file} does not exist or is not a file")
    if mapping is not None and not mapping.is_file():
        fail(f"mapping file {mapping} does not exist")
    if delimiter is not None:
        delimiter = _DELIMITERS.get(delimiter.lower(), delimiter)
        if len(delimiter) != 1:
            fail("--delimiter must be one character (or tab, comma, semicolon, pipe)")
    progress = not quiet and sys.stderr.isatty()
    with open_workspace(home, database_url) as ws:
        if file is not None:
            report = import_file(ws, file, source, as_, mapping, format=fmt, delimiter=delimiter,
                                 encoding=encoding, chunk_size=chunk_size, progress=progress)
        else:
            report = import_sql(ws, sql_url, query, source, as_, mapping, cursor=cursor,
                                full=full, chunk_size=chunk_size, progress=progress)
    if as_json:
        print_json(report.as_dict())
    else:
        _print(report)


def _print(report: ImportReport) -> None:
    what = "rows" if report.format == "sql" else report.format
    click.echo(f"imported {report.input} into {report.source} as {report.kind} ({what})")
    rows = [("rows read", report.rows_read), ("accepted", report.accepted),
            ("duplicates", report.duplicates), ("failed", report.failed)]
    if report.skipped_empty:
        rows.append(("empty rows skipped", report.skipped_empty))
    for label, value in rows:
        click.echo(f"  {label:<19} {value:>12,}")
    click.echo(f"  {'time':<19} {report.elapsed_seconds:>10.2f} s  "
               f"({report.rows_per_second:,.0f} rows/s)")
    if report.resolve_seconds is not None:
        click.echo(f"  {'identities resolved':<19} {report.resolve_seconds:>10.2f} s")
    if report.cursor_column:
        click.echo(f"  {'cursor':<19} {report.cursor_column} = {report.cursor_value}")
    if report.failures:
        click.echo(f"failures (first {len(report.failures)} of {report.failed:,}):")
        for f in report.failures:
            where = f"line {f['line']}" if "line" in f else f"row {f.get('row')}"
            click.echo(f"  {where:<12} {f['code']:<18} {f['reason']}")
    if report.failed:
        click.echo(f"{report.failed:,} rows failed and are kept in failed events; list them with: "
                   f"klantbeeld failed list --source {report.source}")
