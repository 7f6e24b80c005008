"""The de-duplication store stays the size of its window: expired HTTP ids go, imported ids stay,
and an expired id is accepted again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from klantbeeld.collect.jobs import Job
from klantbeeld.collect.prepare import prepare_messages
from klantbeeld.collect.sources import create_source


def _send(ws, source, ids, permanent=False, received_at=None):
    messages = [{"type": "track", "userId": "u", "event": "E", "messageId": m} for m in ids]
    job = Job(source, prepare_messages(messages, source, 32 * 1024), permanent_ids=permanent,
              origin="import" if permanent else "http",
              received_at=received_at or datetime.now(timezone.utc))
    return ws.ingestor.run(job)


def test_expired_ids_are_forgotten_and_accepted_again(workspace):
    source, _ = create_source(workspace.engine, "web", "web")
    long_ago = datetime.now(timezone.utc) - timedelta(hours=30)
    assert _send(workspace, source, ["old-1", "old-2"], received_at=long_ago).accepted == 2
    assert _send(workspace, source, ["imp-1"], permanent=True, received_at=long_ago).accepted == 1
    assert _send(workspace, source, ["new-1"]).accepted == 1

    removed = workspace.ingestor.expire_ids()
    if workspace.engine.name == "postgres":
        assert removed == 2
        kept = {m for (m,) in workspace.engine.fetchall("SELECT message_id FROM message_ids")}
        assert kept == {"imp-1", "new-1"}

    again = _send(workspace, source, ["old-1", "new-1"])
    assert (again.accepted, again.duplicates) == (1, 1)  # only the expired id is new again
    reimport = _send(workspace, source, ["imp-1"], permanent=True)
    assert (reimport.accepted, reimport.duplicates) == (0, 1)  # imported ids never expire
