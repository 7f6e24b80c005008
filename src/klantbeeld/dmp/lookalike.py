"""Look-alike audiences of cookies: a CDP segment's members seed a model that scores every cookie
profile nobody has linked to a known customer yet; the top k % go to an ad platform.

* **Positives** are the live cookie profiles linked to the seed segment's members. **Unlabelled**
  are the live cookie profiles not linked to any known profile — the people we want to reach.
  It is positive-unlabelled learning: some unlabelled cookies *are* look-alikes, so each is scored
  by a model that never saw it as a negative (cross-fitting over ``folds``, as in
  :mod:`klantbeeld.predict.lookalike`).
* **Features** (a scipy sparse matrix): every third-party segment id a cookie holds, one-hot, and
  their tier-1 and tier-2 taxonomy ancestors ("Interest | Sports" is learnt once, not per leaf).
  Optionally (``max_behaviour_features``, off by default) first-party behaviour: log(1 + the
  cookie's *anonymous* events) per common event name — anonymous, since logged-in orders would
  teach "has ordered", which no unlinked cookie can have — centred on the cookies that have
  events, since every seed cookie visited the site and most DMP cookies never did: uncentred, it
  ranks all visitors above all look-alikes the site has not met. Off by default because on the
  demo data it inflated the held-out lift (held-out seeds are visitors too) while lowering the
  share of true look-alikes exported; the report compares visitors among exported and scored.
* **Model**: logistic regression on the sparse matrix, balanced class weights, fixed seed.
* **Evaluation as in production**: ``holdout_share`` of the seed *members* (all their cookies
  together, so a person's second browser does not give the answer away) is hidden among the
  unlabelled cookies; the same cross-fitted scoring ranks them, and recall at k % (the share of
  hidden seed cookies in the top k %) over k % is the lift (random order: 1).

Seeds under ``min_seed`` cookies are refused: ad platforms need ≥ 100 (Meta) and a model learns
nothing dependable from fewer.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse

from ..privacy.consent import allowed_sql
from ..store import Session
from .enrich import COOKIE_TYPES, TAXONOMY_SQL, consent_filter, links_sql

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

    from ..privacy.config import PrivacyConfig

FORMATS = ("csv", "txt")
REPORT_PERCENTS = (1.0, 5.0, 10.0)


class SeedTooSmall(ValueError):
    """The seed reaches fewer cookies than the configured minimum."""


class LookalikeExportConfig(BaseModel):
    """How a look-alike audience is learnt, checked and cut."""

    model_config = ConfigDict(extra="forbid")

    min_seed: int = Field(100, ge=2, description="Fewest seed cookies (live cookie profiles "
                          "linked to the seed segment's members); Meta needs at least 100.")
    holdout_share: float = Field(0.3, gt=0, lt=1, description="Share of the seed members "
                                 "(with all their cookies) hidden to measure recall and lift.")
    top_percent: float = Field(5.0, gt=0, le=100, description="Default size of the exported "
                               "audience: the best-scoring k % of unlinked cookies.")
    random_state: int = Field(0, description="Seed of the holdout draw, the folds and the model.")
    max_behaviour_features: int = Field(0, ge=0, le=500, description="First-party behaviour "
                                        "features: the most common anonymous event names "
                                        "(0, the default: third-party segments only).")
    folds: int = Field(5, ge=2, le=20, description="Cross-fitting folds of the unlabelled cookies.")
    max_training_cookies: int = Field(100_000, ge=100, description="At most this many unlabelled "
                                      "cookies (a random sample) train each fold's model; all "
                                      "are scored. Keeps millions of cookies fast.")
    regularisation: float = Field(0.1, gt=0, description="Inverse regularisation strength C of "
                                  "the logistic regression (smaller: simpler model).")
    seed_purpose: str | None = Field(None, description="When set, only seed members whose "
                                     "consent allows this purpose (e.g. advertising) train it.")
    exclude_purpose: str | None = Field("advertising", description="Cookies whose profile "
                                        "denied or withdrew this purpose (or is restricted) "
                                        "neither train the model (seed members) nor are scored "
                                        "and exported (visitors); None: no check.")


@dataclass
class LookalikeResult:
    """A trained look-alike: the card, the scores of every unlinked cookie, and the held-out
    ranking (kept so quality can be reported at any k)."""

    segment_id: str
    card: dict[str, Any]
    cookie_ids: list[str]            # unlinked cookies, best score first (ties by cookie id)
    scores: np.ndarray
    visited: np.ndarray              # per cookie (same order): has anonymous first-party events
    eval_scores: np.ndarray = field(repr=False)
    eval_hidden: np.ndarray = field(repr=False)

    def quality(self, top_percent: float) -> dict[str, Any]:
        """Held-out seed recall and lift in the top ``top_percent`` % of the evaluation ranking."""
        return _quality(self.eval_scores, self.eval_hidden, top_percent)


def _quality(values: np.ndarray, hidden: np.ndarray, pct: float) -> dict[str, Any]:
    n, n_hidden = len(values), int(hidden.sum())
    n_top = max(1, math.ceil(pct / 100 * n))
    threshold = np.sort(values)[::-1][n_top - 1]
    above, tied = values > threshold, values == threshold
    # ties at the cut count pro rata: the expected number under a random order of the tied
    found = float(hidden[above].sum() + hidden[tied].sum() * (n_top - above.sum()) / tied.sum())
    recall = found / n_hidden if n_hidden else 0.0
    return {"percent": pct, "ranked": n_top, "held_out_found": round(found, 2),
            "recall": round(recall, 4), "lift": round(recall / (n_top / n), 2)}


def _universe_sql(config: LookalikeExportConfig,
                  privacy_config: "PrivacyConfig") -> tuple[str, dict[str, Any]]:
    """CTEs ending in ``universe(cookie_id, profile_id, pos)``: seed cookies (pos 1, with their
    member) and unlinked cookies (pos 0), all live cookie profiles."""
    params: dict[str, Any] = {}
    allowed = None
    if config.seed_purpose:
        privacy_config.check_purpose(config.seed_purpose)
        allowed, p = consent_filter(privacy_config, config.seed_purpose)
        params.update(p)
    opted_out = ""
    if config.exclude_purpose:     # a seed member or a visitor who refused: neither side
        privacy_config.check_purpose(config.exclude_purpose)
        opted_out = (" AND cookie_id NOT IN (SELECT id_value FROM identifiers WHERE id_type IN "
                     f"{COOKIE_TYPES} AND profile_id IS NOT NULL AND profile_id NOT IN "
                     f"({allowed_sql('$lk_purpose', False)}))")
        params["lk_purpose"] = config.exclude_purpose
    sql = (f"live AS (SELECT DISTINCT cookie_id FROM cookie_segments WHERE expires_at > $now"
           f"{opted_out}), "
           f"links AS ({links_sql()}), "
           f"seedlinks AS ({links_sql(allowed)}), "
           "universe AS (SELECT l.cookie_id, min(l.profile_id) AS profile_id, 1 AS pos "
           "FROM seedlinks l JOIN segment_members m ON m.profile_id = l.profile_id "
           "WHERE m.segment_id = $sid AND l.cookie_id IN (SELECT cookie_id FROM live) "
           "GROUP BY l.cookie_id "
           "UNION ALL SELECT cookie_id, NULL, 0 FROM live "
           "WHERE cookie_id NOT IN (SELECT cookie_id FROM links))")
    return sql, params


def _load(session: Session, segment_id: str, now: datetime, config: LookalikeExportConfig,
          privacy_config: "PrivacyConfig") -> tuple[pa.Table, pa.Table, pa.Table]:
    """(universe, cookie segments, anonymous event counts) as Arrow tables, set-based. The
    universe says per cookie whether it is a seed cookie (``pos``) and whether it has anonymous
    first-party events (``visited``)."""
    ctes, params = _universe_sql(config, privacy_config)
    params = {**params, "now": now, "sid": segment_id}
    universe = session.fetch_arrow(
        f"WITH {ctes} SELECT cookie_id, profile_id, pos, (cookie_id IN (SELECT anonymous_id "
        "FROM events WHERE user_id IS NULL AND anonymous_id IS NOT NULL) OR cookie_id IN "
        "(SELECT device_id FROM events WHERE user_id IS NULL AND device_id IS NOT NULL)) "
        "AS visited FROM universe ORDER BY cookie_id", params)
    held = session.fetch_arrow(
        f"WITH {ctes} SELECT DISTINCT cs.cookie_id, cs.segment_id FROM cookie_segments cs "
        "JOIN universe u ON u.cookie_id = cs.cookie_id WHERE cs.expires_at > $now", params)
    if config.max_behaviour_features:
        name = "COALESCE(e.event, e.type || ':' || COALESCE(e.name, ''))"
        events = session.fetch_arrow(
            f"WITH {ctes}, ev AS (SELECT u.cookie_id, {name} AS name FROM universe u "
            "JOIN events e ON e.anonymous_id = u.cookie_id WHERE e.user_id IS NULL "
            f"UNION ALL SELECT u.cookie_id, {name} FROM universe u JOIN events e "
            "ON e.device_id = u.cookie_id WHERE e.user_id IS NULL "
            "AND (e.anonymous_id IS NULL OR e.anonymous_id <> u.cookie_id)) "
            "SELECT cookie_id, name, count(*) AS n FROM ev GROUP BY cookie_id, name", params)
    else:
        events = pa.table({"cookie_id": pa.array([], pa.string()),
                           "name": pa.array([], pa.string()), "n": pa.array([], pa.int64())})
    return universe, held, events


def _column(table: pa.Table, name: str) -> np.ndarray:
    if not table.num_rows:
        return np.array([], dtype=object)
    return table.column(name).combine_chunks().to_numpy(zero_copy_only=False)


def _rows_of(table: pa.Table, ids: pa.Array) -> np.ndarray:
    """Row numbers (in the universe) of a table's ``cookie_id`` column."""
    return pc.index_in(table.column("cookie_id").cast(pa.string()), value_set=ids) \
        .to_numpy(zero_copy_only=False).astype(np.int64)


