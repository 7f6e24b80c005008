"""Probabilistic matching of stored profiles and the review queue (both engines)."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient

from klantbeeld.app import create_app
from klantbeeld.identity.matching import decide_review, list_reviews, run_matching

from conftest import feed, profile_of

FIRST = ["Jan", "Piet", "Sanne", "Emma", "Daan", "Lotte", "Bram", "Fleur", "Thijs", "Noor",
         "Lucas", "Julia", "Sem", "Tess", "Finn", "Eva", "Milan", "Sara", "Levi", "Anna"]
LAST = ["de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder",
        "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker", "Brouwer"]


def people(rng: random.Random, n: int) -> list[dict]:
    out = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        out.append({"first_name": first, "last_name": last,
                    "birth_date": f"19{rng.randint(50, 99)}-{rng.randint(1, 12):02d}-"
                                  f"{rng.randint(1, 28):02d}",
                    "postcode": f"{rng.randint(1000, 9999)} {rng.choice('ABCDEFGH')}"
                                f"{rng.choice('KLMNPRST')}",
                    "house_number": str(rng.randint(1, 200)),
                    "email": f"{first.lower()}.{last.lower().replace(' ', '')}{i}@mail.nl"})
    return out


def typo(email: str) -> str:
    local, domain = email.split("@")
    return local[:2] + local[3] + local[2] + local[4:] + "@" + domain


def test_typo_duplicates_merge_households_stay_apart_and_decisions_are_kept(workspace, tmp_path):
    ws = workspace
    ws.init(["web"])
    rng = random.Random(5)
    base = people(rng, 150)
    messages, n = [], 0

    def identify(traits):
        nonlocal n
        n += 1
        messages.append({"type": "identify", "messageId": f"m-{n}", "anonymousId": f"c-{n}",
                         "timestamp": "2026-03-01T10:00:00Z", "traits": traits})

    for p in base:
        identify(p)
    duplicates = base[:30]
    for p in duplicates:       # the same person again: another cookie, a typo in the e-mail
        identify({**p, "email": typo(p["email"])})
    housemates = []
    for p in base[100:112]:    # someone else at the same address, with the same surname
        name = rng.choice([f for f in FIRST if f != p["first_name"]])
        mate = {**p, "first_name": name, "birth_date": f"20{rng.randint(0, 9):02d}-"
                f"{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "email": f"{name.lower()}.{p['house_number']}@other.nl"}
        housemates.append(mate)
        identify(mate)
    feed(ws, messages, tmp_path)

    run_matching(ws, "tester")
    found = sum(profile_of(ws, "email", p["email"]) == profile_of(ws, "email", typo(p["email"]))
                for p in duplicates)
    queued = list_reviews(ws)
    assert found + len(queued) >= len(duplicates) * 0.85   # merged, or waiting for a person
    assert found >= len(duplicates) * 0.8
    for mate, p in zip(housemates, base[100:112]):
        assert profile_of(ws, "email", mate["email"]) != profile_of(ws, "email", p["email"])

    # A person decides: a rejected pair is never queued nor merged again; an accepted one merges.
    if queued:
        first = queued[0]
        decide_review(ws, first["review_id"], accept=False, actor="tester")
        again = run_matching(ws, "tester")
        assert again["merged"] == 0
        assert all({r["profile_a"], r["profile_b"]} != {first["profile_a"], first["profile_b"]}
                   for r in list_reviews(ws))
        assert ws.engine.fetchone("SELECT count(*) FROM audit_log "
                                  "WHERE action = 'identity.review.reject'")[0] == 1


def test_review_api_accepts_a_pair_and_write_keys_may_not(workspace, tmp_path):
    ws = workspace
    keys = ws.init(["web"])
    feed(ws, [{"type": "identify", "messageId": "a", "anonymousId": "c-a",
               "timestamp": "2026-03-01T10:00:00Z", "traits": {"email": "a@x.nl"}},
              {"type": "identify", "messageId": "b", "anonymousId": "c-b",
               "timestamp": "2026-03-01T10:00:00Z", "traits": {"email": "b@x.nl"}}], tmp_path)
    a, b = profile_of(ws, "email", "a@x.nl"), profile_of(ws, "email", "b@x.nl")
    ws.engine.execute("INSERT INTO match_reviews (profile_a, profile_b, probability, status, "
                      "created_at) VALUES ($a, $b, 0.9, 'pending', now())", {"a": a, "b": b})
    admin = {"Authorization": f"Bearer {keys['admin_key']}"}
    writer = {"Authorization": f"Bearer {keys['sources'][0]['write_key']}"}
    with TestClient(create_app(workspace=ws)) as client:
        assert client.get("/v1/identity/reviews", headers=writer).status_code == 403
        listed = client.get("/v1/identity/reviews", headers=admin).json()["reviews"]
        assert [(r["profile_a"], r["profile_b"]) for r in listed] == [(a, b)]
        rid = listed[0]["review_id"]
        r = client.post(f"/v1/identity/reviews/{rid}", json={"decision": "accept"}, headers=admin)
        assert r.status_code == 200 and r.json()["merge"]["merged"]
        again = client.post(f"/v1/identity/reviews/{rid}", json={"decision": "reject"},
                            headers=admin)
        assert again.status_code == 409 and again.json()["code"] == "identity_refused"
        assert client.post("/v1/identity/reviews/999", json={"decision": "accept"},
                           headers=admin).status_code == 404
    assert profile_of(ws, "email", "a@x.nl") == profile_of(ws, "email", "b@x.nl") == a
