"""``klantbeeld clv fit|score`` on the CDNOW transactions: published figures, file formats, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from klantbeeld.predict.clv import BetaGeoModel, GammaGammaModel, customer_lifetime_value
from klantbeeld.predict.clv_cli import clv_group
from klantbeeld.predict.summary import summary_from_transactions

DATA = Path(__file__).parent / "data"
SUMMARY = DATA / "cdnow_customers_summary_with_transactions.csv"
# the published 39-week calibration: days counted, times in weeks
CALIBRATION = ["--freq", "D", "--freq-multiplier", "7", "--observation-end", "1997-09-30"]
COLUMNS = ["--customer", "customer", "--date", "date", "--amount", "amount"]


def sig3(value: float) -> float:
    return float(f"{value:.3g}")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The CDNOW transaction sample as CSV (ISO dates and YYYYMMDD), JSON Lines and Parquet."""
    raw = np.loadtxt(DATA / "CDNOW_sample.txt", dtype=str)
    ymd = raw[:, 2]
    iso = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in ymd])
    table = pa.table({"customer": raw[:, 1].astype(int), "date": iso, "amount": raw[:, 4].astype(float)})
    folder = tmp_path_factory.mktemp("cdnow")
    paths = {"csv": folder / "cdnow.csv", "parquet": folder / "cdnow.parquet",
             "jsonl": folder / "cdnow.jsonl", "ymd": folder / "cdnow_ymd.csv"}
    pa_csv.write_csv(table, paths["csv"])
    pq.write_table(table.set_column(1, "date", pa.array(iso.astype("datetime64[D]"))), paths["parquet"])
    paths["jsonl"].write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in table.to_pylist()))
    pa_csv.write_csv(table.set_column(1, "date", pa.array(ymd)), paths["ymd"])
    return paths


def invoke(*args: str):
    return CliRunner().invoke(clv_group, [str(a) for a in args], catch_exceptions=False)


def fit_json(*args: str) -> dict:
    result = invoke("fit", *args, "--json")
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def test_fit_prints_the_published_cdnow_parameters(files):
    result = invoke("fit", files["csv"], *COLUMNS, *CALIBRATION)
    assert result.exit_code == 0, result.output
    printed = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and line.startswith("  "):
            printed.setdefault(parts[0], []).append(float(parts[1]))
    assert [sig3(printed[k][0]) for k in ("r", "alpha", "a", "b")] == [0.243, 4.41, 0.793, 2.43]
    assert [sig3(printed[k][0]) for k in ("p", "q", "gamma")] == [6.25, 3.74, 15.4]
    assert printed["log-likelihood"][0] == pytest.approx(-9582.4, abs=0.05)
    assert "BG/NBD on 2,357 customers, time unit: weeks" in result.stdout
    assert "Gamma-Gamma on 946 customers" in result.stdout


def test_fit_json_and_every_file_format_agree(files):
    reference = fit_json(files["csv"], *COLUMNS, *CALIBRATION)
    params = reference["purchase_model"]["params"]
    assert [sig3(params[k]) for k in ("r", "alpha", "a", "b")] == [0.243, 4.41, 0.793, 2.43]
    assert reference["purchase_model"]["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert reference["spend_model"]["customers_fitted"] == 946
    assert reference["customers"] == 2357
    for other in (fit_json(files["parquet"], *COLUMNS, *CALIBRATION),
                  fit_json(files["jsonl"], *COLUMNS, *CALIBRATION),
                  fit_json(files["ymd"], *COLUMNS, "--date-format", "%Y%m%d", *CALIBRATION)):
        for part in ("purchase_model", "spend_model"):
            for key, value in reference[part]["params"].items():
                assert other[part]["params"][key] == pytest.approx(value, rel=1e-9)


def test_fit_pareto_and_without_amounts(files):
    out = fit_json(files["csv"], "--customer", "customer", "--date", "date", "--model", "pareto", *CALIBRATION)
    params = out["purchase_model"]["params"]
    assert [sig3(params[k]) for k in ("r", "alpha", "s", "beta")] == [0.553, 10.6, 0.606, 11.7]
    assert out["purchase_model"]["log_likelihood"] == pytest.approx(-9595.0, abs=0.05)
    assert "spend_model" not in out  # no --amount: purchase model only


def test_fit_from_a_ready_summary(tmp_path):
    out = fit_json("--summary", SUMMARY, "--frequency-col", "x", "--recency-col", "t_x", "--monetary-col", "zbar")
    assert [sig3(out["purchase_model"]["params"][k]) for k in ("r", "alpha", "a", "b")] == [0.243, 4.41, 0.793, 2.43]
    assert [sig3(out["spend_model"]["params"][k]) for k in ("p", "q", "gamma")] == [6.25, 3.74, 15.4]
    # default column names, no monetary column: purchase model only
    renamed = pa_csv.read_csv(SUMMARY).rename_columns(["ID", "frequency", "recency", "T", "zbar"])
    path = tmp_path / "summary.parquet"
    pq.write_table(renamed, path)
    plain = fit_json("--summary", path)
    assert plain["purchase_model"]["params"] == pytest.approx(out["purchase_model"]["params"], rel=1e-9)
    assert "spend_model" not in plain


def test_score_writes_what_the_python_api_computes(files, tmp_path):
    out = tmp_path / "scores.csv"
    result = invoke("score", files["csv"], *COLUMNS, *CALIBRATION, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("scored 2,357 customers into scores.csv")
    scores = pa_csv.read_csv(out)
    assert scores.column_names == ["customer", "frequency", "recency", "T", "monetary", "probability_alive",
                                   "expected_purchases", "expected_order_value", "clv"]
    assert scores.num_rows == 2357

    raw = np.loadtxt(DATA / "CDNOW_sample.txt", dtype=str)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]])
    s = summary_from_transactions(raw[:, 1].astype(int), dates, raw[:, 4].astype(float),
                                  observation_end="1997-09-30", freq="D", freq_multiplier=7)
    bg, gg = BetaGeoModel(), GammaGammaModel()
    bg.fit(s.frequency, s.recency, s.T)
    gg.fit(s.frequency, s.monetary)
    order = np.argsort(scores.column("customer").to_numpy())
    col = {name: scores.column(name).to_numpy()[order] for name in scores.column_names}
    np.testing.assert_array_equal(col["customer"], s.customers)
    np.testing.assert_allclose(col["frequency"], s.frequency)
    np.testing.assert_allclose(col["probability_alive"], bg.probability_alive(s.frequency, s.recency, s.T),
                               rtol=1e-6)
    np.testing.assert_allclose(col["expected_purchases"],
                               bg.expected_purchases(365 / 7, s.frequency, s.recency, s.T), rtol=1e-6)
    clv = customer_lifetime_value(bg, gg, s.frequency, s.recency, s.T, s.monetary, months=12,
                                  monthly_discount_rate=0.01, period_days=7)
    np.testing.assert_allclose(col["clv"], clv, rtol=1e-5)
    np.testing.assert_allclose(col["expected_order_value"], gg.expected_average_spend(s.frequency, s.monetary),
                               rtol=1e-6)