def _features(session: Session, universe: pa.Table, held: pa.Table, events: pa.Table,
              config: LookalikeExportConfig) -> tuple[sparse.csr_matrix, list[str], dict]:
    """The sparse matrix (one row per universe cookie, in its order), a label per column, and
    the behaviour event names and taxonomy names of the labels."""
    ids = universe.column("cookie_id").cast(pa.string()).combine_chunks()
    n = len(ids)
    nodes = {r[0]: (r[1], r[2], r[3]) for r in session.fetchall(
        f"SELECT segment_id, parent_id, tier, name FROM ({TAXONOMY_SQL}) t")}
    blocks, labels = [], []
    if held.num_rows:
        segs, inverse = np.unique(_column(held, "segment_id").astype(str), return_inverse=True)
        one_hot = sparse.csr_matrix((np.ones(len(inverse)), (_rows_of(held, ids), inverse)),
                                    shape=(n, len(segs)))
        one_hot.data[:] = 1.0
        # ancestors of tier 1 and 2 as a (segment × category) map: one product rolls them up
        pairs = [(i, a) for i, sid in enumerate(segs) for a in _upper(nodes, sid)]
        cats = sorted({a for _, a in pairs})
        where = {a: j for j, a in enumerate(cats)}
        up = sparse.csr_matrix((np.ones(len(pairs)), ([i for i, _ in pairs],
                                                      [where[a] for _, a in pairs])),
                               shape=(len(segs), len(cats)))
        rolled = (one_hot @ up).tocsr()
        rolled.data[:] = 1.0
        blocks += [one_hot, rolled]
        labels += [f"segment:{sid}" for sid in segs] + [f"category:{a}" for a in cats]
    behaviour: list[str] = []
    if events.num_rows and config.max_behaviour_features:
        names, inverse, counts = np.unique(_column(events, "name").astype(str),
                                           return_inverse=True, return_counts=True)
        chosen = np.lexsort((names, -counts))[:config.max_behaviour_features]  # most cookies
        behaviour = [str(names[i]) for i in chosen]
        slot = np.full(len(names), -1)
        slot[chosen] = np.arange(len(chosen))
        visitors, visitor_row = np.unique(_rows_of(events, ids), return_inverse=True)
        dense = np.zeros((len(visitors), len(chosen)))
        keep = slot[inverse] >= 0
        counts = np.log1p(events.column("n").to_numpy(zero_copy_only=False).astype(float))
        dense[visitor_row[keep], slot[inverse][keep]] = counts[keep]
        # centred on the cookies with anonymous events: one without any (most cookies a DMP
        # sends never visited the site, every seed cookie did) reads as an average visitor, so
        # behaviour ranks visitors by how they behaved, not visitors above everyone else
        dense -= dense.mean(axis=0)
        blocks.append(sparse.csr_matrix(
            (dense.ravel(), (np.repeat(visitors, len(chosen)),
                             np.tile(np.arange(len(chosen)), len(visitors)))),
            shape=(n, len(chosen))))
        labels += [f"events:{name}" for name in behaviour]
    if not labels:
        return sparse.csr_matrix((n, 0)), labels, {}
    x = sparse.hstack(blocks, format="csr")
    peak = np.asarray(abs(x).max(axis=0).todense()).ravel()
    peak[peak == 0] = 1.0
    x = (x @ sparse.diags(1.0 / peak)).tocsr()   # every column within -1..1: one penalty
    names = {label: nodes[label.split(":", 1)[1]][2] for label in labels
             if not label.startswith("events:") and label.split(":", 1)[1] in nodes}
    return x, labels, {"behaviour_events": behaviour, "names": names}


