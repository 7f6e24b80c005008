"""The TC string decoder: the IAB's own vectors, errors, and a round trip through a test encoder."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klantbeeld.privacy.tcf import (
    DEFAULT_TCF_MAPPING,
    PublisherRestriction,
    PublisherTC,
    TCStringError,
    decode_tc_string,
    tcf_purposes_to_klantbeeld,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VECTOR_1 = "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"
VECTOR_2 = "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA"
# VECTOR_2 with disclosed vendors, allowed vendors and publisher TC segments (the IAB's tests).
VECTOR_2_ALL = VECTOR_2 + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA.cAAAAAAAITg="


# --- a small TC string encoder, for tests only ----------------------------------------------

class BitWriter:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def int(self, value: int, n: int) -> BitWriter:
        assert 0 <= value < 2 ** n
        self.bits.append(format(value, f"0{n}b"))
        return self

    def flag(self, value: bool) -> BitWriter:
        return self.int(int(value), 1)

    def ids(self, ids: frozenset[int], n: int) -> BitWriter:
        self.bits.append("".join("1" if i in ids else "0" for i in range(1, n + 1)))
        return self

    def letters(self, text: str) -> BitWriter:
        for char in text:
            self.int(ord(char) - ord("A"), 6)
        return self

    def ranges(self, ids: frozenset[int]) -> BitWriter:
        runs: list[list[int]] = []
        for i in sorted(ids):
            if runs and runs[-1][1] == i - 1:
                runs[-1][1] = i
            else:
                runs.append([i, i])
        self.int(len(runs), 12)
        for start, end in runs:
            self.flag(start != end).int(start, 16)
            if start != end:
                self.int(end, 16)
        return self

    def vendors(self, ids: frozenset[int], ranged: bool) -> BitWriter:
        max_id = max(ids, default=0)
        self.int(max_id, 16).flag(ranged)
        return self.ranges(ids) if ranged else self.ids(ids, max_id)

    def segment(self) -> str:
        """Padded to whole bytes and base64url-encoded without ``=``, as CMPs do."""
        bits = "".join(self.bits)
        bits += "0" * (-len(bits) % 8)
        data = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
        return base64.urlsafe_b64encode(data).decode().rstrip("=")


def fixed_writer(*, version=2, created=15_800_000_000, last_updated=15_800_000_000, cmp_id=7,
                 cmp_version=1, consent_screen=3, consent_language="NL", vendor_list_version=42,
                 tcf_policy_version=4, is_service_specific=True, use_non_standard_texts=False,
                 special_features=frozenset(), purposes=frozenset(), purposes_li=frozenset(),
                 purpose_one_treatment=False, publisher_cc="NL") -> BitWriter:
    """The core segment's 213 bits of fixed fields."""
    w = BitWriter()
    w.int(version, 6).int(created, 36).int(last_updated, 36).int(cmp_id, 12).int(cmp_version, 12)
    w.int(consent_screen, 6).letters(consent_language).int(vendor_list_version, 12)
    w.int(tcf_policy_version, 6).flag(is_service_specific).flag(use_non_standard_texts)
    w.ids(special_features, 12).ids(purposes, 24).ids(purposes_li, 24)
    return w.flag(purpose_one_treatment).letters(publisher_cc)


def core_writer(*, vendors=frozenset(), vendors_ranged=False, li_vendors=frozenset(),
                li_vendors_ranged=False, restrictions=(), **fixed) -> BitWriter:
    w = fixed_writer(**fixed)
    w.vendors(vendors, vendors_ranged).vendors(li_vendors, li_vendors_ranged)
    w.int(len(restrictions), 12)
    for purpose_id, restriction_type, vendor_ids in restrictions:
        w.int(purpose_id, 6).int(restriction_type, 2).ranges(vendor_ids)
    return w


def encode(**fields) -> str:
    return core_writer(**fields).segment()


# --- the IAB's vectors ----------------------------------------------------------------------