def test_score_formats_and_options(files, tmp_path):
    parquet, jsonl = tmp_path / "s.parquet", tmp_path / "s.jsonl"
    result = invoke("score", files["parquet"], *COLUMNS, *CALIBRATION, "--out", parquet, "--json")
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    table = pq.read_table(parquet)
    assert summary["customers"] == table.num_rows == 2357
    assert summary["total_clv"] == pytest.approx(sum(table.column("clv").to_pylist()))
    assert summary["clv_months"] == 12
    # a shorter horizon and a higher discount rate give less value, written as JSON Lines
    result = invoke("score", files["csv"], *COLUMNS, *CALIBRATION, "--out", jsonl, "--horizon-days", "180",
                    "--discount-rate", "0.05")
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in jsonl.read_bytes().splitlines()]
    assert len(rows) == 2357
    assert sum(r["clv"] for r in rows) < 0.6 * summary["total_clv"]
    assert sum(r["expected_purchases"] for r in rows) < summary["total_expected_purchases"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "{csv}", "--customer", "nobody", "--date", "date"], "has no column 'nobody'"),
        (["fit", "{ymd}", "--customer", "customer", "--date", "date"], "not dates; give --date-format"),
        (["fit", "{bad_dates}", "--customer", "c", "--date", "d"], "not an ISO 8601 date: 'yesterday'"),
        (["fit", "{empty}", "--customer", "c", "--date", "d"], "cannot read empty.csv"),
        (["fit", "{header_only}", "--customer", "c", "--date", "d"], "header.csv has no rows"),
        (["fit", "{csv}", "--summary", "{csv}"], "either TRANSACTIONS"),
        (["fit", "{csv}", "--date", "date"], "needs --customer"),
        (["fit", "--summary", "{csv}"], "has no column 'frequency'"),
        (["score", "{csv}", "--customer", "customer", "--date", "date", "--amount", "amount",
          "--out", "{tmp}/x.xlsx"], "unknown file type '.xlsx'"),
        (["fit", "{csv}", "--customer", "customer", "--date", "date", "--observation-end", "1990-01-01"],
         "no transactions on or before"),
        (["fit", "{csv}", "--customer", "customer", "--date", "date", "--amount", "customer",
          "--observation-end", "1997-01-02"], "too few customers with a repeat purchase"),
    ],
)
def test_errors_are_one_clear_line(files, tmp_path, args, message):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("c,d\n")
    (tmp_path / "bad.csv").write_text("c,d\na,2024-01-01\nb,yesterday\n")
    paths = {**{k: str(v) for k, v in files.items()}, "empty": tmp_path / "empty.csv",
             "header_only": tmp_path / "header.csv", "bad_dates": tmp_path / "bad.csv", "tmp": tmp_path}
    result = CliRunner().invoke(clv_group, [a.format(**paths) for a in args])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