def _upper(nodes: dict[str, tuple], sid: str) -> list[str]:
    """The tier-1 and tier-2 ancestors of a node (not itself); a cycle ends the walk."""
    out, seen, node = [], {sid}, nodes.get(sid, (None,))[0]
    while node is not None and node not in seen:
        seen.add(node)
        if nodes.get(node, (None, None))[1] in (1, 2):
            out.append(node)
        node = nodes.get(node, (None,))[0]
    return out


def _crossfit(x: sparse.csr_matrix, pos: np.ndarray, config: LookalikeExportConfig
              ) -> tuple[np.ndarray, list["LogisticRegression"]]:
    """Scores for every non-positive row, each from a model that never saw that row."""
    from sklearn.linear_model import LogisticRegression   # loaded when a model is trained

    rng = np.random.default_rng(config.random_state)
    rest, positives = np.flatnonzero(~pos), np.flatnonzero(pos)
    folds = min(config.folds, len(rest))
    assignment = rng.permutation(len(rest)) % folds
    scores, fitted = np.empty(len(rest)), []
    for k in range(folds):
        negatives = rest[assignment != k]
        if len(negatives) > config.max_training_cookies:
            negatives = np.sort(rng.choice(negatives, config.max_training_cookies,
                                           replace=False))
        train = np.concatenate([positives, negatives])
        y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
        model = LogisticRegression(C=config.regularisation, class_weight="balanced",
                                   solver="liblinear", max_iter=1000,
                                   random_state=config.random_state)
        model.fit(x[train], y)
        scores[assignment == k] = model.predict_proba(x[rest[assignment == k]])[:, 1]
        fitted.append(model)
    return scores, fitted