def test_vector_1_decodes_every_field():
    tc = decode_tc_string(VECTOR_1)
    assert tc.version == 2
    assert tc.created == datetime(2020, 1, 26, 17, 1, tzinfo=UTC)
    assert tc.last_updated == datetime(2021, 2, 2, 17, 1, tzinfo=UTC)
    assert tc.created.tzinfo is not None
    assert (tc.cmp_id, tc.cmp_version, tc.consent_screen) == (675, 2, 1)
    assert tc.consent_language == "EN"
    assert tc.vendor_list_version == 15
    assert tc.tcf_policy_version == 2
    assert tc.is_service_specific is False
    assert tc.use_non_standard_texts is False
    assert tc.special_feature_opt_ins == {1}
    assert tc.purposes_consent == {2, 10}
    assert tc.purposes_li_transparency == {2, 9}
    assert tc.purpose_one_treatment is True
    assert tc.publisher_cc == "AA"
    assert tc.vendor_consents == set() and tc.vendor_legitimate_interests == set()
    assert tc.publisher_restrictions == ()
    assert tc.disclosed_vendors is None and tc.publisher_tc is None and tc.other_segments == ()


def test_vector_2_decodes_purposes_and_vendors():
    tc = decode_tc_string(VECTOR_2)
    assert tc.purposes_consent == {3, 4, 5, 6, 7, 8, 9}
    assert tc.vendor_consents == {23, 37, 47, 48, 53, 65, 98}
    assert tc.vendor_legitimate_interests == {37, 47, 48, 53, 65, 98, 129}
    assert (tc.cmp_id, tc.cmp_version, tc.vendor_list_version) == (2, 1, 7)
    assert (tc.consent_language, tc.publisher_cc) == ("EN", "AQ")
    assert tc.created.date() == datetime(2019, 12, 4).date()


def test_additional_segments_are_decoded():
    tc = decode_tc_string(VECTOR_2_ALL)
    assert tc.purposes_consent == {3, 4, 5, 6, 7, 8, 9}
    assert tc.disclosed_vendors == {23, 37, 47, 48, 53, 65, 98, 129}
    assert tc.allowed_vendors == {12, 23, 37, 47, 48, 53}
    assert tc.publisher_tc == PublisherTC(frozenset({1}), frozenset({24}), frozenset({2}),
                                          frozenset({1, 2}))
    assert tc.other_segments == ()


@pytest.mark.parametrize(("tc", "consents", "legitimate_interests"), [
    ("COv__-wOv__-wC2AAAENAPCgAAAAAAAAAAAAA_wAQA_gEBABAEAAAA", {127}, {128}),
    ("COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAQFfgUbABAUaAAA", {703}, {653}),
    ("COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA", {702, 703}, {683, 684}),
])
def test_range_encoded_vendor_sections(tc, consents, legitimate_interests):
    decoded = decode_tc_string(tc)
    assert decoded.vendor_consents == consents
    assert decoded.vendor_legitimate_interests == legitimate_interests


def test_publisher_restrictions():
    tc = decode_tc_string("COuQACgOuQACgM-AAAENAPCAAAAAAAAAAAAAAAAAAABgoAAQAAHAAA")
    assert tc.publisher_restrictions == (
        PublisherRestriction(1, 1, frozenset()),
        PublisherRestriction(2, 0, frozenset()),
        PublisherRestriction(3, 2, frozenset()),
    )
    purpose_id, restriction_type, vendor_ids = tc.publisher_restrictions[0]
    assert (purpose_id, restriction_type, vendor_ids) == (1, 1, set())


def test_padding_and_surrounding_whitespace_are_accepted():
    assert decode_tc_string(VECTOR_1 + "==") == decode_tc_string(VECTOR_1)
    assert decode_tc_string(f" {VECTOR_1}\n") == decode_tc_string(VECTOR_1)


