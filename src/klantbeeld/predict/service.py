"""``ws.predict``: run the predictive models on a workspace's data and put their scores on profiles.

A run reads purchases, order lines and behaviour features once (as of the latest event, so a
history that ends before today is scored as it stood then), runs each model in ``predict.yaml``
order, writes each model's score sets as predicted traits in its own transaction, and records a
``model_runs`` row with the model card. A model that fails is recorded with its error; the others
still run. Segments are re-evaluated afterwards, since they may use the scores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from ..store import Session, json_value
from . import data, scores
from .base import MODELS, ModelNotFound, ModelRun, NoPurchases, PredictBusy
from .cards import metrics
from .config import PredictConfig, load_predict_config

if TYPE_CHECKING:
    from ..workspace import Workspace

log = logging.getLogger(__name__)


class Inputs:
    """What the models read, loaded once per run and shared."""

    def __init__(self, s: Session, ws: "Workspace", config: PredictConfig, as_of: datetime) -> None:
        self.s, self.ws, self.config, self.as_of = s, ws, config, as_of
        # models take history strictly before `now`: just after as_of, so the latest order counts
        self.now = _after(as_of)
        self._features: dict[datetime, pa.Table] = {}

    @cached_property
    def orders(self) -> pa.Table:
        return data.orders(self.s, self.ws.segments.config, until=self.now)

    @cached_property
    def lines(self) -> pa.Table:
        return data.order_lines(self.s, self.ws.segments.config, self.config.products.fields(),
                                until=self.now)

    def features_at(self, cutoff: datetime) -> pa.Table:
        from .features import behaviour_features

        if cutoff not in self._features:
            self._features[cutoff] = behaviour_features(
                self.s, self.ws.segments.config, cutoff, self.config.features)
        return self._features[cutoff]

    @cached_property
    def profiles(self) -> pa.Table:
        return data.live_profiles(self.s)

    def seeds(self, segment_ids: list[str]) -> dict[str, list[str]]:
        known = {r[0] for r in self.s.fetchall("SELECT segment_id FROM segments")}
        missing = [sid for sid in segment_ids if sid not in known]
        if missing:
            raise LookupError(f"lookalike.seed_segments: no segment {', '.join(map(repr, missing))}"
                              " (klantbeeld segments list shows the ids)")
        out: dict[str, list[str]] = {}
        for sid in segment_ids:
            rows = self.s.fetchall("SELECT profile_id FROM segment_members WHERE segment_id = $s "
                                   "ORDER BY profile_id", {"s": sid})
            out[sid] = [r[0] for r in rows]
        return out


def _after(t: datetime) -> datetime:
    """``until`` is exclusive: include the events at the as-of instant itself."""
    return t + timedelta(microseconds=1)


def _runs(result: ModelRun | list[ModelRun]) -> list[ModelRun]:
    return result if isinstance(result, list) else [result]


def _clv(i: Inputs) -> list[ModelRun]:
    from .lifetime import run

    return _runs(run(i.orders, i.config.clv, i.now))


def _rfm(i: Inputs) -> list[ModelRun]:
    from .rfm import run

    return _runs(run(i.orders, i.config.rfm, i.now))


def _churn(i: Inputs) -> list[ModelRun]:
    from .churn import run

    return _runs(run(i.features_at, i.orders, i.config.churn, i.now))


def _affinity(i: Inputs) -> list[ModelRun]:
    from .affinity import run

    cfg = i.config.affinity
    return _runs(run(i.lines, cfg, i.now, profiles=i.profiles if cfg.include_cold else None))


def _lookalike(i: Inputs) -> list[ModelRun]:
    from .lookalike import run

    cfg = i.config.lookalike
    return _runs(run(i.features_at(i.now), i.seeds(list(cfg.seed_segments)), cfg, i.now))


RUNNERS: dict[str, Callable[[Inputs], list[ModelRun]]] = {
    "clv": _clv, "rfm": _rfm, "churn": _churn, "affinity": _affinity, "lookalike": _lookalike}


class Predictions:
    def __init__(self, ws: "Workspace") -> None:
        self.ws = ws
        self.engine = ws.engine
        self._lock = threading.Lock()

    @property
    def config(self) -> PredictConfig:
        return load_predict_config(self.ws.settings.predict_config_path())

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def run(self, models: list[str] | None = None, *, actor: str = "api",
            as_of: datetime | None = None,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Train and score the chosen models (default: those in predict.yaml); return a summary
        per model. Raises :class:`PredictBusy` when a run is already going in this process."""
        config, chosen = self._prepare(models)
        self._acquire()
        try:
            return self._run(config, chosen, actor, as_of, progress or (lambda _m: None))
        finally:
            self._lock.release()

    def start(self, models: list[str] | None = None, *, actor: str = "api") -> None:
        """Check that a run can start — predict.yaml valid, purchases stored, no run going —
        and raise if not; then run it in a background thread (the API's way: minutes of work
        do not hold a request)."""
        config, chosen = self._prepare(models)
        with self.engine.session() as s:
            _as_of(s, self.ws)
        self._acquire()

        def work() -> None:
            try:
                self._run(config, chosen, actor, None, lambda _m: None)
            except Exception:
                log.exception("prediction run failed")
            finally:
                self._lock.release()

        threading.Thread(target=work, name="klantbeeld-predict", daemon=True).start()

    def _prepare(self, models: list[str] | None) -> tuple[PredictConfig, list[str]]:
        config = self.config
        chosen = list(dict.fromkeys(models or config.models))
        unknown = sorted(set(chosen) - set(MODELS))
        if unknown:
            raise ModelNotFound(f"no model {', '.join(map(repr, unknown))}; "
                                f"choose from {', '.join(MODELS)}")
        return config, chosen

    def _acquire(self) -> None:
        if not self._lock.acquire(blocking=False):
            raise PredictBusy("a prediction run is in progress; try again when it has finished")

    def _run(self, config: PredictConfig, chosen: list[str], actor: str,
             as_of: datetime | None, progress: Callable[[str], None]) -> dict[str, Any]:
        started = time.perf_counter()
        with self.engine.session() as s:
            as_of = as_of or _as_of(s, self.ws)
            batch = (s.fetchone("SELECT max(batch_id) FROM model_runs")[0] or 0) + 1
            inputs = Inputs(s, self.ws, config, as_of)
            out = []
            for name in chosen:
                progress(f"{name}: training and scoring")
                out.extend(self._one(s, inputs, name, batch, actor))
        wrote = any(r["status"] == "done" and r["scored"] for r in out)
        if wrote:   # segments may use the scores
            progress("segments: re-evaluating")
            self.ws.segments.refresh(traits=False)
        return {"batch_id": batch, "as_of": as_of.isoformat(), "models": out,
                "took_s": round(time.perf_counter() - started, 2)}

    def _one(self, s: Session, inputs: Inputs, name: str, batch: int,
             actor: str) -> list[dict[str, Any]]:
        began, t0 = _now(), time.perf_counter()
        try:
            runs = RUNNERS[name](inputs)
        except Exception as exc:   # one model's failure must not stop the others
            runs = [ModelRun(model=name, card=None, error=_message(name, exc))]
        out = []
        for r in runs:
            written, error = 0, r.error
            if error is None:
                try:
                    with self.ws.segments.writing() as tx:
                        for score_set in r.scores:
                            written += scores.write(tx, self.ws.segments.traits, r.model,
                                                    score_set, _now())
                        self._record(r.model, batch, began, inputs.as_of, actor, "done",
                                     written, r.card, None, tx)
                except Exception as exc:   # nothing of this model written; go on with the next
                    written, error = 0, _message(r.model, exc)
            if error is not None:
                self._record(r.model, batch, began, inputs.as_of, actor, "failed", 0, r.card,
                             error)
            out.append({"model": r.model, "status": "failed" if error else "done",
                        "scored": written, "error": error,
                        "traits": [x.trait for x in r.scores] if error is None else [],
                        "seconds": round(time.perf_counter() - t0, 2)})
        return out

    def _record(self, model: str, batch: int, began: datetime, as_of: datetime, actor: str,
                status: str, scored: int, card: dict | None, error: str | None,
                tx: Session | None = None) -> None:
        if tx is None:
            with self.engine.transaction() as tx:
                return self._record(model, batch, began, as_of, actor, status, scored, card,
                                    error, tx)
        tx.execute("INSERT INTO model_runs (batch_id, model, started_at, finished_at, as_of, "
                   "status, actor, scored, card, error) VALUES ($b, $m, $st, $fin, $as_of, $status, "
                   "$actor, $n, CAST($card AS JSON), $err)",
                   {"b": batch, "m": model, "st": began, "fin": _now(), "as_of": as_of,
                    "status": status, "actor": actor, "n": scored,
                    "card": None if card is None else orjson.dumps(
                        card, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode(),
                    "err": error})

    # -- reading cards -----------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """The latest run of every model, with its card."""
        with self.engine.session() as s:
            rows = s.fetch_dicts(f"SELECT {_COLUMNS} FROM model_runs r WHERE run_id = "
                                 "(SELECT max(run_id) FROM model_runs x WHERE x.model = r.model) "
                                 "ORDER BY model")
        return [_out(r) for r in rows]

    def card(self, model: str, history: int = 20) -> dict[str, Any]:
        """The latest card of ``model`` and its recent runs (newest first, without cards)."""
        with self.engine.session() as s:
            rows = s.fetch_dicts(f"SELECT {_COLUMNS} FROM model_runs WHERE model = $m "
                                 "ORDER BY run_id DESC LIMIT $n", {"m": model, "n": history})
        if not rows:
            names = [r[0] for r in self.engine.fetchall(
                "SELECT DISTINCT model FROM model_runs ORDER BY model")]
            raise ModelNotFound(f"no run of model {model!r} yet; cards so far: "
                                f"{', '.join(names) or 'none'} (`klantbeeld predict run` trains "
                                f"{', '.join(MODELS)})")
        latest = _out(rows[0])
        latest["history"] = [{k: v for k, v in _out(r).items() if k != "card"} for r in rows]
        return latest


_COLUMNS = ("run_id, batch_id, model, started_at, finished_at, as_of, status, actor, scored, "
            "card, error")


def _out(row: dict) -> dict[str, Any]:
    card = json_value(row["card"]) if row["card"] is not None else None
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {"model": row["model"], "run_id": row["run_id"], "batch_id": row["batch_id"],
            "status": row["status"], "as_of": iso(row["as_of"]),
            "started_at": iso(row["started_at"]), "finished_at": iso(row["finished_at"]),
            "actor": row["actor"], "scored": row["scored"], "error": row["error"],
            "metrics": metrics(row["model"], card), "card": card}


def _as_of(s: Session, ws: "Workspace") -> datetime:
    """The as-of time of a run: the latest stored event, never later than now."""
    names = ws.segments.config.purchase_events
    marks = ", ".join(f"$e{i}" for i in range(len(names)))
    row = s.fetchone(f"SELECT count(*) FROM events WHERE type = 'track' AND event IN ({marks})",
                     {f"e{i}": n for i, n in enumerate(names)})
    if not row or not row[0]:
        raise NoPurchases("no purchase events yet (segments.yaml purchase_events: "
                          f"{', '.join(names)}); the models learn from purchases")
    latest = s.fetchone('SELECT max("timestamp") FROM events')[0]
    now = _now()
    return min(latest, now) if latest is not None else now


def _message(model: str, exc: Exception) -> str:
    """A failure as the card shows it: the message for expected ones (too little data, a bad
    option), with the exception type for the unexpected (also logged with the trace)."""
    expected = isinstance(exc, (ValueError, LookupError))
    log.warning("model %s failed: %s", model, exc, exc_info=not expected)
    return str(exc) if expected else f"{type(exc).__name__}: {exc}"


def _now() -> datetime:
    return datetime.now(timezone.utc)
