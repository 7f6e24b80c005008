"""Decode IAB TCF v2.2 TC strings (the ``euconsent-v2`` consent string a CMP writes) — stdlib only.

A TC string is base64url segments joined by ``.`` (``=`` padding is accepted, not required). The
first, the core segment, is decoded in full: 213 bits of fixed fields (version 6, created 36, …,
publisher country 12: the first fields of :class:`TCString`, in order), then the vendor consents
and vendor legitimate interests (MaxVendorId 16, IsRangeEncoding 1, then a bitfield or
NumEntries 12 × (IsARange 1, StartOrOnlyVendorId 16, EndVendorId 16 if a range)) and the publisher
restrictions (NumPubRestrictions 12 × (PurposeId 6, RestrictionType 2, a range section)).

Later segments start with a 3-bit type: 1 disclosed vendors, 2 allowed vendors (gone in v2.2, still
seen), 3 publisher TC. They are decoded when complete; a segment of another type, or one that ends
early, is kept as it was in :attr:`TCString.other_segments` — it never makes decoding fail, as the
consent itself is all in the core segment. Anything wrong with the string as a whole (not text,
empty, a character outside base64url, a core segment that is too short or not version 2) raises
:class:`TCStringError`, whose message says what is wrong and never repeats the string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import NamedTuple

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SEXTETS = {char: format(value, "06b") for value, char in enumerate(_ALPHABET)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CORE_FIXED_BITS = 213  # the core segment's fields before the vendor sections


class TCStringError(ValueError):
    """A TC string that cannot be decoded; the message says why."""


class PublisherRestriction(NamedTuple):
    """A publisher's restriction of one purpose for some vendors.

    ``restriction_type``: 0 not allowed, 1 require consent, 2 require legitimate interest.
    """

    purpose_id: int
    restriction_type: int
    vendor_ids: frozenset[int]


@dataclass(frozen=True)
class PublisherTC:
    """The publisher TC segment (type 3): the publisher's own and custom purposes."""

    purposes_consent: frozenset[int]
    purposes_li_transparency: frozenset[int]
    custom_purposes_consent: frozenset[int]
    custom_purposes_li_transparency: frozenset[int]


@dataclass(frozen=True)
class TCString:
    """A decoded TC string. Id sets are frozensets of 1-based ids (purpose 1 is the first bit)."""

    version: int
    created: datetime
    last_updated: datetime
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    tcf_policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_opt_ins: frozenset[int]
    purposes_consent: frozenset[int]
    purposes_li_transparency: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str
    vendor_consents: frozenset[int]
    vendor_legitimate_interests: frozenset[int]
    publisher_restrictions: tuple[PublisherRestriction, ...]
    disclosed_vendors: frozenset[int] | None = None
    allowed_vendors: frozenset[int] | None = None
    publisher_tc: PublisherTC | None = None
    other_segments: tuple[str, ...] = ()


