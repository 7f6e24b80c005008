"""The ``klantbeeld`` command. Each capability owns its commands; this module only assembles them."""

from __future__ import annotations

import click

from . import __version__
from .cli_support import fail, json_option, open_workspace, print_json, store_options, user_errors
from .collect.cli import failed_group, sources_group, status_command
from .collect.importer.cli import import_command
from .collect.sources import CHANNELS
from .demo.cli import demo_command, demo_data
from .dmp.activation_cli import COMMANDS as DMP_ACTIVATION_COMMANDS
from .dmp.cli import dmp_group
from .identity.cli import eval_group, identity_group
from .predict.cli import predict_group
from .predict.clv_cli import clv_group
from .profiles.cli import profile_group
from .privacy.admin_cli import audit_command, keys_group, retention_group
from .privacy.consent_cli import consent_group
from .privacy.dsr_cli import privacy_group
from .segments.cli import segments_group, traits_group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="klantbeeld")
def main() -> None:
    """Klantbeeld: one view of every customer, from every source you own."""


@main.command("init")
@click.option("--channel", "channels", multiple=True, type=click.Choice(CHANNELS),
              help="Make a source for this channel (repeatable) [default: all channels].")
@store_options
@json_option
@user_errors(ValueError)
def init_command(channels, home, database_url, as_json) -> None:
    """Create a workspace: the schema, an admin key and one source per channel."""
    with open_workspace(home, database_url) as ws:
        result = ws.init(list(channels) or list(CHANNELS))
    if as_json:
        print_json(result)
        return
    click.echo(f"workspace ready: {result['database']}")
    click.echo(f"admin key: {result['admin_key']}")
    for source in result["sources"]:
        click.echo(f"source {source['name']:<10} write key: {source['write_key']}")
    click.echo("keep these keys: only their hashes are stored")


@main.command("serve")
@click.option("--host", envvar="KLANTBEELD_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="KLANTBEELD_PORT", type=int, default=8000, show_default=True)
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes (PostgreSQL only: a DuckDB file has one writing process).")
@click.option("--ingest-processes", type=click.IntRange(min=0), envvar="KLANTBEELD_INGEST_PROCESSES",
              help="Worker processes per server process that decode and check collection "
              "requests [default: 1 with one server process on 2 or more CPUs, else 0 "
              "(in-process)].")
@store_options
def serve_command(host, port, log_level, workers, ingest_processes, home, database_url) -> None:
    """Run the HTTP API (collection, sources, status, failed events)."""
    import os

    import uvicorn

    from .app import create_app
    from .settings import load_settings

    if ingest_processes is None:
        # One worker beside a single server process uses a second core; several server
        # processes use the cores already, and more processes only contend (measured).
        ingest_processes = 1 if workers == 1 and (os.cpu_count() or 1) >= 2 else 0
    settings = load_settings(home=home, database_url=database_url, host=host, port=port,
                             ingest_processes=ingest_processes)
    url = settings.resolved_database_url()
    if workers > 1 and not url.startswith(("postgresql://", "postgres://")):
        fail("--workers above 1 needs PostgreSQL: DuckDB lets one process write its file")
    click.echo(f"Klantbeeld {__version__} on http://{host}:{port} "
               f"(docs at http://{host}:{port}/docs)")
    options = dict(host=host, port=port, log_level=log_level, access_log=False,
                   timeout_graceful_shutdown=30)
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Worker processes build their own app from the environment.
    os.environ["KLANTBEELD_HOME"] = str(settings.home)
    os.environ["KLANTBEELD_DATABASE_URL"] = url
    os.environ["KLANTBEELD_INGEST_PROCESSES"] = str(ingest_processes)
    uvicorn.run("klantbeeld.app:create_app", factory=True, workers=workers, **options)


main.add_command(sources_group)
main.add_command(status_command)
main.add_command(failed_group)
main.add_command(import_command)
main.add_command(segments_group)
main.add_command(traits_group)
main.add_command(privacy_group)
main.add_command(keys_group)
main.add_command(audit_command)
main.add_command(consent_group)
main.add_command(retention_group)
main.add_command(demo_data)
main.add_command(demo_command)
main.add_command(identity_group)
main.add_command(eval_group)
main.add_command(profile_group)
main.add_command(predict_group)
main.add_command(clv_group)
for _command in DMP_ACTIVATION_COMMANDS:
    dmp_group.add_command(_command)
main.add_command(dmp_group)

if __name__ == "__main__":  # pragma: no cover
    main()