def build(session: Session, segment_id: str, now: datetime,
          config: LookalikeExportConfig | None = None,
          privacy_config: "PrivacyConfig | None" = None) -> LookalikeResult:
    """Train on the seed segment's linked cookies, evaluate on held-out seed members, and score
    every unlinked cookie profile. Raises SegmentNotFound, SeedTooSmall (fewer seed cookies than
    ``min_seed``) or ValueError (nothing to score)."""
    from ..privacy.config import PrivacyConfig
    from ..segments.service import SegmentNotFound

    config = config or LookalikeExportConfig()
    privacy_config = privacy_config or PrivacyConfig()
    started = time.perf_counter()
    if session.fetchone("SELECT 1 FROM segments WHERE segment_id = $sid",
                        {"sid": segment_id}) is None:
        raise SegmentNotFound(f"no segment {segment_id!r}")
    universe, held, events = _load(session, segment_id, now, config, privacy_config)
    pos = universe.column("pos").to_numpy(zero_copy_only=False).astype(bool)
    n_seed = int(pos.sum())
    if n_seed < config.min_seed:
        raise SeedTooSmall(
            f"segment {segment_id!r} reaches {n_seed} cookie(s) through its members' linked "
            f"cookies with live third-party data; a look-alike needs at least {config.min_seed} "
            "(ad platforms need 100): choose a larger seed segment")
    if pos.all():
        raise ValueError("no unlinked cookie profiles to score: load a DMP feed first")
    x, labels, extra = _features(session, universe, held, events, config)
    members = _column(universe, "profile_id")
    evaluation, eval_scores, hidden = _evaluate(x, pos, members, config)
    scores, fitted = _crossfit(x, pos, config)
    ids = _column(universe, "cookie_id")[~pos].astype(str)
    visited = _column(universe, "visited").astype(bool)
    order = np.lexsort((ids, -scores))
    coef = np.mean([m.coef_[0] for m in fitted], axis=0)
    top = np.argsort(-coef)[:10]
    card = {
        "model": "dmp_lookalike", "segment_id": segment_id, "computed_at": now.isoformat(),
        "seed_members": int(len(set(members[pos]))), "positives": n_seed,
        "scored": int(len(ids)), "features": len(labels),
        "segment_features": sum(lb.startswith("segment:") for lb in labels),
        "category_features": sum(lb.startswith("category:") for lb in labels),
        "behaviour_features": extra.get("behaviour_events", []),
        "scored_with_first_party_events": round(float(visited[~pos].mean()), 4),
        "top_features": [{"feature": labels[i], "name": extra.get("names", {}).get(labels[i]),
                          "weight": round(float(coef[i]), 4)} for i in top if coef[i] > 0],
        "evaluation": evaluation,
        "training_time_s": round(time.perf_counter() - started, 3),
        "config": config.model_dump(),
    }
    return LookalikeResult(segment_id, card, [str(c) for c in ids[order]], scores[order],
                           visited[~pos][order], eval_scores, hidden)


