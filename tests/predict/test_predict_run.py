"""`predict run` end to end on both engines: every model trains on the shop's history, its
scores land on profiles as traits a marketer can use, its card is kept and served, one model's
failure does not stop the others, and an empty workspace or a bad predict.yaml gets a clear error."""

from __future__ import annotations

import json

import pytest
from conftest import Cli, feed
from shop_data import shop

from klantbeeld.predict.service import NoPurchases
from klantbeeld.profiles.lookup import get_profile
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

TRAITS = {"predicted_clv_365d", "probability_alive", "expected_purchases_90d",
          "expected_order_value", "rfm_score", "rfm_segment", "churn_probability_90d",
          "purchase_probability_30d", "next_best_products", "upsell_product", "lookalike_loyal"}


@pytest.fixture(scope="module")
def messages():
    return shop()


@pytest.fixture
def ws(database_url, tmp_path, messages):
    ws = Workspace.open(load_settings(home=tmp_path / "home", database_url=database_url))
    ws.init(["web"])
    feed(ws, messages, tmp_path)
    yield ws
    ws.close()


def pid(ws, user: str) -> str:
    return ws.engine.fetchone("SELECT profile_id FROM identifiers WHERE id_type = 'user_id' "
                              "AND id_value = $u", {"u": user})[0]


def orders_of(messages, user: str) -> list[dict]:
    return [m for m in messages if m.get("userId") == user and m.get("event") == "Order Completed"]


def test_run_scores_every_profile_and_keeps_the_cards(ws, messages):
    ws.segments.create({"trait": "churn_probability_90d", "op": ">", "value": 0.5},
                       "Likely to churn", segment_id="likely-churn")
    result = ws.predict.run(actor="test")
    assert {r["model"]: r["status"] for r in result["models"]} == {
        "clv": "done", "rfm": "done", "churn_90d": "done", "purchase_30d": "done",
        "affinity": "done", "lookalike": "done"}
    assert result["as_of"].startswith("2026-10-3")
    listed = {t["name"] for t in ws.segments.traits.list()
              if t["definition"]["kind"] == "predicted"}
    assert listed == TRAITS

    buyers = [f"u{i}" for i in range(400) if orders_of(messages, f"u{i}")]
    heavy = max(buyers, key=lambda u: len(orders_of(messages, u)))
    once = [u for u in buyers if len(orders_of(messages, u)) == 1]
    lapsed = min(once, key=lambda u: orders_of(messages, u)[0]["timestamp"])
    scores = get_profile(ws, pid(ws, heavy))["computed"]
    old = get_profile(ws, pid(ws, lapsed))["computed"]
    value = lambda c, name: c[name]["value"]  # noqa: E731
    assert value(scores, "predicted_clv_365d") > value(old, "predicted_clv_365d")
    assert 0 <= value(old, "probability_alive") <= 1
    assert value(old, "churn_probability_90d") > value(scores, "churn_probability_90d")
    owned = {p["product_id"] for m in orders_of(messages, heavy)
             for p in m["properties"]["products"]}
    assert value(scores, "next_best_products") and not owned & set(
        value(scores, "next_best_products"))
    assert value(scores, "rfm_segment")

    # segments over the scores were re-evaluated after the run
    churners = ws.segments.get("likely-churn")["size"]
    assert 0 < churners < 400

    cards = {m["model"]: m for m in ws.predict.models()}
    churn = cards["churn_90d"]
    assert churn["metrics"]["auc"] > churn["metrics"]["baseline_auc"]
    assert churn["card"]["data_window"]["label_window_days"] == 90
    assert cards["affinity"]["metrics"]["hit_rate"] is not None
    assert ws.predict.card("clv")["card"]["purchase_model"]["converged"]


def test_cli_and_clear_errors(database_url, tmp_path, messages):
    home = tmp_path / "cli"
    cli = Cli(home, database_url)
    cli("init")
    result = cli("predict", "run", code=1)
    assert "no purchase events yet" in result.output
    with Workspace.open(load_settings(home=home, database_url=database_url)) as ws:
        ws.init(["web"])
        with pytest.raises(NoPurchases):
            ws.predict.run()
        feed(ws, messages, tmp_path)
    (home / "predict.yaml").write_text("churn:\n  churn_windows: [400]\n")
    assert "predict.yaml" in cli("predict", "run", code=1).output
    # a window the history is too short for fails alone, under its own name
    (home / "predict.yaml").write_text(
        "models: [churn]\nchurn:\n  churn_windows: [120]\n  purchase_windows: [30]\n"
        "  snapshots: 6\n")
    result = cli("predict", "run", "--json", code=1)
    status = {r["model"]: r for r in json.loads(result.stdout)["models"]}
    assert status["purchase_30d"]["status"] == "done"
    assert status["churn_120d"]["status"] == "failed"
    assert "churn_120d: training needs orders before" in status["churn_120d"]["error"]
    # one model fails (its seed segment does not exist): recorded, and the other still runs
    (home / "predict.yaml").write_text(
        "models: [rfm, lookalike]\nlookalike:\n  seed_segments: [no-such-segment]\n")
    out = cli("predict", "run", code=1).output
    assert "some models failed" in out and "no-such-segment" in out
    rows = {r["model"]: r for r in cli.json("predict", "models")}
    assert rows["rfm"]["status"] == "done" and rows["rfm"]["metrics"]["customers"] > 300
    assert rows["lookalike"]["status"] == "failed" and "no-such-segment" in rows["lookalike"]["error"]
    assert "customers" in cli("predict", "models").output
    assert '"model": "rfm"' in cli("predict", "card", "rfm", "--json").output
    assert "no run of model 'churn_90d'" in cli("predict", "card", "churn_90d", code=1).output
