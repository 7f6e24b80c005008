"""``klantbeeld predict …``: train the models, write their scores onto profiles, read the cards."""

from __future__ import annotations

from typing import Any

import click
import orjson

from ..cli_support import (cli_actor, fail, json_option, open_workspace, print_json, print_table,
                           store_options, user_errors)
from .base import MODELS, ModelNotFound, NoPurchases, PredictBusy, PredictConfigError
from .cards import metrics

ERRORS = (ModelNotFound, NoPurchases, PredictBusy, PredictConfigError)


def headline(model: str, card: dict[str, Any] | None) -> str:
    """A card's headline figures, for one table cell."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v:,}"
                     for k, v in metrics(model, card).items())


@click.group("predict")
def predict_group() -> None:
    """Lifetime value, RFM, churn and purchase propensity, product affinity, look-alikes."""


@predict_group.command("run")
@click.option("--model", "models", multiple=True, type=click.Choice(MODELS),
              help="Run only this model (repeatable). Default: the models in predict.yaml.")
@store_options
@json_option
@user_errors(*ERRORS)
def run(models, home, database_url, as_json) -> None:
    """Retrain the models and rewrite their scores as traits on every profile."""
    progress = None if as_json else (lambda m: click.echo(f"· {m}", err=True))
    with open_workspace(home, database_url) as ws:
        result = ws.predict.run(list(models) or None, actor=cli_actor(), progress=progress)
    if as_json:
        print_json(result)
    else:
        print_table([{**r, "traits": ", ".join(r.get("traits") or []), "error": r.get("error")}
                     for r in result["models"]],
                    ["model", "status", "scored", "seconds", "traits", "error"])
        click.echo(f"scores as of {result['as_of']}, {result['took_s']} s")
    if any(r["status"] == "failed" for r in result["models"]):
        fail("some models failed (see error above); the others' scores were written")


@predict_group.command("models")
@store_options
@json_option
def models_command(home, database_url, as_json) -> None:
    """The latest run of every model, with headline figures from its card."""
    with open_workspace(home, database_url) as ws:
        rows = ws.predict.models()
    if as_json:
        print_json(rows)
        return
    print_table([{**r, "figures": headline(r["model"], r["card"]) or r["error"]} for r in rows],
                ["model", "status", "as_of", "scored", "figures"])


@predict_group.command("card")
@click.argument("model")
@store_options
@json_option
@user_errors(*ERRORS)
def card(model, home, database_url, as_json) -> None:
    """A model's card: when and on what it was trained, how good it is, what drives it."""
    with open_workspace(home, database_url) as ws:
        latest = ws.predict.card(model)
    if as_json:
        print_json(latest)
        return
    click.echo(f"{latest['model']}: {latest['status']}, as of {latest['as_of']}, "
               f"{latest['scored']:,} values written, run {latest['run_id']} by {latest['actor']}")
    if latest["error"]:
        click.echo(f"error: {latest['error']}")
    if latest["card"] is not None:
        click.echo(orjson.dumps(latest["card"], option=orjson.OPT_INDENT_2).decode())
