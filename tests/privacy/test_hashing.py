"""Identifier normalisation and hashing for Google Customer Match and Meta Custom Audiences."""

from __future__ import annotations

import hashlib

import pytest

from klantbeeld.privacy.hashing import META_KEYS, hash_for, is_hashed, normalise_for

GOOGLE_KINDS = {"email", "phone", "first_name", "last_name", "zip", "city", "country"}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(("destination", "kind", "value", "normalised", "hashed"), [
    ("google", "email", "Dana@Example.com ", "dana@example.com",
     "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3"),
    ("google", "email", " John.Smith@GMail.com", "johnsmith@gmail.com",
     "3586de92bb3636d0885a12eff961429a32e4ebd764b96f50d85d016f9338d586"),
    ("google", "phone", "+1 800 5550101", "+18005550101",
     "61d6c2976b5d92b1ad63073a12fddd26040cd980067d03a93dd1cc50f1a3ac68"),
    ("meta", "phone", "+1 800 5550101", "18005550101",
     "cc4160cbb01658fcff52a57f3403e0e9c7a4735cff1574df41ee3f3036697468"),
])
def test_reference_vectors(destination, kind, value, normalised, hashed):
    assert normalise_for(destination, kind, value) == normalised
    assert hash_for(destination, kind, value) == hashed


@pytest.mark.parametrize(("value", "normalised"), [
    ("J.O.H.N@gmail.com", "john@gmail.com"),
    ("john.smith@googlemail.com", "johnsmith@googlemail.com"),
    ("John.Smith@GOOGLEMAIL.COM", "johnsmith@googlemail.com"),
    ("john.smith@example.com", "john.smith@example.com"),
    ("john.smith@gmail.com.au", "john.smith@gmail.com.au"),
    ("john.smith@mail.gmail.com", "john.smith@mail.gmail.com"),
])
def test_google_drops_dots_only_for_gmail(value, normalised):
    assert normalise_for("google", "email", value) == normalised


def test_meta_keeps_gmail_dots():
    assert normalise_for("meta", "email", " John.Smith@GMail.com") == "john.smith@gmail.com"


@pytest.mark.parametrize(("value", "region", "google", "meta"), [
    ("06-12345678", "NL", "+31612345678", "31612345678"),
    ("06-12345678", "nl", "+31612345678", "31612345678"),
    ("+31 6 1234 5678", "US", "+31612345678", "31612345678"),
    ("(800) 555-0101", "US", "+18005550101", "18005550101"),
    ("31612345678", None, "+31612345678", "31612345678"),
    ("0031 6 12345678", None, "+31612345678", "31612345678"),
])
def test_phone_numbers(value, region, google, meta):
    assert normalise_for("google", "phone", value, default_region=region) == google
    assert normalise_for("meta", "phone", value, default_region=region) == meta
    assert hash_for("meta", "phone", value, default_region=region) == sha256(meta)


def test_google_names_are_trimmed_and_lowercased():
    assert normalise_for("google", "first_name", "  Anne-Marie ") == "anne-marie"
    assert hash_for("google", "last_name", " De Vries") == sha256("de vries")


@pytest.mark.parametrize(("kind", "value", "normalised"), [
    ("zip", "  1234  AB ", "1234 AB"),
    ("city", " New  York ", "New York"),
    ("country", " nl", "NL"),
])
def test_google_address_fields_are_sent_unhashed(kind, value, normalised):
    assert not is_hashed("google", kind)
    assert hash_for("google", kind, value) == normalised == normalise_for("google", kind, value)


@pytest.mark.parametrize(("kind", "value", "normalised"), [
    ("first_name", "  Anne-Marie ", "annemarie"),
    ("last_name", "O'Brien Jr.", "obrienjr"),
    ("first_name", "Zoë", "zoë"),
    ("first_name", "Zoe\u0308", "zoë"),  # decomposed ë hashes as the composed one
    ("city", "'s-Hertogenbosch", "shertogenbosch"),
    ("state", " CA ", "ca"),
    ("zip", " 1234 AB ", "1234ab"),
    ("zip", "94043-1351", "94043"),
    ("country", "NL", "nl"),
    ("dob_year", "1985", "1985"),
    ("dob_month", "7", "07"),
    ("dob_day", " 03", "03"),
    ("gender", "Female", "f"),
    ("gender", "M", "m"),
    ("external_id", "  CRM-00042 ", "CRM-00042"),
])
def test_meta_normalisation(kind, value, normalised):
    assert normalise_for("meta", kind, value) == normalised
    assert is_hashed("meta", kind)
    assert hash_for("meta", kind, value) == sha256(normalised)


