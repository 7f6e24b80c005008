"""The resolver's thread in a server: it yields to collection under a burst and catches up after."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from klantbeeld.collect.jobs import Job
from klantbeeld.collect.requests import Limits, job_from_data
from klantbeeld.collect.sources import create_source
from klantbeeld.collect.status import processing_status
from klantbeeld.identity import follower as follower_module
from klantbeeld.identity.follower import Follower

RUN = 20


def _store(ws, n: int) -> None:
    source, _ = create_source(ws.engine, "shop", "web")
    batch = {"batch": [{"type": "page", "anonymousId": f"cookie-{i}", "messageId": f"m-{i}"}
                       for i in range(n)]}
    job = job_from_data(batch, "batch", source, Limits(32 * 1024, 2500),
                        datetime.now(timezone.utc))
    assert isinstance(job, Job)
    assert ws.ingestor.ingest([job])[0].accepted == n   # stored; nothing resolved yet


def _timed_runs(workspace, monkeypatch) -> list[tuple[float, float, int]]:
    """Every resolver run from now on: (start, end, events resolved)."""
    runs: list[tuple[float, float, int]] = []
    catch_up = workspace.resolver.catch_up

    def timed(*args, **kwargs):
        started = time.monotonic()
        done = catch_up(*args, **kwargs)
        runs.append((started, time.monotonic(), done))
        return done

    monkeypatch.setattr(workspace.resolver, "catch_up", timed)
    return runs


def test_the_resolver_yields_to_collection_and_catches_up_after(workspace, monkeypatch):
    monkeypatch.setattr(follower_module, "_RUN_EVENTS", RUN)
    monkeypatch.setattr(follower_module, "_QUIET", 0.2)
    _store(workspace, 2000)   # far more than the runs of the 0.2 s before it counts as over
    runs = _timed_runs(workspace, monkeypatch)
    follower = Follower(workspace.resolver, share=0.25)
    busy_from = time.monotonic()
    while len(runs) < 4:   # collection keeps committing
        follower.poke()
        time.sleep(0.005)
        assert time.monotonic() - busy_from < 60, "the resolver made no progress under load"
    busy = time.monotonic() - busy_from
    during = list(runs)
    assert all(done <= RUN for _, _, done in during), "runs were not kept short under load"
    spent = sum(end - start for start, end, _ in during)
    assert spent < 0.6 * busy, f"the resolver took {spent:.2f} of {busy:.2f} s under load"
    assert processing_status(workspace.engine)["events_unresolved"] > 0

    # The burst is over: no more commits. It catches up in runs as large as the backlog.
    deadline = time.monotonic() + 60
    while processing_status(workspace.engine)["events_unresolved"]:
        assert time.monotonic() < deadline, "the resolver did not catch up after the burst"
        time.sleep(0.05)
    follower.stop()   # the run that committed the last step has returned
    assert max(done for _, _, done in runs[len(during):]) > RUN


def test_stopping_resolves_everything_left_even_while_yielding(workspace, monkeypatch):
    monkeypatch.setattr(follower_module, "_RUN_EVENTS", RUN)
    _store(workspace, 300)
    follower = Follower(workspace.resolver, share=0.05)   # long waits between short runs
    for _ in range(20):
        follower.poke()
        time.sleep(0.005)
    follower.stop()
    assert processing_status(workspace.engine)["events_unresolved"] == 0


def test_under_a_light_load_the_resolver_keeps_up_without_waiting(workspace, monkeypatch):
    """Commits keep coming, but the writer is mostly idle: no yielding, so a steady stream is
    resolved as it comes instead of piling up behind waits it does not need."""
    monkeypatch.setattr(follower_module, "_RUN_EVENTS", RUN)
    _store(workspace, 1000)
    runs = _timed_runs(workspace, monkeypatch)
    writer_busy = 0.0   # the writer's seconds in commits: it hardly commits
    follower = Follower(workspace.resolver, share=0.05, busy=lambda: writer_busy)
    started = time.monotonic()
    while processing_status(workspace.engine)["events_unresolved"]:
        follower.poke()   # commits keep coming all along
        time.sleep(0.005)
        assert time.monotonic() - started < 60, "the resolver did not keep up"
    follower.stop()
    took = sorted(end - start for start, end, _ in runs)
    waited = sorted(b[0] - a[1] for a, b in zip(runs, runs[1:]))
    # Yielding at this share would wait 19 times each run's length.
    assert waited[len(waited) // 2] < 2 * took[len(took) // 2], (waited, took)


def test_a_busy_writer_makes_the_resolver_yield(workspace, monkeypatch):
    monkeypatch.setattr(follower_module, "_RUN_EVENTS", RUN)
    _store(workspace, 2000)
    runs = _timed_runs(workspace, monkeypatch)
    follower = Follower(workspace.resolver, share=0.05, busy=time.monotonic)  # always committing
    started = time.monotonic()
    while time.monotonic() - started < 2:
        follower.poke()
        time.sleep(0.005)
    follower.stop()
    during = [r for r in runs if r[1] < started + 2]
    assert len(during) >= 2
    waited = [b[0] - a[1] for a, b in zip(during, during[1:])]
    took = [end - start for start, end, _ in during]
    # At a share of 0.05 it waits 19 times each run's length after it.
    assert all(w > 5 * t for w, t in zip(waited, took)), (waited, took)


def test_catching_up_reports_each_committed_step(workspace):
    """What the import's progress bar shows while the stored events resolve."""
    _store(workspace, 1000)
    steps: list[int] = []
    assert workspace.resolver.catch_up(batch=300, progress=steps.append) == 1000
    assert steps == [300, 300, 300, 100]
    assert processing_status(workspace.engine)["events_unresolved"] == 0
