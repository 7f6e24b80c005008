"""A served workspace keeps memberships current on its own: no explicit resolve, on both engines —
what a marketer sees after a customer orders on the website."""

from __future__ import annotations

import base64
import time

import httpx


def test_a_served_workspace_moves_people_in_real_time(live_server):
    write = live_server.keys["sources"][0]["write_key"]
    basic = {"Authorization": "Basic " + base64.b64encode(f"{write}:".encode()).decode()}
    admin = {"Authorization": f"Bearer {live_server.keys['admin_key']}"}
    url = live_server.url
    r = httpx.post(f"{url}/v1/segments", headers=admin, json={
        "name": "Big buyers", "definition": {"trait": "lifetime_revenue", "op": ">", "value": 100}})
    assert r.status_code == 201 and r.json()["size"] == 0
    orders = [{"type": "identify", "userId": "ann", "traits": {"email": "ann@shop.nl"}}] + [
        {"type": "track", "userId": "ann", "event": "Order Completed",
         "properties": {"revenue": 60}} for _ in range(2)]
    assert httpx.post(f"{url}/v1/batch", headers=basic, json={"batch": orders}).status_code == 200

    deadline = time.monotonic() + 20
    members = []
    while time.monotonic() < deadline and not members:
        members = httpx.get(f"{url}/v1/segments/big-buyers/members", headers=admin
                            ).json()["profiles"]
        time.sleep(0.2)
    assert len(members) == 1, "the order did not move the customer into the segment"
    changes = httpx.get(f"{url}/v1/segments/big-buyers/changes", headers=admin).json()["changes"]
    assert [c["kind"] for c in changes] == ["segment.entered"]
    profile = httpx.get(f"{url}/v1/profiles/user_id:ann", headers=admin).json()
    assert profile["computed"]["lifetime_revenue"]["value"] == 120
    assert {"repeat-customer", "big-buyers"} <= {s["id"] for s in profile["segments"]}
