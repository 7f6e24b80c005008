"""Probabilistic matching: score pairs of customer records with a Fellegi-Sunter model.

``predict_links`` trains a model with Splink on an in-memory DuckDB database and returns the
scored candidate pairs; ``classify`` splits them into automatic merges and pairs for human review.
The u probabilities come from random pairs (fixed seed, so runs are reproducible). The m
probabilities come from *labels* when the caller has them -- a column naming the cluster each
record is already known to belong to (for stored customers: the profile that deterministic
identity resolution put it in); every pair of records within one cluster is a true match -- and
otherwise from expectation maximisation (EM) over each blocking rule. The prior match rate is
estimated over the candidate pairs that are scored (with labels: the pairs across clusters only).

Values are normalised lightly before comparison: text is lower-cased, trimmed and its inner
whitespace collapsed (names also lose accents), e-mail addresses lose all whitespace, postcodes
are compared upper-case without spaces, phone numbers on the last nine of their digits, and empty
strings count as missing. Anything beyond that (e.g. E.164 phone numbers) is the caller's job.

Columns named in the settings but absent from the records (or entirely empty) are dropped from
the model with a ``UserWarning``, together with the blocking rules that use them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .match_settings import Comparison, MatchSettings, untrainable

__all__ = ["Comparison", "MatchSettings", "MatchingError", "predict_links", "classify",
           "pairwise_scores", "PAIRS_SCHEMA"]

PAIRS_SCHEMA = pa.schema([("record_id_l", pa.string()), ("record_id_r", pa.string()),
                          ("match_probability", pa.float64()), ("match_weight", pa.float64())])
SEED = 20261129            # random sampling of u pairs
MIN_PAIRS = 1_000          # fewer possible pairs than this: too little data to train a model
MIN_LABELLED_PAIRS = 30    # fewer labelled pairs than this: learn m by EM instead
PRIOR_PAIRS = 10.0         # labels: how many labelled pairs the prior of each comparison is worth
LABEL = "cluster_label"    # internal name of the labels column
ISO_DATE = "%Y-%m-%d"


class MatchingError(ValueError):
    """The records cannot be matched as asked; the message says what to change."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(x: str) -> str:
    return f"nullif(trim(regexp_replace(lower(CAST({x} AS VARCHAR)), '\\s+', ' ', 'g')), '')"


def _normalise_sql(c: Comparison | None, x: str, dtype: pa.DataType) -> str:
    """SQL for the normalised value of source column ``x`` (``c`` None: blocking-only)."""
    kind = c.kind if c else "exact"
    if kind == "name":
        return f"strip_accents({_text(x)})"
    if kind == "email":
        return f"nullif(lower(regexp_replace(CAST({x} AS VARCHAR), '\\s', '', 'g')), '')"
    if kind == "postcode":
        return f"nullif(upper(regexp_replace(CAST({x} AS VARCHAR), '\\s', '', 'g')), '')"
    if kind == "phone":
        digits = f"regexp_replace(CAST({x} AS VARCHAR), '[^0-9]', '', 'g')"
        return f"CASE WHEN length({digits}) >= 7 THEN right({digits}, 9) END"
    if kind == "date":
        fmt = (c.date_format or ISO_DATE).replace("'", "''")
        if pa.types.is_temporal(dtype):
            return f"strftime(CAST({x} AS DATE), '{fmt}')"
        return f"nullif(trim(CAST({x} AS VARCHAR)), '')"
    return _text(x)


def _splink_comparison(c: Comparison, col: str):
    from splink import comparison_level_library as cll
    from splink.comparison_library import CustomComparison, DateOfBirthComparison

    if c.kind == "date":
        return DateOfBirthComparison(col, input_is_string=True, invalid_dates_as_null=False,
                                     datetime_format=c.date_format or ISO_DATE)
    exact = cll.ExactMatchLevel(col)
    if c.effective_tf:
        exact = exact.configure(tf_adjustment_column=col)
    levels = [cll.NullLevel(col), exact]
    t = c.effective_thresholds
    if c.kind in ("name", "jaro_winkler"):
        levels += [cll.JaroWinklerLevel(col, s) for s in t]
    elif c.kind in ("levenshtein", "postcode", "phone"):
        levels += [cll.LevenshteinLevel(col, int(d)) for d in t]
        if c.kind == "postcode":
            n = c.prefix_length or 4
            levels.append(cll.CustomLevel(f"substr({col}_l, 1, {n}) = substr({col}_r, 1, {n})",
                                          f"First {n} characters equal"))
    elif c.kind == "email":   # typos: small edits of the whole address; else the username
        user = "regexp_extract({}, '^[^@]+')"
        user_l, user_r = user.format(col + "_l"), user.format(col + "_r")
        levels += [cll.CustomLevel(f"{user_l} = {user_r}", "Same username, other domain"),
                   cll.DamerauLevenshteinLevel(col, 2),
                   cll.CustomLevel(f"jaro_winkler_similarity({user_l}, {user_r}) >= 0.92",
                                   "Jaro-Winkler >= 0.92 on username")]
    levels.append(cll.ElseLevel())
    return CustomComparison(levels, output_column_name=col,
                            comparison_description=f"{c.kind} comparison of {c.column}")