def test_unknown_or_incomplete_segments_are_kept_raw():
    unknown = BitWriter().int(5, 3).int(1234, 13).segment()
    incomplete = BitWriter().int(1, 3).int(900, 16).flag(False).segment()  # bitfield cut short
    tc = decode_tc_string(f"{VECTOR_1}.{unknown}.{incomplete}")
    assert tc.other_segments == (unknown, incomplete)
    assert tc.disclosed_vendors is None
    assert tc.purposes_consent == {2, 10}


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("tc", "message"), [
    (VECTOR_1[:12], "TC string core segment is 72 bits, needs at least 213"),
    (VECTOR_1[:30], "TC string core segment is 180 bits, needs at least 213"),
    ("BOQ7WlgOQ7WlgABACDENABwAAABJOACgACAAQABA", "version is 1, only version 2"),  # TCF v1
    ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "version is 0"),
    ("not a TC string!", "core segment is not base64url: invalid character at position 3"),
    ("CO+ybn4PA/zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA", "invalid character at position 2"),
    ("CO=ybn4PA", "invalid character at position 2"),
    ("", "TC string is empty"),
    ("   ", "TC string is empty"),
    (".IBAgAAAgAIAwgAgAAAAEAAAACA", "TC string is empty"),
    (VECTOR_1 + "..IBAg", "empty segment"),
    (VECTOR_1 + ".IBA!", "additional segment is not base64url"),
])
def test_malformed_strings_raise_a_clear_error(tc, message):
    with pytest.raises(TCStringError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_tc_string(tc)


def test_a_string_ending_inside_the_vendor_section_says_where():
    bits = "".join(core_writer(vendors=frozenset({500})).bits)[:240]
    w = BitWriter()
    w.bits = [bits]
    with pytest.raises(TCStringError, match=r"is 240 bits, ends inside vendor consents \(needs"):
        decode_tc_string(w.segment())


def test_invalid_ranges_and_letters_raise():
    reversed_range = fixed_writer().int(30, 16).flag(True).int(1, 12)  # vendor consents: ranges
    reversed_range.flag(True).int(30, 16).int(20, 16)  # one range, 30-20
    with pytest.raises(TCStringError, match="vendor consents has an invalid vendor range 30-20"):
        decode_tc_string(reversed_range.segment())
    zero = fixed_writer().int(30, 16).flag(True).int(1, 12).flag(False).int(0, 16)
    with pytest.raises(TCStringError, match="invalid vendor range 0-0"):
        decode_tc_string(zero.segment())
    assert len("".join(fixed_writer().bits)) == 213
    with pytest.raises(TCStringError, match="ConsentLanguage is not two letters"):
        decode_tc_string(encode(consent_language="E["))  # "[" is 26 after "A"


def test_non_text_raises():
    with pytest.raises(TCStringError, match="must be text, not NoneType"):
        decode_tc_string(None)  # type: ignore[arg-type]
    with pytest.raises(TCStringError, match="must be text, not bytes"):
        decode_tc_string(VECTOR_1.encode())  # type: ignore[arg-type]


def test_the_error_is_a_value_error_and_does_not_repeat_the_string():
    secret = "CQsecretsecretsecret"
    with pytest.raises(ValueError) as info:
        decode_tc_string(secret)
    assert isinstance(info.value, TCStringError) and secret not in str(info.value)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=",
               max_size=120))
def test_arbitrary_base64url_never_leaks_other_errors(tail):
    for tc in (tail, "C" + tail, VECTOR_1[:36] + tail, VECTOR_2 + tail):
        try:
            decode_tc_string(tc)
        except TCStringError:
            pass


@given(st.text(max_size=60))
def test_arbitrary_text_never_leaks_other_errors(text):
    try:
        decode_tc_string(text)
    except TCStringError:
        pass


# --- round trip -----------------------------------------------------------------------------

vendor_ids = st.frozensets(st.integers(1, 3000), max_size=40) | st.frozensets(
    st.integers(1, 200), max_size=150)  # the second: dense, so long runs in range encoding
letters = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)


@given(
    created=st.integers(0, 2 ** 36 - 1), last_updated=st.integers(0, 2 ** 36 - 1),
    cmp_id=st.integers(0, 4095), cmp_version=st.integers(0, 4095),
    consent_screen=st.integers(0, 63), consent_language=letters,
    vendor_list_version=st.integers(0, 4095), tcf_policy_version=st.integers(0, 63),
    is_service_specific=st.booleans(), use_non_standard_texts=st.booleans(),
    special_features=st.frozensets(st.integers(1, 12)),
    purposes=st.frozensets(st.integers(1, 24)), purposes_li=st.frozensets(st.integers(1, 24)),
    purpose_one_treatment=st.booleans(), publisher_cc=letters,
    vendors=vendor_ids, vendors_ranged=st.booleans(),
    li_vendors=vendor_ids, li_vendors_ranged=st.booleans(),
    restrictions=st.lists(st.tuples(st.integers(1, 24), st.integers(0, 3),
                                    st.frozensets(st.integers(1, 3000), max_size=20)),
                          max_size=4),
)
def test_round_trip(**fields):
    tc = decode_tc_string(encode(**fields))
    assert tc.version == 2
    assert tc.created == EPOCH + timedelta(milliseconds=100 * fields["created"])
    assert tc.last_updated == EPOCH + timedelta(milliseconds=100 * fields["last_updated"])
    for name in ("cmp_id", "cmp_version", "consent_screen", "consent_language",
                 "vendor_list_version", "tcf_policy_version", "is_service_specific",
                 "use_non_standard_texts", "purpose_one_treatment", "publisher_cc"):
        assert getattr(tc, name) == fields[name], name
    assert tc.special_feature_opt_ins == fields["special_features"]
    assert tc.purposes_consent == fields["purposes"]
    assert tc.purposes_li_transparency == fields["purposes_li"]
    assert tc.vendor_consents == fields["vendors"]
    assert tc.vendor_legitimate_interests == fields["li_vendors"]
    assert tc.publisher_restrictions == tuple(PublisherRestriction(*r)
                                              for r in fields["restrictions"])


