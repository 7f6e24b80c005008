"""Collection requests decoded in worker processes (what `klantbeeld serve` does on 2+ CPUs) give
the same answers as in-process, and a worker that dies costs no request."""

from __future__ import annotations

import os
import signal
import time

import pytest
from fastapi.testclient import TestClient

from klantbeeld.app import create_app
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace


@pytest.fixture
def pooled(tmp_path):
    settings = load_settings(home=tmp_path, ingest_processes=1)
    ws = Workspace.open(settings)
    key = ws.init(["web"])["sources"][0]["write_key"]
    with TestClient(create_app(workspace=ws)) as client:
        yield client, key, ws
    ws.close()


def _batch(*messages):
    return {"batch": list(messages)}


def test_a_batch_through_a_worker_lands_with_its_failures_accounted(pooled):
    client, key, ws = pooled
    response = client.post("/v1/batch", auth=(key, ""), json=_batch(
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "w-1"},
        {"type": "track", "userId": "u1", "messageId": "w-2"}))
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert response.json()["failed"][0]["code"] == "missing_event"
    assert ws.engine.fetchall("SELECT message_id FROM events") == [("w-1",)]
    assert ws.engine.fetchall("SELECT reason_code FROM failed_events") == [("missing_event",)]

    broken = client.post("/v1/batch", auth=(key, ""), content=b"{not json")
    assert broken.status_code == 400 and broken.json()["code"] == "invalid_json"
    assert ("invalid_json",) in ws.engine.fetchall("SELECT reason_code FROM failed_events")


def test_a_dead_worker_costs_no_request(pooled):
    client, key, ws = pooled
    pool = client.app.state.ingest_pool
    dead = pool.pids
    for pid in dead:
        os.kill(pid, signal.SIGKILL)
    response = client.post("/v1/track", auth=(key, ""),
                           json={"userId": "u2", "event": "Signed Up", "messageId": "w-3"})
    assert response.status_code == 200
    assert ("w-3",) in ws.engine.fetchall("SELECT message_id FROM events")
    # a new worker takes the dead one's place and serves the next requests
    deadline = time.monotonic() + 60
    while not pool.pids or set(pool.pids) & set(dead):
        assert time.monotonic() < deadline, "no new worker replaced the dead one"
        time.sleep(0.05)
    again = client.post("/v1/track", auth=(key, ""),
                        json={"userId": "u2", "event": "Signed Up", "messageId": "w-4"})
    assert again.status_code == 200
    assert ("w-4",) in ws.engine.fetchall("SELECT message_id FROM events")


def _echo(value: bytes, delay: float) -> bytes:
    time.sleep(delay)
    return value[::-1]


def test_many_calls_in_flight_each_get_their_own_answer():
    """Calls pipelined to two workers, bodies from 10 bytes to 600 KB (past a socket's buffer):
    each caller gets the answer to its own request."""
    import asyncio
    import random

    from klantbeeld.collect.workers import IngestPool

    rng = random.Random(3)
    bodies = [rng.randbytes(rng.choice((10, 70_000, 600_000))) for _ in range(60)]

    async def calls():
        pool = IngestPool(2)
        await pool.start()
        try:
            return await asyncio.gather(*(pool.run(_echo, b, rng.random() / 50) for b in bodies))
        finally:
            pool.close()

    assert asyncio.run(calls()) == [b[::-1] for b in bodies]


def _fails(reason: str) -> None:
    raise ValueError(reason)


def test_a_call_that_raises_in_a_worker_raises_in_the_server_and_the_worker_goes_on(pooled):
    client, key, _ = pooled
    pool = client.app.state.ingest_pool
    served_by = pool.pids

    async def call():
        return await pool.run(_fails, "bad input")

    with pytest.raises(ValueError, match="bad input"):
        client.portal.call(call)
    assert pool.pids == served_by
    response = client.post("/v1/track", auth=(key, ""),
                           json={"userId": "u3", "event": "Signed Up", "messageId": "w-5"})
    assert response.status_code == 200


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_exit_when_the_server_is_killed(tmp_path, monkeypatch):
    """kill -9 of `klantbeeld serve` runs no shutdown code; its workers must still go."""
    import time

    from conftest import LiveServer

    monkeypatch.setenv("KLANTBEELD_INGEST_PROCESSES", "1")
    server = LiveServer(tmp_path / "home", f"duckdb:///{(tmp_path / 'kb.duckdb').as_posix()}")
    server.cli("init", "--channel", "web", "--json")
    server.start()
    children = _children(server.proc.pid)
    assert children, "serve started its ingestion worker"
    server.kill()
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(c) for c in children)