class _Drop(logging.Filter):
    """Drop Splink's per-level notes (summarised by ``_untrained_levels``) and the note about
    the default ``max_pairs`` (ours is a deliberate setting)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("not observed in dataset" in message or "value for `max_pairs`" in message)


@contextlib.contextmanager
def _quiet_splink():
    """Splink logs progress at INFO; keep only its warnings while we run it."""
    root, drop = logging.getLogger("splink"), _Drop()
    noisy = [logging.getLogger(f"splink.internals.{name}")
             for name in ("expectation_maximisation", "linker_components.training")]
    old = root.level
    root.setLevel(logging.WARNING)
    for logger in noisy:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in noisy:
            logger.removeFilter(drop)
        root.setLevel(old)


def _untrained_levels(linker, source: dict[str, str]) -> list[str]:
    """'column: level' for each comparison level no training pair ever reached."""
    def named(text: str) -> str:
        return re.sub(r"\b[bc]\d+\b", lambda m: source.get(m.group(), m.group()), text)

    try:   # Splink has no public API for this; skip the summary if its internals change
        return [f"{source[cc.output_column_name]}: {named(cl.label_for_charts)}"
                for cc in linker._settings_obj.comparisons
                for cl in cc._comparison_levels_excluding_null
                if not (cl._has_estimated_m_values and cl._has_estimated_u_values)]
    except AttributeError:
        return []


def _prepare(con, name: str, table: pa.Table, columns: dict[str, tuple], side: str,
             labels: str | None = None) -> int:
    """Register ``table`` and create the normalised input table ``name``; return its row count."""
    con.register(f"{name}_src", table)
    selects = ["CAST(record_id AS VARCHAR) AS unique_id"] + [
        f"{_normalise_sql(c, _q(source), table.schema.field(source).type)} AS {col}"
        for col, (source, c) in columns.items()]
    if labels is not None:
        selects.append(f"nullif(CAST({_q(labels)} AS VARCHAR), '') AS {LABEL}")
    con.execute(f"CREATE TABLE {name} AS SELECT {', '.join(selects)} FROM {name}_src").fetchall()
    n, nulls, dups = con.execute(f"SELECT count(*), count(*) - count(unique_id), "
                                 f"count(unique_id) - count(DISTINCT unique_id) FROM {name}"
                                 ).fetchall()[0]
    if nulls or dups:
        raise MatchingError(f"{side}: record_id must be present and unique "
                            f"({nulls} missing, {dups} repeated)")
    return n


def _pair_count(con, tables: list[str], cols: list[str]) -> int:
    """Candidate pairs one blocking rule yields (exact, from the group sizes)."""
    keys = ", ".join(cols)
    present = " AND ".join(f"{c} IS NOT NULL" for c in cols)
    groups = [f"(SELECT {keys}, count(*) AS n FROM {t} WHERE {present} GROUP BY {keys})"
              for t in tables]
    if len(tables) == 1:
        sql = f"SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM {groups[0]}"
    else:
        on = " AND ".join(f"a.{c} = b.{c}" for c in cols)
        sql = f"SELECT coalesce(sum(a.n * b.n), 0) FROM {groups[0]} a JOIN {groups[1]} b ON {on}"
    return int(con.execute(sql).fetchall()[0][0])


def predict_links(records: pa.Table, settings: MatchSettings, *, other: pa.Table | None = None,
                  threshold: float | None = None, labels: str | None = None) -> pa.Table:
    """Score candidate pairs of records; see the module docstring and docs/identity-matching.md.

    ``other`` None: find duplicates within ``records`` (each unordered pair once, the smaller
    record_id on the left). ``other`` given: link ``records`` (left) to ``other`` (right).
    ``labels`` names a column holding the cluster each record is known to belong to (e.g. its
    profile id; empty: not known): records with the same label are the same entity, so the m
    probabilities are learnt from those pairs instead of by EM (EM is used when there are fewer
    than ``MIN_LABELLED_PAIRS``), and pairs within one label are not returned.
    Returns pairs with match_probability >= ``threshold`` (default ``settings.lower``), most
    probable first, as a table with the columns of ``PAIRS_SCHEMA``.
    """
    threshold = settings.lower if threshold is None else threshold
    if not 0 <= threshold <= 1:
        raise MatchingError(f"threshold is a match probability between 0 and 1, not {threshold}")
    tables = [records] if other is None else [records, other]
    for table, side in zip(tables, ("records", "other")):
        if "record_id" not in table.column_names:
            raise MatchingError(f"{side} need a `record_id` column (a unique string per record)")
        if labels is not None and labels not in table.column_names:
            raise MatchingError(f"{side} have no labels column {labels!r}; add it (empty where "
                                "the cluster is not known) or leave labels out")
    if (other is None and records.num_rows < 2) or min(t.num_rows for t in tables) == 0:
        return PAIRS_SCHEMA.empty_table()

    def usable(column: str) -> bool:
        return all(column in t.column_names and t[column].null_count < t.num_rows for t in tables)

    compared = {c.column: c for c in settings.comparisons}
    wanted = list(compared) + [col for rule in settings.blocking for col in rule]
    dropped = sorted({col for col in wanted if not usable(col)})
    comparisons = [c for c in settings.comparisons if c.column not in dropped]
    rules = [r for r in settings.blocking if not set(r) & set(dropped)]
    if dropped:
        warnings.warn(f"matching without column(s) {dropped}: absent or empty in the records; "
                      f"comparisons and blocking rules using them are left out", stacklevel=2)
    if not comparisons or not rules:
        raise MatchingError(f"nothing left to {'compare' if not comparisons else 'block on'} "
                            f"without the absent column(s) {dropped}; supply those columns or "
                            "configure comparisons/blocking for the columns you have")

    internal: dict[str, str] = {}   # source column -> internal name
    for i, c in enumerate(comparisons):
        internal[c.column] = f"c{i}"
    for col in dict.fromkeys(col for rule in rules for col in rule):
        internal.setdefault(col, f"b{len(internal)}")
    columns = {name: (col, compared.get(col)) for col, name in internal.items()}

    con = duckdb.connect(":memory:")
    try:
        names = ["a_records", "b_other"][: len(tables)]
        sides = ["records", "other"]
        sizes = [_prepare(con, n, t, columns, s, labels) for n, t, s in zip(names, tables, sides)]
        possible = sizes[0] * (sizes[0] - 1) // 2 if other is None else sizes[0] * sizes[1]
        if possible < MIN_PAIRS:
            raise MatchingError(f"too few records to train a matching model ({possible:,} possible "
                                f"pair(s), at least {MIN_PAIRS:,} needed); match a larger set of "
                                "records, e.g. link the new records to the existing ones")
        counts = [_pair_count(con, names, [internal[c] for c in r]) for r in rules]
        if not any(counts):
            raise MatchingError(f"no two records agree on any blocking rule {rules}, so there "
                                "are no candidate pairs to train on; add looser blocking rules")
        labelled = _pair_count(con, names, [LABEL]) if labels is not None else 0
        if labels is not None and labelled < MIN_LABELLED_PAIRS:
            warnings.warn(f"only {labelled} pair(s) of records share a label in {labels!r}, "
                          f"fewer than the {MIN_LABELLED_PAIRS} needed to learn from them; "
                          "the model is trained by expectation maximisation instead", stacklevel=2)
        trained = [r for r, n in zip(rules, counts) if n]
        if labelled < MIN_LABELLED_PAIRS and (missing := untrainable(comparisons, trained)):
            raise MatchingError(f"comparison(s) {missing} are used by every blocking rule that "
                                "finds candidate pairs, so they cannot be trained; add a "
                                "blocking rule that does not use them")
        with _quiet_splink():
            pairs = _run_splink(con, names, comparisons, internal, rules, counts, settings,
                                threshold, possible, labels is not None, labelled)
    finally:
        con.close()
    return pairs


def _run_splink(con, names, comparisons, internal, rules, counts, settings, threshold,
                possible, has_labels, labelled):
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on
    from splink.internals.exceptions import SplinkException

    db_api = DuckDBAPI(con)
    inputs = [db_api.register(n, dataset_display_name=n) for n in names]
    data = inputs[0] if len(inputs) == 1 else inputs
    splink_rules = [block_on(*(internal[c] for c in r)) for r in rules]
    creator = SettingsCreator(
        link_type="dedupe_only" if len(names) == 1 else "link_only",
        comparisons=[_splink_comparison(c, internal[c.column]) for c in comparisons],
        blocking_rules_to_generate_predictions=splink_rules,
        retain_matching_columns=False, retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=[LABEL] if has_labels else [])
    source = {v: k for k, v in internal.items()}
    cap = settings.max_pairs_for_training
    try:
        linker = Linker(data, creator, log_level=None)
        linker.training.estimate_u_using_random_sampling(max_pairs=cap, seed=SEED)
        if labelled >= MIN_LABELLED_PAIRS:
            linker.training.estimate_m_from_label_column(LABEL)
            model = linker.misc.save_model_to_json()
            model.pop("linker_uid", None)
            with_values = _labelled_with_values(con, names, [internal[c.column]
                                                             for c in comparisons])
            if blind := _learn_from_labels(model, with_values, min(cap, possible)):
                warnings.warn(f"no two records with the same label both have a value for "
                              f"{[source[c] for c in blind]}; how much they say is assumed "
                              "from the other attributes", stacklevel=3)
            linker = Linker(data, model, log_level=None)
        else:
            for rule, br, n in zip(rules, splink_rules, counts):
                if not n:
                    continue
                try:
                    linker.training.estimate_parameters_using_expectation_maximisation(
                        br, max_pairs=cap if n > cap else None)
                except ValueError as exc:   # Splink 5 refuses m/u below 1e-300 mid-EM
                    warnings.warn(f"training on blocking rule {rule} failed and was skipped: "
                                  f"{exc}", stacklevel=3)
            if untrained := _untrained_levels(linker, source):
                warnings.warn(f"no training pair fell into comparison level(s) {untrained}; "
                              "Splink's default parameters are used for them", stacklevel=3)
        predicted = linker.inference.predict(warning_mode="never").physical_name
        used = linker.misc.save_model_to_json()["probability_two_random_records_match"]
    except SplinkException as exc:
        raise MatchingError(f"the matching model could not be trained on these records ({exc}); "
                            "check that the compared columns hold comparable values, or add "
                            "blocking rules that find more candidate pairs") from exc
    if has_labels:   # pairs within one label are known matches: score only those across labels
        cross = f"{LABEL}_l IS NULL OR {LABEL}_r IS NULL OR {LABEL}_l <> {LABEL}_r"
        con.execute(f"CREATE TABLE scored AS SELECT * FROM {predicted} WHERE {cross}").fetchall()
        predicted, possible = "scored", possible - labelled
    used = math.log2(used / (1 - used))
    prior = _log2_prior_odds(con, predicted, possible, used) - used
    swap = "source_dataset_l <> 'a_records'" if len(names) == 2 else "unique_id_l > unique_id_r"
    return con.sql(f"""
        SELECT CASE WHEN {swap} THEN unique_id_r ELSE unique_id_l END AS record_id_l,
               CASE WHEN {swap} THEN unique_id_l ELSE unique_id_r END AS record_id_r,
               1 / (1 + pow(2, -w)) AS match_probability, w AS match_weight
        FROM (SELECT *, CAST(match_weight AS DOUBLE) + {prior!r} AS w FROM {predicted})
        WHERE 1 / (1 + pow(2, -w)) >= {float(threshold)!r}
        ORDER BY match_probability DESC, record_id_l, record_id_r
        """).to_arrow_table().cast(PAIRS_SCHEMA)


def _labelled_with_values(con, names: list[str], cols: list[str]) -> dict[str, int]:
    """Per compared column: the labelled pairs (same label) in which both records have a value."""
    if len(names) == 1:
        pairs = (f"{names[0]} l JOIN {names[0]} r "
                 f"ON l.{LABEL} = r.{LABEL} AND l.unique_id < r.unique_id")
    else:
        pairs = f"{names[0]} l JOIN {names[1]} r ON l.{LABEL} = r.{LABEL}"
    counts = ", ".join(f"count(*) FILTER (WHERE l.{c} IS NOT NULL AND r.{c} IS NOT NULL)"
                       for c in cols)
    return dict(zip(cols, con.execute(f"SELECT {counts} FROM {pairs}").fetchall()[0]))


def _learn_from_labels(model: dict, with_values: dict[str, int], sampled: int) -> list[str]:
    """Turn the m probabilities Splink counted in the labelled pairs into the model, in place.

    A comparison's m probabilities are the shares of its ``n`` labelled pairs (same label, both
    values present) in each level, shrunk towards a prior worth ``PRIOR_PAIRS`` pairs, so that a
    comparison few labelled pairs have values for is not judged on one or two of them. The prior
    comes from the labels too: the share of all labelled pairs that agree exactly, pooled over
    the comparisons, goes to the exact level; the rest is shared equally by the other levels (so
    a near miss, rare among random pairs, counts for a match and a clear difference against it).
    Then no level may weigh less than a less similar level of the same comparison (a nearly equal
    first name is no worse evidence than a different one just because no labelled pair had one).
    Levels no random pair reached get u = half a pair in ``sampled``. Returns the comparisons no
    labelled pair had both values of.
    """
    floor = 0.5 / max(sampled, 1)
    learnt = []
    for cc in model["comparisons"]:
        levels = [lv for lv in cc["comparison_levels"] if not lv.get("is_null_level")]
        for lv in levels:
            lv["u_probability"] = lv.get("u_probability") or floor
        n = with_values.get(cc["output_column_name"], 0)
        learnt.append((cc["output_column_name"], levels, n,
                       [(lv.get("m_probability") or 0.0) * n for lv in levels]))
    pairs = sum(n for _, _, n, _ in learnt)
    agree = (sum(counts[0] for *_, counts in learnt) + 1) / (pairs + 2)
    for _, levels, n, counts in learnt:
        others = max(len(levels) - 1, 1)
        prior = [agree] + [(1 - agree) / others] * (len(levels) - 1)
        weights = [math.log2((c + PRIOR_PAIRS * q) / (n + PRIOR_PAIRS) / lv["u_probability"])
                   for c, q, lv in zip(counts, prior, levels)]
        for i in range(len(weights) - 2, -1, -1):       # levels run from most to least similar
            weights[i] = max(weights[i], weights[i + 1])
        for lv, w in zip(levels, weights):
            lv["m_probability"] = min(1.0, lv["u_probability"] * 2 ** w)
    return [name for name, _, n, _ in learnt if not n]


def _log2_prior_odds(con, predicted: str, possible: int, used: float) -> float:
    """log2 of the prior odds that two random records match.

    The candidate pairs were scored with prior log2-odds ``used``; without it their match
    weights are likelihood ratios. EM with those fixed finds the share of matches among them;
    scaled to all possible pairs (blocking is assumed to find nearly every match) that is the
    probability two random records match. Unlike Splink's estimate from the EM sessions, this
    stays sane when a blocking rule (say, equal e-mail) finds matches only. With labels,
    ``predicted`` and ``possible`` count the pairs across labels only, so the prior is how rare a
    match is that the labels do not know yet -- far rarer than matches in general.
    """
    candidates = con.sql(f"SELECT count(*) FROM {predicted}").fetchall()[0][0]
    if not candidates or possible <= 0:
        return math.log2(1e-12)
    share = 0.5
    for _ in range(200):
        odds = math.log2(share / (1 - share))
        new = con.sql(f"SELECT avg(1 / (1 + pow(2, -(match_weight - {used!r} + {odds!r})))) "
                      f"FROM {predicted}").fetchall()[0][0]
        new, done = min(max(new or 0.0, 1e-12), 1 - 1e-12), abs((new or 0.0) - share) < 1e-9
        share = new
        if done:
            break
    rate = min(share * candidates / possible, 1 - 1e-12)
    return math.log2(rate / (1 - rate))


def classify(pairs: pa.Table, settings: MatchSettings) -> tuple[pa.Table, pa.Table]:
    """Split predicted pairs into (automatic merges: p >= upper, review: lower <= p < upper)."""
    p = pairs["match_probability"]
    merge = pc.greater_equal(p, settings.upper)
    review = pc.and_(pc.greater_equal(p, settings.lower), pc.less(p, settings.upper))
    return pairs.filter(pc.fill_null(merge, False)), pairs.filter(pc.fill_null(review, False))


def pairwise_scores(predicted: set[frozenset], truth: set[frozenset]) -> dict:
    """Precision, recall and F1 of predicted pairs against true pairs (each a frozenset of 2 ids).

    With nothing predicted precision is 1.0; with nothing to find recall is 1.0.
    """
    tp, fp, fn = len(predicted & truth), len(predicted - truth), len(truth - predicted)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}
