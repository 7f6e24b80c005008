"""Lifetime-value models at scale, beside the ``lifetimes`` package in the same run.

1. Fit: BG/NBD and Gamma-Gamma on customers drawn from the models with known parameters
   (:mod:`.predict_data`, CDNOW-like), by ``klantbeeld.predict.clv`` and by ``lifetimes`` 0.11.3
   on the same arrays: seconds each, the speed ratio, each fit's log-likelihood (each package's
   own formula at its own parameters), the relative difference of the parameters, and how close
   each comes to the true ones. ``lifetimes`` computes a Hessian after each fit (autograd); that
   is part of its ``fit`` and so of its time.
2. Scoring: orders for a million profiles (about five each) through the model run
   (``klantbeeld.predict.lifetime.run``: summary, fit on a 200,000-customer sample, predictions
   for everyone, the holdout check), then the four score sets written onto profiles in a DuckDB
   workspace with ``klantbeeld.predict.scores.write``, in one transaction. Seconds per stage and
   the peak resident memory of each stage.

``lifetimes`` is unmaintained but its fitters run unchanged on NumPy 2, pandas 2 and SciPy 1.17
(only its dataset loader, not used here, needs ``pkg_resources``). When it is missing or fails to
import, the fit table says why and the rest runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

from klantbeeld.predict import scores
from klantbeeld.predict.clv import BetaGeoModel, GammaGammaModel
from klantbeeld.predict.lifetime import LifetimeConfig, run as lifetime_run
from klantbeeld.settings import load_settings
from klantbeeld.workspace import Workspace

from . import predict_data as data

BG_NAMES = ("r", "alpha", "a", "b")
GG_NAMES = ("p", "q", "gamma")
LIFETIMES_GG = {"p": "p", "q": "q", "gamma": "v"}


# -- memory ----------------------------------------------------------------------------------------
def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux), so each stage gets its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_gb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e6  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


# -- 1. fit beside lifetimes -----------------------------------------------------------------------
def _lifetimes():
    """The lifetimes package, or the reason it cannot be imported."""
    try:
        import lifetimes
    except Exception as exc:  # not installed, or broken by current NumPy/pandas/SciPy
        return None, f"{type(exc).__name__}: {exc}"
    return lifetimes, lifetimes.__version__


def _ours(s: dict) -> dict:
    started = time.perf_counter()
    bg = BetaGeoModel()
    bg.fit(s["frequency"], s["recency"], s["T"])
    bg_s = time.perf_counter() - started
    gg = GammaGammaModel()
    gg.fit(s["frequency"], s["monetary"])
    seconds = time.perf_counter() - started
    return {"bg": bg.params, "gg": gg.params, "bg_s": bg_s, "gg_s": seconds - bg_s, "seconds": seconds,
            "bg_ll": bg.fit_result.log_likelihood, "gg_ll": gg.fit_result.log_likelihood,
            "converged": bg.fit_result.converged and gg.fit_result.converged}


def _theirs(lifetimes, s: dict) -> dict:
    repeat = s["frequency"] > 0
    x, m = s["frequency"][repeat], s["monetary"][repeat]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        bg = lifetimes.BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
        bg_s = time.perf_counter() - started
        gg = lifetimes.GammaGammaFitter().fit(x, m)
        seconds = time.perf_counter() - started
        bg_params = {k: float(bg.params_[k]) for k in BG_NAMES}
        gg_params = {k: float(gg.params_[v]) for k, v in LIFETIMES_GG.items()}
        # each package's own log-likelihood formula, at its own parameters, on the raw data
        ones = np.ones(len(s["T"]))
        bg_ll = -len(ones) * float(bg._negative_log_likelihood(
            np.log([bg_params[k] for k in BG_NAMES]), s["frequency"], s["recency"], s["T"], ones, 0.0))
        gg_ll = -len(x) * float(gg._negative_log_likelihood(
            np.log([gg_params[k] for k in GG_NAMES]), x, m, np.ones(len(x)), 0.0))
    return {"bg": bg_params, "gg": gg_params, "bg_s": bg_s, "gg_s": seconds - bg_s, "seconds": seconds,
            "bg_ll": bg_ll, "gg_ll": gg_ll, "converged": True}


def _rel(a: dict, b: dict) -> str:
    """Largest relative difference over the parameters, printed to two digits (it can be 1e-7)."""
    return f"{max(abs(a[k] - b[k]) / abs(b[k]) for k in b):.1e}"


def fit(customers: int) -> dict:
    s = data.summary(customers)
    truth = {**data.BGNBD, **data.GAMMA_GAMMA}
    lifetimes, version = _lifetimes()
    ours = _ours(s)
    theirs = None
    if lifetimes is not None:
        try:
            theirs = _theirs(lifetimes, s)
        except Exception as exc:  # report what broke instead of failing the whole benchmark
            version = f"{lifetimes.__version__}: fit failed, {type(exc).__name__}: {exc}"
    rows = []
    for name, res in (("klantbeeld", ours), (f"lifetimes {version}" if theirs else "lifetimes", theirs)):
        if res is None:
            rows.append({"implementation": name, "customers": customers, "note": version})
            continue
        row = {"implementation": name, "customers": customers,
               "repeat_buyers": int((s["frequency"] > 0).sum()), "bgnbd_s": res["bg_s"],
               "gamma_gamma_s": res["gg_s"], "seconds": res["seconds"],
               "bgnbd_log_likelihood": res["bg_ll"], "gamma_gamma_log_likelihood": res["gg_ll"],
               "bgnbd_rel_error_to_truth": _rel(res["bg"], data.BGNBD),
               "gamma_gamma_rel_error_to_truth": _rel(res["gg"], data.GAMMA_GAMMA),
               "converged": res["converged"], "under_2s": res["seconds"] < 2.0}
        if theirs is not None:
            row["speed_ratio"] = theirs["seconds"] / res["seconds"]
            row["max_rel_diff_to_other"] = _rel({**res["bg"], **res["gg"]},
                                                {**theirs["bg"], **theirs["gg"]} if res is ours
                                                else {**ours["bg"], **ours["gg"]})
        rows.append(row)
    params = [{"parameter": k, "true": v, "klantbeeld": {**ours["bg"], **ours["gg"]}[k],
               **({"lifetimes": {**theirs["bg"], **theirs["gg"]}[k],
                   "rel_diff": _rel({k: {**ours["bg"], **ours["gg"]}[k]},
                                    {k: {**theirs["bg"], **theirs["gg"]}[k]})} if theirs else {})}
              for k, v in truth.items()]
    return {"predict_fit": rows, "predict_fit_params": params}


# -- 2. scoring a million profiles ----------------------------------------------------------------
def score(profiles: int) -> list[dict]:
    rows = []

    def stage(name: str, seconds: float, **extra) -> None:
        rows.append({"stage": name, "profiles": profiles, "seconds": seconds, "peak_rss_gb": _peak_gb(),
                     "load_1m": f"{os.getloadavg()[0]:.1f}", **extra})
        _reset_peak()

    _reset_peak()
    started = time.perf_counter()
    orders = data.orders(profiles)
    stage("generate orders (not part of scoring)", time.perf_counter() - started, orders=orders.num_rows)

    started = time.perf_counter()
    result = lifetime_run(orders, LifetimeConfig(), data.NOW)
    total = time.perf_counter() - started
    parts = result.card["seconds"]
    for part in ("summary", "fit", "score", "holdout"):
        rows.append({"stage": f"model run: {part}", "profiles": profiles, "seconds": parts[part]})
    stage("model run (clv), total", total, orders=orders.num_rows,
          customers=result.card["customers"])
    del orders

    home = Path(tempfile.mkdtemp(prefix="kb-predict-bench-"))
    try:
        ws = Workspace.open(load_settings(home=home, resolve_identities=False))
        try:
            traits = ws.segments.traits
            # the profiles the scores belong to (scores are only written for live profiles)
            ids = result.scores[0].table.column("profile_id").cast(pa.string())
            n = len(ids)
            with ws.engine.transaction() as s:
                s.append("profiles", pa.table({
                    "profile_id": ids,
                    "created_at": pa.array([data.NOW] * n, pa.timestamp("us", tz="UTC")),
                    "created_seq": pa.array(range(n), pa.int64()),
                    "origin_identifier": pa.array(range(n), pa.int64())}))
            ws.engine.execute("CHECKPOINT")
            started = time.perf_counter()
            written = 0
            with ws.engine.transaction() as s:
                for score_set in result.scores:
                    written += scores.write(s, traits, "clv", score_set, data.NOW)
            stage("write 4 score sets (DuckDB)", time.perf_counter() - started, trait_rows=written)
            # a scheduled re-run replaces the scores, which by then are checkpointed into the file
            ws.engine.execute("CHECKPOINT")
            _reset_peak()
            started = time.perf_counter()
            with ws.engine.transaction() as s:
                replaced = scores.write(s, traits, "clv", result.scores[1], data.NOW)
            stage("replace 1 score set (re-run, after a checkpoint)", time.perf_counter() - started,
                  trait_rows=replaced)
        finally:
            ws.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    write = next(r["seconds"] for r in rows if r["stage"].startswith("write"))
    scoring = sum(parts[p] for p in ("summary", "score")) + write
    rows.append({"stage": "scoring (summary + predictions + first write)", "profiles": profiles,
                 "seconds": scoring, "under_30s": scoring < 30})
    everything = total + write
    rows.append({"stage": "everything (model run with fit and holdout + first write)",
                 "profiles": profiles,
                 "seconds": everything, "under_30s": everything < 30})
    return rows


def run(customers: int, profiles: int) -> dict:
    results = fit(customers)
    results["predict_score"] = score(profiles)
    return results
