"""Model cards and runs over HTTP (both engines): an admin starts a run in the background and
sees its cards land; a read key reads cards but may not start runs; a write key reads nothing;
a second run while one is going is refused, a bad predict.yaml is reported at once; an unknown
model is a 404."""

from __future__ import annotations

import time

from conftest import feed
from shop_data import shop

from klantbeeld.collect.sources import create_key


def test_runs_and_cards_over_http(collect_api, tmp_path):
    ws = collect_api.workspace
    feed(ws, shop(people=150), tmp_path)
    ws.resolve()   # the server's resolver thread may still be catching up with the import
    with ws.engine.transaction() as tx:
        read_key = create_key(tx, "read")
    read = lambda path: collect_api.client.get(  # noqa: E731
        path, headers={"Authorization": f"Bearer {read_key}"})

    assert read("/v1/models").json() == {"models": [], "running": False}
    missing = read("/v1/models/rfm")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"

    started = collect_api.admin("POST", "/v1/predict/run", json={"models": ["rfm", "clv"]})
    assert started.status_code == 202 and started.json()["status"] == "started"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = read("/v1/models").json()
        if not body["running"] and len(body["models"]) == 2:
            break
        time.sleep(0.2)
    models = {m["model"]: m for m in body["models"]}
    assert set(models) == {"rfm", "clv"}
    assert models["clv"]["status"] == "done" and models["clv"]["metrics"]["customers"] > 50
    card = read("/v1/models/clv").json()
    assert card["card"]["purchase_model"]["params"]["r"] > 0
    assert [h["model"] for h in card["history"]] == ["clv"]

    # who may do what
    assert collect_api.client.post("/v1/predict/run", headers={
        "Authorization": f"Bearer {read_key}"}).status_code == 403
    assert collect_api.client.get("/v1/models", headers=collect_api.basic(
        collect_api.write_key)).status_code == 403
    unknown = collect_api.admin("POST", "/v1/predict/run", json={"models": ["crystal_ball"]})
    assert unknown.status_code == 422

    # one run at a time; a run that cannot start says why at once
    with ws.predict._lock:
        busy = collect_api.admin("POST", "/v1/predict/run", json={})
    assert busy.status_code == 409 and busy.json()["code"] == "conflict"
    (ws.settings.home / "predict.yaml").write_text("churn:\n  churn_windows: [7]\n")
    bad = collect_api.admin("POST", "/v1/predict/run", json={})
    assert bad.status_code == 422 and "predict.yaml" in bad.json()["message"]