def _evaluate(x: sparse.csr_matrix, pos: np.ndarray, members: np.ndarray,
              config: LookalikeExportConfig) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Hide a share of the seed members' cookies among the unlabelled and rank them."""
    rng = np.random.default_rng(config.random_state)
    seed_members = np.array(sorted(set(members[pos])), dtype=object)
    n_hide = min(len(seed_members) - 1, max(1, round(config.holdout_share * len(seed_members))))
    if n_hide < 1:
        raise SeedTooSmall("the seed has one member: nothing to hold out for evaluation")
    hidden_members = rng.choice(seed_members, n_hide, replace=False).astype(str)
    hide = pos.copy()
    hide[pos] = np.isin(members[pos].astype(str), hidden_members)
    train = pos & ~hide
    values, _ = _crossfit(x, train, config)
    hidden = hide[~train]
    percents = sorted({*REPORT_PERCENTS, config.top_percent})
    return ({"held_out_members": n_hide, "held_out_cookies": int(hide.sum()),
             "training_cookies": int(train.sum()), "ranked": int(len(values)),
             "top": [_quality(values, hidden, p) for p in percents]}, values, hidden)


def export(result: LookalikeResult, top_percent: float, out: str | Path | IO[bytes],
           fmt: Literal["csv", "txt"] = "csv") -> dict[str, Any]:
    """Write the best-scoring ``top_percent`` % of unlinked cookies to ``out`` (a path or a
    binary file): ``txt`` one cookie id per line; ``csv`` ``cookie_id,score,rank``. Returns the
    size and quality report (held-out seed recall and lift at that k)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if not 0 < top_percent <= 100:
        raise ValueError("top_percent must be more than 0 and at most 100")
    data, report = render(result, top_percent, fmt)
    if isinstance(out, (str, Path)):
        Path(out).write_bytes(data)
    else:
        out.write(data)
    return report


def render(result: LookalikeResult, top_percent: float,
           fmt: Literal["csv", "txt"] = "csv") -> tuple[bytes, dict[str, Any]]:
    """The export's bytes and its report (what :func:`export` writes)."""
    n = len(result.cookie_ids)
    k = max(1, math.ceil(top_percent / 100 * n))
    ids, scores = result.cookie_ids[:k], result.scores[:k]
    if fmt == "txt":
        data = "".join(f"{c}\n" for c in ids).encode()
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["cookie_id", "score", "rank"])
        writer.writerows((c, f"{s:.6f}", i) for i, (c, s) in enumerate(zip(ids, scores), 1))
        data = buf.getvalue().encode()
    quality = result.quality(top_percent)
    warnings = []
    if k < 100:
        warnings.append(f"only {k} cookies: ad platforms may refuse an audience under 100")
    top_visited = float(result.visited[:k].mean()) if k else 0.0
    all_visited = float(result.visited.mean()) if n else 0.0
    if result.card["behaviour_features"] and top_visited > 1.5 * all_visited:
        warnings.append(f"{top_visited:.0%} of the exported cookies have first-party events "
                        f"against {all_visited:.0%} of those scored: behaviour features favour "
                        "site visitors and the held-out lift overstates quality (docs: "
                        "Look-alike audiences)")
    if quality["lift"] < 1.5:
        warnings.append(f"held-out lift {quality['lift']} at {top_percent} %: the seed is "
                        "barely distinguishable from other cookies")
    report = {"segment_id": result.segment_id, "format": fmt, "top_percent": top_percent,
              "cookies": k, "scored": n, "min_score": round(float(scores[-1]), 6) if k else None,
              "seed_members": result.card["seed_members"],
              "positives": result.card["positives"],
              "held_out_recall": quality["recall"], "lift": quality["lift"],
              "quality": quality,
              "with_first_party_events": {"exported": round(top_visited, 4),
                                          "scored": round(all_visited, 4)},
              "warnings": warnings}
    return data, report
