"""What every CLI command shares: the global options, opening the workspace, output and exit codes.

Exit codes: 0 done; 1 the operation failed (bad input, nothing to do); 2 wrong usage (click);
3 the database cannot be opened (unreachable, or held by another process).
"""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import click
import orjson

from .settings import load_settings
from .store import StoreError
from .workspace import Workspace

EXIT_FAILED = 1
EXIT_STORE = 3


def store_options(fn: Callable) -> Callable:
    """--data-dir and --database, on every command that opens the store."""
    fn = click.option("--database", "database_url", envvar="KLANTBEELD_DATABASE_URL",
                      help="postgresql://… or duckdb:///path (default: DuckDB file in the data dir).")(fn)
    fn = click.option("--data-dir", "home", type=click.Path(path_type=Path), envvar="KLANTBEELD_HOME",
                      help="Data directory [default: ./klantbeeld-data].")(fn)
    return fn


def cli_actor() -> str:
    """Who runs a command, for the audit trail: ``cli:<user name>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


def json_option(fn: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


@contextmanager
def open_workspace(home: Path | None, database_url: str | None, **extra: Any) -> Iterator[Workspace]:
    settings = load_settings(home=home, database_url=database_url, **extra)
    try:
        ws = Workspace.open(settings)
    except StoreError as exc:
        raise click.exceptions.Exit(_fail(str(exc), EXIT_STORE))
    try:
        yield ws
    finally:
        ws.close()


def _fail(message: str, code: int) -> int:
    click.secho(f"error: {message}", fg="red", err=True)
    return code


def fail(message: str, code: int = EXIT_FAILED) -> None:
    """Print an error and stop with an exit code."""
    raise click.exceptions.Exit(_fail(message, code))


def user_errors(*kinds: type[Exception]) -> Callable:
    """Turn the given exceptions into a clean error line and exit code 1."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except kinds as exc:
                fail(str(exc))

        return inner

    return wrap


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, default=_default, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table for people; scripts use --json."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
