"""Look-alike scoring: finds planted look-alikes, is no better than chance without a signal,
never scores the seed itself, copes with missing values and says clearly when it cannot learn."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from klantbeeld.predict.lookalike import LookalikeConfig, evaluate, run, score

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def population(n: int = 4000, signal: float = 1.5, seed: int = 0, column: str = "f0"):
    """Features for ``n`` profiles; 15 % are "alike" (shifted by ``signal`` in two columns, the
    first named ``column``) and 60 % of those are the known seed. Returns the table, the seed
    ids and the alike-but-unlabelled ids (the look-alikes a good model should rank high)."""
    rng = np.random.default_rng(seed)
    alike = rng.random(n) < 0.15
    x = rng.normal(size=(n, 5))
    x[alike, 0] += signal
    x[alike, 1] -= signal
    ids = np.array([f"p{i:05d}" for i in range(n)])
    known = alike & (rng.random(n) < 0.6)
    names = [column, "f1", "f2", "f3", "f4"]
    table = pa.table({"profile_id": ids, **{name: x[:, j] for j, name in enumerate(names)}})
    return table, ids[known].tolist(), set(ids[alike & ~known].tolist())


def lift_at(result: dict, percent: float) -> float:
    return next(t["lift"] for t in result["top"] if t["percent"] == percent)


def test_planted_signal_gives_lift_well_above_random():
    features, seeds, _ = population()
    result = evaluate(features, seeds, LookalikeConfig())
    assert result["held_out"] == round(0.3 * len(seeds))
    assert result["ranked_profiles"] == features.num_rows - result["training_members"]
    assert lift_at(result, 10) > 4
    assert lift_at(result, 1) > 4
    assert result["auc"] > 0.85
    top = result["top"]
    assert [t["percent"] for t in top] == [1, 5, 10]
    assert all(t["random_lift"] == 1.0 for t in top)
    assert all(t["recall"] == pytest.approx(t["held_out_found"] / result["held_out"], abs=0.01)
               for t in top)


def test_scores_rank_unlabelled_look_alikes_first():
    features, seeds, hidden = population(seed=1)
    scored = score(features, seeds, LookalikeConfig())
    ids = scored.column("profile_id").to_pylist()
    values = scored.column("score").to_numpy()
    truth = np.array([i in hidden for i in ids])
    assert roc_auc_score(truth, values) > 0.85
    assert np.all(np.diff(values) <= 0)                   # best first


def test_without_a_signal_lift_is_about_one():
    lifts, aucs = [], []
    for seed in range(3):
        features, seeds, _ = population(n=6000, signal=0.0, seed=seed)
        result = evaluate(features, seeds, LookalikeConfig(random_seed=seed))
        lifts.append(lift_at(result, 10))
        aucs.append(result["auc"])
    assert 0.5 < np.mean(lifts) < 1.5
    assert all(0.4 < a < 0.6 for a in aucs)


def test_seed_members_are_never_their_own_look_alikes():
    features, seeds, _ = population(n=1500)
    scored = score(features, seeds, LookalikeConfig())
    ids = set(scored.column("profile_id").to_pylist())
    assert not ids & set(seeds)
    assert ids | set(seeds) == set(features.column("profile_id").to_pylist())
    values = scored.column("score").to_numpy()
    assert np.all((values >= 0) & (values <= 1))


def with_gaps(features: pa.Table, blank: np.ndarray) -> pa.Table:
    """20 % NaN and a few infinities in every column, nothing at all for the ``blank`` rows
    (anonymous visitors), plus a column never known and one that never varies."""
    rng = np.random.default_rng(3)
    columns = {"profile_id": features.column("profile_id")}
    for name in features.column_names[1:]:
        values = features.column(name).to_numpy().copy()
        values[rng.random(len(values)) < 0.2] = np.nan
        values[:5] = np.inf
        values[blank] = np.nan
        columns[name] = values
    columns["never_known"] = np.full(features.num_rows, np.nan)
    columns["always_same"] = np.ones(features.num_rows)
    return pa.table(columns)


@pytest.mark.parametrize("model", ["logistic", "gradient_boosting"])
def test_missing_values_are_handled(model):
    features, seeds, hidden = population(n=1000, signal=2.0, seed=3)
    blank = np.arange(900, 1000)
    table = with_gaps(features, blank)
    scored = score(table, seeds, LookalikeConfig(model=model, folds=2))
    values = scored.column("score").to_numpy()
    assert np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 1))
    ids = scored.column("profile_id").to_pylist()
    assert {f"p{i:05d}" for i in blank} - set(seeds) <= set(ids)     # visitors are scored too
    truth = np.array([i in hidden for i in ids])
    assert roc_auc_score(truth, values) > 0.75


def test_columns_without_information_are_dropped_and_reported():
    features, seeds, _ = population(n=1500, signal=2.0, seed=3)
    table = with_gaps(features, np.arange(1400, 1500))
    card = run(table, {"alike": seeds}, LookalikeConfig(seed_segments=["alike"]), NOW).card
    assert card["constant_features_dropped"] == ["never_known", "always_same"]
    assert card["features"] == ["f0", "f1", "f2", "f3", "f4"]
    assert card["segments"]["alike"]["evaluation"]["top"][-1]["lift"] > 3


def test_excluded_features_are_left_out_of_the_model():
    features, seeds, _ = population(column="orders_total", seed=4)
    with_it = evaluate(features, seeds, LookalikeConfig(exclude_features=[]))
    without = evaluate(features, seeds, LookalikeConfig(exclude_features=["orders_*", "f1"]))
    assert lift_at(with_it, 10) > 4
    assert 0.3 < lift_at(without, 10) < 2.0                 # the signal was only there
    # by default order counts are left out: they define the default seed, "loyal"
    result = run(features, {"loyal": seeds}, LookalikeConfig(), NOW)
    assert result.card["excluded_features"] == ["orders_total"]
    assert "orders_total" not in result.card["features"]
    assert "f1" in result.card["features"]


def test_row_order_does_not_change_the_scores():
    features, seeds, _ = population(n=1500, seed=5)
    first = score(features, seeds, LookalikeConfig())
    shuffled = features.take(pa.array(np.random.default_rng(0).permutation(features.num_rows)))
    assert score(shuffled, list(reversed(seeds)), LookalikeConfig()).equals(first)


def test_too_small_or_unknown_seeds_are_clear_errors():
    features, seeds, _ = population(n=800)
    with pytest.raises(ValueError, match=r"has 9 member\(s\).*at least 10"):
        score(features, seeds[:9], LookalikeConfig())
    strangers = [f"nobody-{i}" for i in range(30)]
    with pytest.raises(ValueError, match=r"0 member\(s\) with features \(30 of the 30 given "
                                         r"have no row in the features\)"):
        evaluate(features, strangers, LookalikeConfig())
    # a few unknown ids among enough known ones are fine
    assert score(features, seeds + strangers, LookalikeConfig()).num_rows == 800 - len(seeds)


def test_bad_inputs_and_config_are_clear_errors():
    features, seeds, _ = population(n=500)
    text = features.append_column("city", pa.array(["Utrecht"] * 500))
    with pytest.raises(ValueError, match="'city' is string, not a number"):
        score(text, seeds, LookalikeConfig())
    assert score(text, seeds, LookalikeConfig(exclude_features=["city"])).num_rows > 0
    doubled = pa.concat_tables([features, features.slice(0, 1)])
    with pytest.raises(ValueError, match="more than one row"):
        score(doubled, seeds, LookalikeConfig())
    with pytest.raises(ValueError, match="no usable feature columns"):
        score(features, seeds, LookalikeConfig(exclude_features=["f*"]))
    with pytest.raises(ValidationError, match=r"\(0, 100\]"):
        LookalikeConfig(top_percent=[0, 5])
    with pytest.raises(ValidationError):
        LookalikeConfig(holdout_share=1.0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        LookalikeConfig(seed="loyal")


def test_run_scores_each_seed_segment_and_reports_the_ones_it_cannot():
    features, seeds, _ = population(n=2000, seed=6)
    config = LookalikeConfig(seed_segments=["loyal", "tiny", "absent"])
    result = run(features, {"loyal": seeds, "tiny": seeds[:4]}, config, NOW)
    assert result.model == "lookalike"
    assert [s.trait for s in result.scores] == ["lookalike_loyal"]
    table = result.scores[0].table
    assert table.column_names == ["profile_id", "value"]
    assert pa.types.is_floating(table.column("value").type)
    assert table.num_rows == 2000 - len(seeds)
    card = result.card["segments"]
    assert card["loyal"]["evaluation"]["top"][-1]["lift"] > 4
    assert card["loyal"]["seed_with_features"] == len(seeds)
    assert [t["percent"] for t in card["loyal"]["thresholds"]] == [1, 5, 10]
    assert {w["feature"] for w in card["loyal"]["top_features"][:2]} == {"f0", "f1"}
    assert "at least 10" in card["tiny"]["error"]
    assert "no member list" in card["absent"]["error"]
    with pytest.raises(ValueError, match="no look-alike scores"):
        run(features, {"tiny": seeds[:4]}, LookalikeConfig(seed_segments=["tiny"]), NOW)