class _Bits:
    """Reads big-endian unsigned fields from one segment; running out raises TCStringError."""

    def __init__(self, segment: str, name: str) -> None:
        self.name, self.pos = name, 0
        try:
            self.bits = "".join(_SEXTETS[char] for char in segment.rstrip("="))
        except KeyError:
            at = next(i for i, char in enumerate(segment) if char not in _SEXTETS)
            raise TCStringError(f"TC string {name} segment is not base64url: "
                                f"invalid character at position {at}") from None

    def take(self, n: int, what: str) -> str:
        end = self.pos + n
        if end > len(self.bits):
            raise TCStringError(f"TC string {self.name} segment is {len(self.bits)} bits, "
                                f"ends inside {what} (needs at least {end})")
        field, self.pos = self.bits[self.pos:end], end
        return field

    def uint(self, n: int, what: str) -> int:
        return int(self.take(n, what), 2) if n else 0

    def flag(self, what: str) -> bool:
        return self.take(1, what) == "1"

    def ids(self, n: int, what: str) -> frozenset[int]:
        return frozenset(i for i, bit in enumerate(self.take(n, what), start=1) if bit == "1")

    def letters(self, what: str) -> str:
        codes = self.uint(6, what), self.uint(6, what)
        if max(codes) > 25:
            raise TCStringError(f"TC string {what} is not two letters A-Z")
        return "".join(chr(ord("A") + code) for code in codes)

    def deciseconds(self, what: str) -> datetime:
        return _EPOCH + timedelta(milliseconds=100 * self.uint(36, what))

    def ranges(self, what: str) -> frozenset[int]:
        found: set[int] = set()
        for _ in range(self.uint(12, f"{what} NumEntries")):
            is_range = self.flag(f"{what} IsARange")
            start = self.uint(16, f"{what} StartOrOnlyVendorId")
            end = self.uint(16, f"{what} EndVendorId") if is_range else start
            if not 1 <= start <= end:
                raise TCStringError(f"TC string {what} has an invalid vendor range {start}-{end}")
            found.update(range(start, end + 1))
        return frozenset(found)

    def vendors(self, what: str) -> frozenset[int]:
        max_vendor_id = self.uint(16, f"{what} MaxVendorId")
        if self.flag(f"{what} IsRangeEncoding"):
            return self.ranges(what)
        return self.ids(max_vendor_id, what)


def decode_tc_string(tc: str) -> TCString:
    """Decode a TC string; raises :class:`TCStringError` when it is malformed."""
    if not isinstance(tc, str):
        raise TCStringError(f"TC string must be text, not {type(tc).__name__}")
    segments = tc.strip().split(".")
    if not segments[0]:
        raise TCStringError("TC string is empty")
    if not all(segments):
        raise TCStringError("TC string has an empty segment")
    b = _Bits(segments[0], "core")
    version = b.uint(6, "Version")
    if version != 2:
        raise TCStringError(f"TC string version is {version}, "
                            "only version 2 (TCF v2.x) is supported")
    if len(b.bits) < CORE_FIXED_BITS:
        raise TCStringError(f"TC string core segment is {len(b.bits)} bits, "
                            f"needs at least {CORE_FIXED_BITS}")
    fields = {
        "version": version,
        "created": b.deciseconds("Created"),
        "last_updated": b.deciseconds("LastUpdated"),
        "cmp_id": b.uint(12, "CmpId"),
        "cmp_version": b.uint(12, "CmpVersion"),
        "consent_screen": b.uint(6, "ConsentScreen"),
        "consent_language": b.letters("ConsentLanguage"),
        "vendor_list_version": b.uint(12, "VendorListVersion"),
        "tcf_policy_version": b.uint(6, "TcfPolicyVersion"),
        "is_service_specific": b.flag("IsServiceSpecific"),
        "use_non_standard_texts": b.flag("UseNonStandardTexts"),
        "special_feature_opt_ins": b.ids(12, "SpecialFeatureOptIns"),
        "purposes_consent": b.ids(24, "PurposesConsent"),
        "purposes_li_transparency": b.ids(24, "PurposesLITransparency"),
        "purpose_one_treatment": b.flag("PurposeOneTreatment"),
        "publisher_cc": b.letters("PublisherCC"),
        "vendor_consents": b.vendors("vendor consents"),
        "vendor_legitimate_interests": b.vendors("vendor legitimate interests"),
    }
    fields["publisher_restrictions"] = tuple(  # arguments are read left to right
        PublisherRestriction(b.uint(6, "publisher restriction PurposeId"),
                             b.uint(2, "publisher restriction RestrictionType"),
                             b.ranges("publisher restriction vendors"))
        for _ in range(b.uint(12, "NumPubRestrictions")))
    other: list[str] = []
    for segment in segments[1:]:
        s = _Bits(segment, "additional")  # a bad character raises: the string is malformed
        try:
            kind = s.uint(3, "SegmentType")
            if kind in (1, 2):
                fields["disclosed_vendors" if kind == 1 else "allowed_vendors"] = s.vendors(
                    "disclosed vendors" if kind == 1 else "allowed vendors")
                continue
            if kind == 3:
                consent = s.ids(24, "PubPurposesConsent")
                li = s.ids(24, "PubPurposesLITransparency")
                n = s.uint(6, "NumCustomPurposes")
                fields["publisher_tc"] = PublisherTC(consent, li, s.ids(n, "CustomPurposesConsent"),
                                                     s.ids(n, "CustomPurposesLITransparency"))
                continue
        except TCStringError:
            pass
        other.append(segment)
    return TCString(**fields, other_segments=tuple(other))