@given(disclosed=vendor_ids, ranged=st.booleans(), allowed=vendor_ids,
       pub_consent=st.frozensets(st.integers(1, 24)), custom=st.integers(0, 63),
       data=st.data())
def test_round_trip_of_additional_segments(disclosed, ranged, allowed, pub_consent, custom, data):
    custom_consent = data.draw(st.frozensets(st.integers(1, custom))) if custom else frozenset()
    segments = [
        BitWriter().int(1, 3).vendors(disclosed, ranged).segment(),
        BitWriter().int(2, 3).vendors(allowed, not ranged).segment(),
        BitWriter().int(3, 3).ids(pub_consent, 24).ids(frozenset(), 24).int(custom, 6)
        .ids(custom_consent, custom).ids(frozenset(), custom).segment(),
    ]
    tc = decode_tc_string(".".join([encode(), *segments]))
    assert tc.disclosed_vendors == disclosed
    assert tc.allowed_vendors == allowed
    assert tc.publisher_tc == PublisherTC(pub_consent, frozenset(), custom_consent, frozenset())
    assert tc.other_segments == ()


# --- mapping to Klantbeeld purposes ---------------------------------------------------------

def test_default_mapping_on_vector_2():
    assert tcf_purposes_to_klantbeeld(decode_tc_string(VECTOR_2)) == {
        "analytics": False,  # purpose 1 (device storage) not consented
        "personalisation": False,
        "advertising": False,
        "third_party_enrichment": True,  # 3, 5 and 9 consented
    }


def test_default_mapping_grants_everything_on_full_consent_but_never_email():
    tc = decode_tc_string(encode(purposes=frozenset(range(1, 12))))
    granted = tcf_purposes_to_klantbeeld(tc)
    assert granted == dict.fromkeys(
        ["analytics", "personalisation", "advertising", "third_party_enrichment"], True)
    assert "email_marketing" not in granted


def test_a_purpose_needs_every_tcf_purpose_that_maps_to_it():
    mapping = {1: ["analytics"], 3: ["personalisation", "advertising"], 4: ["advertising"]}
    tc = decode_tc_string(encode(purposes=frozenset({1, 3})))
    assert tcf_purposes_to_klantbeeld(tc, mapping) == {
        "analytics": True, "personalisation": True, "advertising": False}


def test_legitimate_interest_is_not_consent():
    tc = decode_tc_string(encode(purposes_li=frozenset(range(1, 25)), purpose_one_treatment=True))
    assert not any(tcf_purposes_to_klantbeeld(tc).values())


@pytest.mark.parametrize(("mapping", "error", "message"), [
    ({0: ["analytics"]}, ValueError, "integers 1-24, got 0"),
    ({25: ["analytics"]}, ValueError, "integers 1-24, got 25"),
    ({"1": ["analytics"]}, TypeError, "integers 1-24, got '1'"),
    ({True: ["analytics"]}, TypeError, "integers 1-24, got True"),
    ({3: "advertising"}, TypeError, "must map to a list of purpose names"),
])
def test_invalid_mappings_raise(mapping, error, message):
    with pytest.raises(error, match=message):
        tcf_purposes_to_klantbeeld(decode_tc_string(VECTOR_1), mapping)


def test_default_mapping_is_read_only():
    with pytest.raises(TypeError):
        DEFAULT_TCF_MAPPING[2] = ("advertising",)  # type: ignore[index]