def test_meta_madid_is_lowercased_and_sent_unhashed():
    madid = " AECE52E7-03EE-455A-B3C4-E57283966239 "
    assert not is_hashed("meta", "madid")
    assert hash_for("meta", "madid", madid) == "aece52e7-03ee-455a-b3c4-e57283966239"


def test_meta_keys_name_every_meta_kind():
    assert set(META_KEYS.values()) == {"EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "ST", "COUNTRY",
                                       "DOBY", "DOBM", "DOBD", "GEN", "MADID", "EXTERN_ID"}
    for kind in META_KEYS:
        is_hashed("meta", kind)  # known
    for kind in GOOGLE_KINDS:
        is_hashed("google", kind)


@pytest.mark.parametrize(("destination", "kind", "message"), [
    ("tiktok", "email", "unknown destination 'tiktok'; allowed: google, meta"),
    ("Google", "email", "unknown destination 'Google'"),
    ("google", "gender", ("unknown kind 'gender' for google; allowed: city, country, email, "
                          "first_name, last_name, phone, zip")),
    ("meta", "ssn", "unknown kind 'ssn' for meta; allowed: city, country, dob_day"),
])
def test_unknown_destination_or_kind(destination, kind, message):
    for call in (lambda: hash_for(destination, kind, "x"),
                 lambda: normalise_for(destination, kind, "x"),
                 lambda: is_hashed(destination, kind)):
        with pytest.raises(ValueError, match=message):
            call()


SECRET = "geheim"


@pytest.mark.parametrize(("destination", "kind", "value", "message"), [
    ("google", "phone", f"{SECRET} 12", "phone is not a phone number"),
    ("meta", "phone", f"tel {SECRET}", "phone is not a phone number"),
    ("meta", "phone", "0612345678", "phone is not a phone number"),  # no region, no country code
    ("google", "phone", "+31 6 12", "phone is not a possible phone number"),
    ("google", "email", f"{SECRET}.example.com", "email is not an e-mail address"),
    ("meta", "email", f"{SECRET} x@example.com", "email is not an e-mail address"),
    ("google", "email", f"{SECRET}@", "email is not an e-mail address"),
    ("google", "country", f"{SECRET}land", "country is not a two-letter ISO 3166-1 code"),
    ("meta", "country", "N1", "country is not a two-letter"),
    ("meta", "dob_month", "13", "dob_month is not a number from 1 to 12"),
    ("meta", "dob_day", "0", "dob_day is not a number from 1 to 31"),
    ("meta", "dob_year", "85", "dob_year is not a number from 1900"),
    ("meta", "gender", SECRET, "gender is not one of m, f, male, female"),
    ("meta", "madid", SECRET, "madid is not an advertising id"),
    ("meta", "madid", "00000000-0000-0000-0000-000000000000", "limits ad tracking"),
    ("meta", "first_name", " 42 - ", "first_name is empty after normalisation"),
    ("google", "last_name", "   ", "last_name is empty after normalisation"),
    ("meta", "external_id", "", "external_id is empty after normalisation"),
])
def test_bad_values_raise_without_the_value(destination, kind, value, message):
    with pytest.raises(ValueError, match=message) as info:
        hash_for(destination, kind, value)
    assert SECRET not in str(info.value)
    error = info.value
    chained = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    assert chained is None or SECRET not in str(chained)


def test_unknown_region_and_non_text():
    with pytest.raises(ValueError, match="default_region 'XX' is not a known region code"):
        hash_for("google", "phone", "0612345678", default_region="XX")
    with pytest.raises(TypeError, match="email must be text, not NoneType"):
        hash_for("google", "email", None)  # type: ignore[arg-type]
