"""The merge rules of the in-memory identity graph (pure logic, no store)."""

from datetime import datetime, timezone

from klantbeeld.identity.config import IdentityConfig
from klantbeeld.identity.graph import IdentityGraph, profile_id_for

T = datetime(2026, 1, 1, tzinfo=timezone.utc)


def graph(**config) -> IdentityGraph:
    return IdentityGraph(IdentityConfig(**config))


def test_new_join_and_merge_keep_the_oldest_profile():
    g = graph()
    first = g.resolve([("anonymous_id", "c1")], 1, T)
    assert first == profile_id_for(("anonymous_id", "c1"))
    assert g.resolve([("anonymous_id", "c1")], 2, T) == first          # join
    second = g.resolve([("email", "a@x.nl")], 3, T)
    assert second != first
    merged = g.resolve([("email", "a@x.nl"), ("anonymous_id", "c1")], 4, T)
    assert merged == first                                               # the oldest survives
    assert g.survivor(second) == first                                   # the other still resolves
    assert g.profile_of(("email", "a@x.nl")).pid == first
    changes = g.drain()
    assert [(m[0], m[1]) for m in changes.merges] == [(first, second)]
    assert "email:a@x.nl" in changes.merges[0][4] or "anonymous_id:c1" in changes.merges[0][4]


def test_user_id_limit_keeps_a_shared_cookie_with_its_first_owner():
    g = graph()
    a = g.resolve([("user_id", "A"), ("anonymous_id", "shared")], 1, T)
    b = g.resolve([("user_id", "B"), ("anonymous_id", "shared")], 2, T)
    assert a != b
    assert g.profile_of(("anonymous_id", "shared")).pid == a
    assert g.profile_of(("user_id", "B")).pid == b
    decision = g.drain().decisions[0]
    assert decision[3:5] == ("anonymous_id", "shared")
    assert "2 user_id values (limit 1)" in decision[5]


def test_lowest_priority_identifier_is_dropped_first():
    g = graph(limits={"user_id": 1, "email": 1})
    g.resolve([("user_id", "A"), ("email", "a@x.nl")], 1, T)
    # B arrives with A's email and a fresh phone: the email (priority above phone) breaks the
    # user_id limit; the phone is dropped first, then the email, and B keeps only its own id.
    pid = g.resolve([("user_id", "B"), ("email", "a@x.nl"), ("phone", "+31612345678")], 2, T)
    assert g.profile_of(("user_id", "B")).pid == pid
    assert g.profile_of(("email", "a@x.nl")).pid != pid
    dropped = [d[3] for d in g.drain().decisions]
    assert dropped == ["phone", "email"]


def test_custom_type_limits_and_a_merge_over_the_limit_is_refused():
    g = graph(types={"crm_id": {"limit": 1}})
    p1 = g.resolve([("crm_id", "C1"), ("email", "a@x.nl")], 1, T)
    p2 = g.resolve([("crm_id", "C2"), ("phone", "+31612345678")], 2, T)
    assert g.resolve([("email", "a@x.nl"), ("phone", "+31612345678")], 3, T) == p1
    assert g.profile_of(("phone", "+31612345678")).pid == p2


def test_separated_identifiers_never_share_a_profile_again():
    g = graph()
    g.resolve([("user_id", "A")], 1, T)
    g.resolve([("anonymous_id", "c9")], 2, T)
    a, c = g.ids[("user_id", "A")], g.ids[("anonymous_id", "c9")]
    g.separate = {a: {c}, c: {a}}
    g.resolve([("user_id", "A"), ("anonymous_id", "c9")], 3, T)
    assert g.profile_of(("user_id", "A")) is not g.profile_of(("anonymous_id", "c9"))
    assert "split" in g.drain().decisions[0][5]


def test_profile_ids_are_stable_for_the_same_history():
    history = [[("anonymous_id", "c1")], [("email", "e@x.nl")],
               [("email", "e@x.nl"), ("anonymous_id", "c1")], [("user_id", "U")]]
    runs = []
    for _ in range(2):
        g = graph()
        runs.append([g.resolve(ids, seq, T) for seq, ids in enumerate(history, 1)])
    assert runs[0] == runs[1]
    assert all(p.startswith("p_") and "e@x.nl" not in p for p in runs[0])
