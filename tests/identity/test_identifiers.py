"""Identifier extraction and normalisation."""

import orjson
import pytest

from klantbeeld.identity.config import IdentityConfig, IdentityConfigError, load_identity_config
from klantbeeld.identity.identifiers import Normaliser, event_identifiers, parse_identifier


def ids(message: dict, config: IdentityConfig | None = None):
    n = Normaliser(config or IdentityConfig())
    return event_identifiers(n, message.get("type", "track"), message.get("userId"),
                             message.get("anonymousId"), (message.get("context") or {}).get(
                                 "device", {}).get("id"), message.get("previousId"),
                             orjson.dumps(message))


@pytest.mark.parametrize("raw", ["06-12345678", "0612345678", "+31 6 12345678", "0031612345678",
                                 "(06) 1234 5678", "+31612345678", "06 12 34 56 78"])
def test_dutch_phone_formats_become_one_e164_number(raw):
    assert Normaliser(IdentityConfig()).normalise("phone", raw) == "+31612345678"


def test_default_region_is_configurable():
    n = Normaliser(IdentityConfig(default_region="BE"))
    assert n.normalise("phone", "0470 12 34 56") == "+32470123456"


def test_email_is_trimmed_and_lower_cased_and_junk_is_refused():
    n = Normaliser(IdentityConfig())
    assert n.normalise("email", "  Jan.Jansen@Example.NL ") == "jan.jansen@example.nl"
    assert n.normalise("email", "not an address") is None
    for junk in ("test@shop.nl", "null", "anonymous", "0000000", "-1", "N/A"):
        assert n.normalise("email" if "@" in junk else "user_id", junk) is None, junk


def test_identifiers_come_from_ids_traits_context_and_external_ids():
    config = IdentityConfig(types={"crm_id": {"traits": ["customer_number"]},
                                   "loyalty_card": {}})
    found = ids({"type": "identify", "userId": "42", "anonymousId": "c-1",
                 "traits": {"email": "Jan@X.nl", "phone": "0612345678", "customer_number": 77},
                 "context": {"device": {"id": "dev-1"},
                             "externalIds": [{"id": "L-9", "type": "loyalty_card"},
                                             {"id": "zz", "type": "undeclared"}]}}, config)
    assert found == [("user_id", "42"), ("email", "jan@x.nl"), ("phone", "+31612345678"),
                     ("device_id", "dev-1"), ("anonymous_id", "c-1"), ("crm_id", "77"),
                     ("loyalty_card", "L-9")]


def test_track_reads_context_traits_not_properties():
    found = ids({"type": "track", "anonymousId": "c-1", "properties": {"email": "p@x.nl"},
                 "context": {"traits": {"email": "t@x.nl"}}})
    assert ("email", "t@x.nl") in found and ("email", "p@x.nl") not in found


def test_blocked_values_link_nothing():
    config = IdentityConfig(blocked=[r"^guest-"])
    assert ids({"userId": "guest-12", "anonymousId": "c-1"}, config) == [("anonymous_id", "c-1")]


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "identity.yaml"
    path.write_text("limits: {crm_id: 2}\n")
    with pytest.raises(IdentityConfigError, match="unknown identifier type 'crm_id'"):
        load_identity_config(path)
    path.write_text("default_region: XX\n")
    with pytest.raises(IdentityConfigError, match="default_region"):
        load_identity_config(path)
    path.write_text("blocked: ['(']\n")
    with pytest.raises(IdentityConfigError, match="not a regular expression"):
        load_identity_config(path)
    assert load_identity_config(tmp_path / "absent.yaml") == IdentityConfig()


def test_identifier_refs_parse():
    assert parse_identifier("email:a:b@x.nl") == ("email", "a:b@x.nl")
    with pytest.raises(ValueError, match="TYPE:VALUE"):
        parse_identifier("jan@example.nl")


def test_bulk_normalisation_equals_one_by_one():
    """The rebuild normalises in bulk (Arrow, RE2); it must agree with the real-time path."""
    import random

    import pyarrow as pa

    rng = random.Random(3)
    pieces = ["null", "NULL", " anonymous ", "0000", "--", "test", "guest", "u-1", "Jan", "-1",
              "\t x \n", "", "   ", "a.b", "0", "00-12", "N/A", "n/a ", "TEST@x.nl", "é ü"]
    values = list({rng.choice(pieces) + rng.choice(["", " ", "1", "-"]) for _ in range(400)}
                  | set(pieces))
    for config in (IdentityConfig(), IdentityConfig(types={"crm_id": {"case_sensitive": False}}),
                   IdentityConfig(blocked=[r"^(?!u-)"])):           # RE2 lacks look-ahead
        n = Normaliser(config)
        for id_type in ("anonymous_id", "user_id", "email") + (("crm_id",) if config.types else ()):
            bulk = n.normalise_array(id_type, pa.array(values, pa.string())).to_pylist()
            assert bulk == [n.normalise(id_type, v) for v in values], (id_type, config.blocked)
