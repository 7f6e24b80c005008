"""Shared fixtures: both engines for every store test, a real PostgreSQL, live servers.

PostgreSQL: the server at KLANTBEELD_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432)
gets a throwaway database per test session (per xdist worker); each test gets its own schema in
it. When the server is unreachable the PostgreSQL tests fail under CI (CI set) and skip elsewhere.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest

from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

PG_SERVER = os.environ.get("KLANTBEELD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
ENGINES = ["duckdb", "postgres"]


@pytest.fixture(scope="session")
def pg_database():
    """A database of our own on the test server, dropped at the end of the session."""
    name = f"kb_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL unreachable at {PG_SERVER}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_SERVER}/{name}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_postgres_url(pg_database: str) -> str:
    """A URL whose connections work in a new, empty schema of the session database."""
    schema = f"t_{secrets.token_hex(5)}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{pg_database}?options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=ENGINES)
def database_url(request, tmp_path) -> str:
    """Each test using this runs once on DuckDB and once on PostgreSQL."""
    if request.param == "duckdb":
        return f"duckdb:///{(tmp_path / 'store.duckdb').as_posix()}"
    return fresh_postgres_url(request.getfixturevalue("pg_database"))


@pytest.fixture
def workspace(database_url, tmp_path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    yield ws
    ws.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`klantbeeld serve` in a real subprocess: what a user runs, killable for durability tests."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.home, self.database_url = home, database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "klantbeeld.cli", *args, "--data-dir", str(self.home),
             "--database", self.database_url],
            capture_output=True, text=True, check=True,
        )

    def start(self) -> "LiveServer":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "klantbeeld.cli", "serve", "--port", str(self.port),
             "--data-dir", str(self.home), "--database", self.database_url,
             "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {out}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.proc.kill()   # not left running behind a failed test
        self.proc.wait()
        raise RuntimeError("server did not come up in 30 s")

    def kill(self) -> None:
        """kill -9: no shutdown hook runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def live_server(database_url, tmp_path):
    """A workspace initialised through the CLI and served by a subprocess; keys in .keys."""
    import json

    server = LiveServer(tmp_path / "home", database_url)
    server.keys = json.loads(server.cli("init", "--channel", "web", "--channel", "app",
                                        "--json").stdout)
    server.start()
    yield server
    server.stop()


class CollectApi:
    """A workspace served in-process (FastAPI TestClient) with its keys: fast API tests.

    ``write_keys`` maps source name to write key (sources ``web`` and ``app``); ``post`` sends with
    HTTP Basic (write key as user name, empty password) unless ``auth=False``.
    """

    def __init__(self, workspace: Workspace, client, keys: dict) -> None:
        self.workspace, self.client = workspace, client
        self.admin_key = keys["admin_key"]
        self.write_keys = {s["name"]: s["write_key"] for s in keys["sources"]}
        self.write_key = self.write_keys["web"]

    @staticmethod
    def basic(key: str) -> dict[str, str]:
        import base64

        return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}

    def post(self, path: str, body=None, key: str | None = None, auth: bool = True, **kwargs):
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth:
            headers.update(self.basic(key or self.write_key))
        if body is not None:
            kwargs["json"] = body
        return self.client.post(path, headers=headers, **kwargs)

    def admin(self, method: str, path: str, **kwargs):
        headers = {"Authorization": f"Bearer {self.admin_key}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def events(self, where: str = "TRUE", params=None) -> list[dict]:
        """Stored events (oldest first), ``payload`` decoded."""
        return stored_events(self.workspace.engine, where, params)

    def status(self, source: str = "web") -> dict:
        rows = self.admin("GET", "/v1/status").json()["sources"]
        return next(r for r in rows if r["source"] == source)


def stored_events(engine, where: str = "TRUE", params=None) -> list[dict]:
    import json

    rows = engine.fetch_dicts(f"SELECT * FROM events WHERE {where} ORDER BY seq", params)
    for row in rows:
        if isinstance(row["payload"], str):
            row["payload"] = json.loads(row["payload"])
    return rows


@pytest.fixture
def collect_api(workspace):
    """The collection API over ``workspace`` (both engines), sources ``web`` and ``app``."""
    from fastapi.testclient import TestClient

    from klantbeeld.app import create_app

    keys = workspace.init(["web", "app"])
    with TestClient(create_app(workspace=workspace)) as client:
        yield CollectApi(workspace, client, keys)


def feed(ws: Workspace, messages: list[dict], tmp_path: Path, source: str = "web") -> None:
    """Store Segment messages as an export would arrive (an import resolves identities at its end)."""
    import time

    import orjson

    from klantbeeld.collect.importer import import_file

    path = tmp_path / f"batch-{time.monotonic_ns()}.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(m) for m in messages))
    report = import_file(ws, path, source)
    assert report.failed == 0, report.failures


def profile_of(ws: Workspace, id_type: str, value: str) -> str | None:
    """The profile an identifier (already normalised) belongs to, from the store."""
    row = ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_type = $t "
                             "AND id_value = $v", {"t": id_type, "v": value})
    return row[0] if row else None


class Cli:
    """Runs `klantbeeld …` in-process against one workspace (data dir + database URL)."""

    def __init__(self, home, database_url):
        from click.testing import CliRunner

        self.home, self.database_url = home, database_url
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0):
        from klantbeeld.cli import main

        result = self.runner.invoke(main, [*args, "--data-dir", str(self.home),
                                           "--database", self.database_url])
        assert result.exit_code == code, (args, result.output, result.exception)
        if code == 0:
            assert result.exception is None or isinstance(result.exception, SystemExit)
        return result

    def json(self, *args: str):
        import json

        return json.loads(self(*args, "--json").stdout)
