"""From request bodies to raw messages: the per-message work done before the writer.

This is all the Python that touches each message on the hot path: merge the batch-level fields,
drop the write key, check the size, apply the tracking plan, serialise once with orjson. Field
validation and normalisation happen later, set-based, in :mod:`klantbeeld.collect.canonical`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from . import plans
from .canonical import canonical_row
from .reasons import describe
from .sources import Source


@dataclass
class Refusal:
    code: str
    message: str
    payload: str
    message_id: str | None = None
    event_type: str | None = None


@dataclass
class Prepared:
    """Messages ready for the writer: ``raws[i]`` is None when message i was refused already.

    Bulk producers (file imports) may instead give ``raw_array``: an Arrow string array of the raw
    messages, null where refused, so no Python object is made per row.
    """

    raws: list[bytes | None] = field(default_factory=list)
    refusals: dict[int, Refusal] = field(default_factory=dict)
    violations: list[tuple[int, list[str]]] = field(default_factory=list)
    raw_array: pa.Array | None = None
    # Optional, beside raw_array: its canonical.FIELD_COLUMNS, row for row, when the producer
    # knows them (spares the rules from parsing the JSON again).
    raw_fields: pa.Table | None = None
    # Messages that passed the rules, as event-row tuples (canonical.ROW_COLUMNS), None where
    # refused. Left None by bulk producers: their raw JSON is checked in SQL instead.
    checked: list[tuple | None] | None = None

    def __len__(self) -> int:
        return len(self.raw_array) if self.raw_array is not None else len(self.raws)

    def slim(self) -> "Prepared":
        """The same, without the per-message data the job's built rows now hold: what is left is
        what the writer still reads (refusals, plan violations, the message count)."""
        return Prepared(raws=[None] * len(self), refusals=self.refusals,
                        violations=self.violations)


def _as_text(message: Any) -> str:
    try:
        return orjson.dumps(message).decode()
    except TypeError:
        return repr(message)


def _storable(raw: bytes, limit: int) -> tuple[str | None, None]:
    """Refusals no message can escape, whatever its content: size and unstorable characters."""
    if len(raw) > limit:
        return "message_too_large", None
    if b"\\u0000" in raw:
        return "invalid_character", None
    return None, None


def prepare_messages(
    messages: list[Any],
    source: Source,
    max_message_bytes: int,
    batch_fields: dict[str, Any] | None = None,
    force_type: str | None = None,
) -> Prepared:
    """Turn decoded messages into raw JSON bytes, refusing what cannot be stored as a message."""
    out = Prepared(checked=[])
    context = integrations = sent_at = None
    if batch_fields:
        context = batch_fields.get("context") if isinstance(batch_fields.get("context"), dict) else None
        integrations = batch_fields.get("integrations")
        integrations = integrations if isinstance(integrations, dict) else None
        sent_at = batch_fields.get("sentAt")
    plan = source.tracking_plan
    for pos, message in enumerate(messages):
        if not isinstance(message, dict):
            out.raws.append(None)
            out.checked.append(None)
            out.refusals[pos] = Refusal("not_an_object", describe("not_an_object"), _as_text(message))
            continue
        message.pop("writeKey", None)  # a credential never enters the event store
        if force_type is not None:
            message["type"] = force_type
        if context is not None:
            own = message.get("context")
            message["context"] = {**context, **own} if isinstance(own, dict) else dict(context)
        if integrations is not None and "integrations" not in message:
            message["integrations"] = integrations
        if sent_at is not None and "sentAt" not in message:
            message["sentAt"] = sent_at
        raw = orjson.dumps(message)
        detail = None
        code, row = _storable(raw, max_message_bytes)
        if code == "message_too_large":
            detail = f"{len(raw)} bytes, limit {max_message_bytes}"
        if code is None:
            code, row = canonical_row(message)
        if code is None and plan:
            code, errors = plans.check(plan, message)
            if code:
                detail = "; ".join(errors)
            elif errors:
                out.violations.append((pos, errors))
        if code:
            out.raws.append(None)
            out.checked.append(None)
            given = message.get("messageId")
            out.refusals[pos] = Refusal(
                code, describe(code, detail), raw.decode(),
                message_id=given if isinstance(given, str) else None,
                event_type=message.get("type") if isinstance(message.get("type"), str) else None)
        else:
            out.raws.append(raw)
            out.checked.append(row)
    return out
