"""Why a message was refused: stable codes (for scripts) with sentences (for people)."""

REASONS: dict[str, str] = {
    "invalid_json": "not valid JSON",
    "not_an_object": "a message must be a JSON object",
    "message_too_large": "the message is larger than the per-message limit",
    "invalid_character": "the message holds a NUL character (\\u0000), which cannot be stored",
    "invalid_type": "type must be one of identify, track, page, screen, group, alias",
    "no_user_anon_id": "userId or anonymousId (or an identifier in context.externalIds) is required",
    "invalid_id": "userId, anonymousId, groupId and previousId must be strings or numbers",
    "missing_event": "a track message needs a non-empty event",
    "missing_group_id": "a group message needs groupId",
    "missing_previous_id": "an alias message needs previousId",
    "missing_user_id": "an alias message needs userId",
    "invalid_timestamp": "timestamp, originalTimestamp and sentAt must be ISO-8601 date-times",
    "message_id_too_long": "messageId must be shorter than 100 characters",
    "tracking_plan_violation": "the message does not match the source's tracking plan",
    "unplanned_event": "the event is not in the source's tracking plan, which blocks unplanned events",
    "invalid_row": "the row cannot be turned into a message",
    "invalid_value": "a value does not parse as the type its mapping gives",
}


def describe(code: str, detail: str | None = None) -> str:
    text = REASONS.get(code, code)
    return f"{text}: {detail}" if detail else text
