"""The identifiers an event carries, normalised and filtered — one function for every path.

The real-time resolver and the bulk rebuild both read stored events through :func:`event_identifiers`,
so they can never disagree about which identifiers an event links.

Where identifiers come from:
- ``userId`` → ``user_id``; ``anonymousId`` → ``anonymous_id``; ``context.device.id`` → ``device_id``;
  an alias's ``previousId`` → ``anonymous_id`` (Segment's alias joins a previous anonymous id);
- ``traits.email`` / ``traits.phone`` (``context.traits`` on events other than identify and group);
- ``context.externalIds`` (``[{"id": …, "type": …}]``) of any declared type; the import mappings'
  ``external_ids`` land there;
- trait keys a custom type names in the config (``types.crm_id.traits: [crm_id]``).
External ids of undeclared types are not identifiers (they stay in the payload, nothing is lost).
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Any, Iterator

import orjson
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from .config import IdentityConfig

Identifier = tuple[str, str]


class Normaliser:
    """Normalises raw values per type and refuses blocked ones. Caches, as values repeat a lot."""

    def __init__(self, config: IdentityConfig) -> None:
        self.config = config
        self._blocked = config.blocked_re
        self._case_insensitive = {name for name, t in config.types.items() if not t.case_sensitive}
        self.normalise = lru_cache(maxsize=200_000)(self._normalise)
        self.refused = 0

    def normalise_array(self, id_type: str, raws: pa.Array) -> pa.Array:
        """:meth:`normalise` over many distinct raw values (the bulk rebuild); null = refused.

        E-mail and phone go value by value through the same code; the other types are only
        trimmed (and lower-cased) and checked against the blocked patterns, which Arrow does in
        bulk with RE2 — unless a pattern needs Python's regular expressions.
        """
        if id_type in ("email", "phone") or self._blocked_re2 is None:
            return pa.array([self._normalise(id_type, v) for v in raws.to_pylist()], pa.string())
        values = pc.utf8_trim_whitespace(raws)
        if id_type in self._case_insensitive:
            values = pc.utf8_lower(values)
        refuse = pc.equal(pc.utf8_length(values), 0)
        if self._blocked_re2:
            refuse = pc.or_(refuse, pc.match_substring_regex(values, self._blocked_re2,
                                                              ignore_case=True))
        return pc.if_else(pc.fill_null(refuse, True), pa.scalar(None, pa.string()), values)

    @cached_property
    def _blocked_re2(self) -> str | None:
        """The blocked patterns as one RE2 pattern, "" when there is none, None when RE2 cannot
        take them (then the bulk path uses Python's, value by value)."""
        if not self.config.blocked:
            return ""
        pattern = "|".join(f"(?:{p})" for p in self.config.blocked)
        try:
            pc.match_substring_regex(pa.array(["probe"]), pattern, ignore_case=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return pattern

    def _normalise(self, id_type: str, raw: str) -> str | None:
        value = raw.strip()
        if not value:
            return None
        if id_type == "email":
            value = value.lower().replace(" ", "")
            local, at, domain = value.rpartition("@")
            if not at or not local or "." not in domain:
                return None
        elif id_type == "phone":
            value = self._phone(value)
            if value is None:
                return None
        elif id_type in self._case_insensitive:
            value = value.lower()
        if self._blocked is not None and self._blocked.search(value):
            return None
        return value

    def _phone(self, raw: str) -> str | None:
        text = raw
        if text.startswith("00"):
            text = "+" + text[2:]
        try:
            number = phonenumbers.parse(text, self.config.default_region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(number):
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return None


def raw_identifiers(event_type: str, user_id: str | None, anonymous_id: str | None,
                    device_id: str | None, previous_id: str | None, payload: str | bytes | None,
                    config: IdentityConfig) -> Iterator[Identifier]:
    """(type, raw value) pairs an event carries, before normalisation."""
    if user_id:
        yield "user_id", user_id
    if anonymous_id:
        yield "anonymous_id", anonymous_id
    if device_id:
        yield "device_id", device_id
    if previous_id:
        yield "anonymous_id", previous_id
    if payload:
        yield from payload_identifiers(event_type, payload, config)


# The columns above, in the order they are read: the rebuild reads them the same way, set-based.
COLUMN_TYPES = (("user_id", "user_id"), ("anonymous_id", "anonymous_id"),
                ("device_id", "device_id"), ("previous_id", "anonymous_id"))


def payload_identifiers(event_type: str, payload: str | bytes,
                        config: IdentityConfig) -> Iterator[Identifier]:
    """(type, raw value) pairs from an event's traits and external ids."""
    raw = payload.encode() if isinstance(payload, str) else payload
    # Most events carry neither traits nor external ids: skip parsing those.
    if b'"traits"' not in raw and b'"externalIds"' not in raw:
        return
    message = orjson.loads(raw)
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    traits = message.get("traits") if event_type in ("identify", "group") else context.get("traits")
    if event_type == "group":
        traits = context.get("traits")  # a group's traits describe the company, not the person
    if isinstance(traits, dict):
        for key in ("email", "phone"):
            text = _as_text(traits.get(key))
            if text:
                yield key, text
        for name, custom in config.types.items():
            for key in custom.traits:
                text = _as_text(traits.get(key))
                if text:
                    yield name, text
    external = context.get("externalIds")
    if isinstance(external, list):
        known = config.types.keys() | {"user_id", "email", "phone", "anonymous_id", "device_id"}
        for item in external:
            if not isinstance(item, dict):
                continue
            id_type, text = item.get("type"), _as_text(item.get("id"))
            if isinstance(id_type, str) and id_type in known and text:
                yield id_type, text


def event_identifiers(normaliser: Normaliser, event_type: str, user_id: str | None,
                      anonymous_id: str | None, device_id: str | None, previous_id: str | None,
                      payload: str | bytes | None) -> list[Identifier]:
    """The event's distinct, normalised, unblocked identifiers, highest priority first."""
    seen: dict[Identifier, None] = {}
    for id_type, raw in raw_identifiers(event_type, user_id, anonymous_id, device_id, previous_id,
                                        payload, normaliser.config):
        value = normaliser.normalise(id_type, raw)
        if value is None:
            normaliser.refused += 1
            continue
        seen[(id_type, value)] = None
    rank = normaliser.config.rank
    return sorted(seen, key=lambda ident: rank[ident[0]])


def parse_identifier(text: str) -> Identifier:
    """``email:jan@example.nl`` → ("email", "jan@example.nl"); the value may contain colons."""
    id_type, sep, value = text.partition(":")
    if not sep or not id_type or not value:
        raise ValueError(f"expected TYPE:VALUE (e.g. email:jan@example.nl), got {text!r}")
    return id_type, value
