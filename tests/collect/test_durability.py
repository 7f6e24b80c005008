"""A 2xx means stored durably. Against a live `klantbeeld serve` on both engines: batches sent
concurrently, the server killed with SIGKILL (or stopped with SIGTERM) mid-load and started again —
every acknowledged event is in the events table exactly once, and its messageId is still known."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
from conftest import CollectApi

from klantbeeld.store import open_engine

SENDERS = 4
BATCH = 50


class Load:
    """Several clients sending batches as fast as the server answers; records what was acked."""

    def __init__(self, server, prefix: str) -> None:
        self.url, self.prefix = server.url, prefix
        key = next(s["write_key"] for s in server.keys["sources"] if s["name"] == "web")
        self.headers = CollectApi.basic(key)
        self.acked: set[str] = set()
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(w,)) for w in range(SENDERS)]

    def _send(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                ids = [f"{self.prefix}-{worker}-{n}-{i}" for i in range(BATCH)]
                n += 1
                batch = [{"type": "track", "userId": f"u{worker}", "event": "Load",
                          "messageId": mid, "properties": {"n": n}} for mid in ids]
                try:
                    response = client.post("/v1/batch", json={"batch": batch},
                                           headers=self.headers)
                except httpx.HTTPError:
                    return  # the server went away mid-request: not acknowledged
                if response.status_code != 200 or response.json()["accepted"] != BATCH:
                    with self._lock:
                        self.refused.append(response.text)
                    return
                with self._lock:
                    self.acked.update(ids)

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} acknowledged"
            assert not self.refused, self.refused[:1]
            time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def stored_counts(database_url: str) -> Counter:
    with open_engine(database_url) as engine:
        rows = engine.fetchall("SELECT message_id, count(*) FROM events GROUP BY message_id")
    return Counter(dict(rows))


def resend_as_duplicates(server, ids: list[str]) -> None:
    """The restarted server still knows every acknowledged messageId: nothing is stored twice."""
    key = next(s["write_key"] for s in server.keys["sources"] if s["name"] == "web")
    for start in range(0, len(ids), 2000):
        chunk = ids[start:start + 2000]
        batch = [{"type": "track", "userId": "again", "event": "Load", "messageId": m}
                 for m in chunk]
        response = httpx.post(server.url + "/v1/batch", json={"batch": batch},
                              headers=CollectApi.basic(key), timeout=60)
        assert response.status_code == 200
        assert (response.json()["accepted"], response.json()["duplicates"]) == (0, len(chunk))


def assert_all_stored_once(counts: Counter, acked: set[str]) -> None:
    missing = [m for m in acked if counts[m] == 0]
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
    twice = [m for m, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} events stored more than once, e.g. {twice[:3]}"


def test_acknowledged_events_survive_kill_9(live_server):
    with Load(live_server, "kill") as load:
        load.wait_for(2000)
        live_server.kill()  # SIGKILL while requests are in flight: no shutdown hook runs
    acked = set(load.acked)
    assert len(acked) >= 2000

    live_server.start()  # same data directory, same database
    resend_as_duplicates(live_server, sorted(acked))
    admin = {"Authorization": f"Bearer {live_server.keys['admin_key']}"}
    web = next(r for r in httpx.get(live_server.url + "/v1/status", headers=admin).json()["sources"]
               if r["source"] == "web")
    assert web["duplicates"] >= len(acked)
    live_server.stop()

    counts = stored_counts(live_server.database_url)
    assert_all_stored_once(counts, acked)
    assert web["accepted"] == sum(counts.values())  # the counters were committed with the events


def test_acknowledged_events_survive_a_graceful_stop_under_load(live_server):
    with Load(live_server, "term") as load:
        load.wait_for(1000)
        live_server.stop()  # SIGTERM: stop taking requests, commit what is queued, exit
    assert live_server.proc.returncode is not None
    assert_all_stored_once(stored_counts(live_server.database_url), set(load.acked))
