"""JSON Lines whose lines already are Segment messages (e.g. exported web events).

Each line goes through :func:`klantbeeld.collect.prepare.prepare_messages` unchanged, exactly as if
it had arrived over HTTP, so the stored payload is the line. The one addition: a line without a
``messageId`` gets one derived from its content, so importing the file again does not duplicate.
"""

from __future__ import annotations

import hashlib

import orjson

from ..prepare import Prepared, Refusal, prepare_messages
from ..sources import Source
from .readers import LineMap


def prepare_lines(lines: list[bytes], first: int, source: Source, max_message_bytes: int
                  ) -> tuple[Prepared, LineMap, int]:
    """(prepared messages, their line numbers, blank lines skipped) for one chunk of lines."""
    messages: list[object] = []
    numbers: list[int | None] = []
    broken: dict[int, Refusal] = {}
    salt = (source.source_id + "|").encode()
    for i, line in enumerate(lines):
        text = line.strip()
        if not text:
            continue
        number = first + i
        numbers.append(number)
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            broken[len(messages)] = Refusal(
                "invalid_json", f"line {number} is not valid JSON: {exc}",
                text.decode("utf-8", "replace"))
            messages.append(None)
            continue
        if isinstance(message, dict) and not message.get("messageId"):
            message["messageId"] = "imp-" + hashlib.sha256(salt + text).hexdigest()[:32]
        messages.append(message)
    prepared = prepare_messages(messages, source, max_message_bytes)
    for pos, refusal in broken.items():
        prepared.raws[pos] = None
        prepared.refusals[pos] = refusal
    return prepared, LineMap(0, extra=numbers), len(lines) - len(numbers)