DEFAULT_TCF_MAPPING: Mapping[int, tuple[str, ...]] = MappingProxyType({
    1: ("analytics", "personalisation", "advertising"),
    3: ("advertising", "third_party_enrichment"),
    4: ("advertising",),
    5: ("personalisation", "third_party_enrichment"),
    6: ("personalisation",),
    8: ("analytics",),
    9: ("analytics", "third_party_enrichment"),
})
"""TCF purpose id → the Klantbeeld purposes it is needed for (read-only; see below).

Read per Klantbeeld purpose, it requires consent to all of these TCF purposes:

- ``analytics`` — 1 (store/access on a device: the ``anonymousId`` cookie), 8 (measure content
  performance), 9 (understand audiences through statistics or combinations of data sources);
- ``personalisation`` — 1, 5 (create content profiles), 6 (use content profiles);
- ``advertising`` — 1, 3 (create ad profiles), 4 (use ad profiles): audiences exported to ad
  platforms are ad profiles put to use; ad measurement (7) is the platform's business, not ours;
- ``third_party_enrichment`` — 3 and 5 (building ad and content profiles) and 9 (combining data
  from different sources). TCF has no purpose for enrichment as such (its "match and combine data
  from other sources" is a feature, which users cannot opt into), so the closest purposes are all
  required. No device access is involved, so not purpose 1;
- ``email_marketing`` — absent: no TCF purpose covers e-mail, so a TC string never grants it.

Only consent counts: legitimate-interest transparency bits and purpose one treatment (purpose 1 not
disclosed, as the publisher's country does not require it) grant nothing here.
"""


def tcf_purposes_to_klantbeeld(tc: TCString,
                               mapping: Mapping[int, Iterable[str]] = DEFAULT_TCF_MAPPING,
                               ) -> dict[str, bool]:
    """Whether ``tc`` consents to each Klantbeeld purpose named in ``mapping``.

    ``mapping`` maps TCF purpose ids (1–24) to Klantbeeld purpose names; a Klantbeeld purpose is
    granted only when every TCF purpose that maps to it is in :attr:`TCString.purposes_consent`
    (the core segment's consent; the publisher TC segment is not consulted). Purposes the mapping
    does not name are not in the result. :data:`DEFAULT_TCF_MAPPING` explains the default.
    A mapping id outside 1–24 raises ValueError; a non-integer id or a bare string of names,
    TypeError.
    """
    needs: dict[str, set[int]] = {}
    for tcf_id, names in mapping.items():
        if isinstance(tcf_id, bool) or not isinstance(tcf_id, int):
            raise TypeError(f"TCF purpose ids are integers 1-24, got {tcf_id!r}")
        if not 1 <= tcf_id <= 24:
            raise ValueError(f"TCF purpose ids are integers 1-24, got {tcf_id!r}")
        if isinstance(names, str):
            raise TypeError(f"TCF purpose {tcf_id} must map to a list of purpose names, "
                             f"not the string {names!r}")
        for name in names:
            needs.setdefault(name, set()).add(tcf_id)
    return {name: ids <= tc.purposes_consent for name, ids in needs.items()}
