"""Normalise and SHA-256 hash customer identifiers for ad-platform audience exports.

Ad platforms match an uploaded audience on hashes, so a value only matches when it is normalised
exactly as the platform normalises its own users' data before hashing. Two destinations:

- ``google`` — Customer Match (Google Ads): kinds ``email``, ``phone``, ``first_name``,
  ``last_name``, ``zip``, ``city``, ``country``;
- ``meta`` — Custom Audiences (Marketing API): the same kinds plus ``state``, ``dob_year``,
  ``dob_month``, ``dob_day``, ``gender``, ``external_id``, ``madid`` (:data:`META_KEYS` gives
  Meta's schema key for each).

==========  ======================================  ===========================================
kind        google                                  meta
==========  ======================================  ===========================================
email       trim, lowercase; gmail.com and          trim, lowercase
            googlemail.com: no dots before ``@``
phone       E.164 with ``+``                        E.164 digits, no ``+``
first/last  trim, lowercase                         lowercase letters only (accented kept)
zip         trim — **not hashed**                   lowercase, no spaces; US ZIP+4 → 5 digits
city        trim — **not hashed**                   lowercase letters only
country     ISO 3166-1 alpha-2, upper — **not       ISO 3166-1 alpha-2, lowercase
            hashed**
state       —                                       lowercase letters only (US: 2-letter code)
dob_*       —                                       ``YYYY``, ``MM``, ``DD``
gender      —                                       ``m`` or ``f`` (from m/f/male/female)
external_id —                                       trim (hashed: Meta recommends it)
madid       —                                       lowercase UUID with hyphens — **not hashed**
==========  ======================================  ===========================================

:func:`hash_for` returns what to send: the lowercase hex SHA-256 of the normalised value, or, for
the kinds the platform wants in the clear (Google's address fields zip, city and country; Meta's
mobile advertiser id), the normalised value itself — :func:`is_hashed` tells which. Sending a hash
there would match nobody. The all-zero advertiser id (the device limits ad tracking) is refused.

Phone numbers are read with ``phonenumbers``: with a leading ``+`` as international, otherwise in
``default_region`` (``"NL"``: ``06 12345678`` → ``+31612345678``); without a region a number is read
as already carrying its country code (``31612345678``, ``0031612345678``). Every error is a
:class:`ValueError` naming the kind and never the value, so no personal data reaches a log.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

import phonenumbers

META_KEYS = {
    "email": "EMAIL", "phone": "PHONE", "first_name": "FN", "last_name": "LN", "zip": "ZIP",
    "city": "CT", "state": "ST", "country": "COUNTRY", "dob_year": "DOBY", "dob_month": "DOBM",
    "dob_day": "DOBD", "gender": "GEN", "external_id": "EXTERN_ID", "madid": "MADID",
}
_GMAIL = ("gmail.com", "googlemail.com")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_GENDERS = {"m": "m", "male": "m", "f": "f", "female": "f"}


def _email(value: str, gmail_dots: bool) -> str:
    email = value.strip().lower()
    local, at, domain = email.rpartition("@")
    if not (at and local and domain) or any(char.isspace() for char in email):
        raise ValueError("email is not an e-mail address")
    if gmail_dots and domain in _GMAIL:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def _e164(value: str, region: str | None) -> str:
    text = value.strip()
    if region is None and not text.startswith("+"):
        text = "+" + text.removeprefix("00")  # country codes never start with 0: 00 is the prefix
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError("phone is not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("phone is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _country(value: str) -> str:
    code = value.strip()
    if len(code) != 2 or not (code.isascii() and code.isalpha()):
        raise ValueError("country is not a two-letter ISO 3166-1 code")
    return code


def _letters(value: str) -> str:
    return "".join(char for char in value.lower() if char.isalpha())


def _meta_zip(value: str) -> str:
    code = "".join(value.split()).lower()
    us_zip4 = re.fullmatch(r"(\d{5})-\d{4}", code)
    return us_zip4.group(1) if us_zip4 else code


def _number(kind: str, width: int, low: int, high: int) -> Callable[[str, str | None], str]:
    def normalise(value: str, region: str | None) -> str:
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= width
                and low <= int(text) <= high):
            raise ValueError(f"{kind} is not a number from {low} to {high}")
        return text.zfill(width)
    return normalise


def _gender(value: str, region: str | None) -> str:
    try:
        return _GENDERS[value.strip().lower()]
    except KeyError:
        raise ValueError("gender is not one of m, f, male, female") from None


def _madid(value: str, region: str | None) -> str:
    madid = value.strip().lower()
    if not _UUID.fullmatch(madid):
        raise ValueError("madid is not an advertising id (IDFA or GAID, a UUID)")
    if not madid.strip("0-"):
        raise ValueError("madid is the all-zero id of a device that limits ad tracking")
    return madid


_Rule = Callable[[str, str | None], str]
_RULES: dict[str, dict[str, _Rule]] = {
    "google": {
        "email": lambda v, r: _email(v, gmail_dots=True),
        "phone": _e164,
        "first_name": lambda v, r: v.strip().lower(),
        "last_name": lambda v, r: v.strip().lower(),
        "zip": lambda v, r: " ".join(v.split()),
        "city": lambda v, r: " ".join(v.split()),
        "country": lambda v, r: _country(v).upper(),
    },
    "meta": {
        "email": lambda v, r: _email(v, gmail_dots=False),
        "phone": lambda v, r: _e164(v, r).removeprefix("+"),
        "first_name": lambda v, r: _letters(v),
        "last_name": lambda v, r: _letters(v),
        "zip": lambda v, r: _meta_zip(v),
        "city": lambda v, r: _letters(v),
        "state": lambda v, r: _letters(v),
        "country": lambda v, r: _country(v).lower(),
        "dob_year": _number("dob_year", 4, 1900, 9999),
        "dob_month": _number("dob_month", 2, 1, 12),
        "dob_day": _number("dob_day", 2, 1, 31),
        "gender": _gender,
        "external_id": lambda v, r: v.strip(),
        "madid": _madid,
    },
}
_NOT_HASHED = {("google", "zip"), ("google", "city"), ("google", "country"), ("meta", "madid")}


def _rule(destination: str, kind: str) -> _Rule:
    if destination not in _RULES:
        raise ValueError(f"unknown destination {destination!r}; allowed: {', '.join(_RULES)}")
    rules = _RULES[destination]
    if kind not in rules:
        raise ValueError(f"unknown kind {kind!r} for {destination}; "
                         f"allowed: {', '.join(sorted(rules))}")
    return rules[kind]


def is_hashed(destination: str, kind: str) -> bool:
    """Whether :func:`hash_for` hashes this kind for this destination (else it is sent plain)."""
    _rule(destination, kind)
    return (destination, kind) not in _NOT_HASHED


def normalise_for(destination: str, kind: str, value: str, *,
                  default_region: str | None = None) -> str:
    """``value`` normalised as ``destination`` wants ``kind`` before hashing (see the module doc).

    ``default_region`` (ISO 3166-1 alpha-2) reads phone numbers without a country code.
    Raises :class:`ValueError` (naming the kind, never the value) when nothing usable is left,
    :class:`TypeError` when ``value`` is not text.
    """
    rule = _rule(destination, kind)
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be text, not {type(value).__name__}")
    if default_region is not None and default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"default_region {default_region!r} is not a known region code")
    region = default_region.upper() if default_region else None
    normalised = rule(unicodedata.normalize("NFC", value), region)
    if not normalised:
        raise ValueError(f"{kind} is empty after normalisation")
    return normalised


def hash_for(destination: str, kind: str, value: str, *,
             default_region: str | None = None) -> str:
    """The value to send: lowercase hex SHA-256 of :func:`normalise_for`, or the normalised value
    itself for the kinds the platform takes unhashed (Google zip/city/country, Meta madid)."""
    normalised = normalise_for(destination, kind, value, default_region=default_region)
    if (destination, kind) in _NOT_HASHED:
        return normalised
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()
