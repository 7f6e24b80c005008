"""``klantbeeld clv …``: the lifetime-value models on any transaction table, no workspace needed.

An analyst with an export of orders (CSV, JSON Lines or Parquet) can fit BG/NBD or Pareto/NBD and
Gamma-Gamma and score every customer without loading the data into Klantbeeld first; the numbers
are those of the workspace's ``clv`` model run, which shares the code (:mod:`.lifetime`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..cli_support import fail, json_option, print_json, user_errors
from .lifetime import PERIOD_DAYS, clv_months, encode, fit_models, predict, to_days
from .summary import Summary, summary_from_transactions, validate

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}
READ_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError)


def _format(path: Path) -> str:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        fail(f"{path.name}: unknown file type {path.suffix or '(none)'!r}; use .csv, .jsonl or .parquet")
    return kind


def read_table(path: Path, text_columns: tuple[str, ...] = ()) -> pa.Table:
    """A CSV, JSON Lines or Parquet file (by extension); ``text_columns`` of a CSV stay text."""
    kind = _format(path)
    try:
        if kind == "csv":
            from pyarrow import csv

            options = csv.ConvertOptions(column_types={c: pa.string() for c in text_columns})
            table = csv.read_csv(path, convert_options=options)
        elif kind == "jsonl":
            from pyarrow import json

            table = json.read_json(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except READ_ERRORS as exc:
        fail(f"cannot read {path.name}: {str(exc).splitlines()[0]}")
    if table.num_rows == 0:
        fail(f"{path.name} has no rows")
    return table


def _select(table: pa.Table, path: Path, columns: list[str]) -> pa.Table:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        fail(f"{path.name} has no column {', '.join(repr(c) for c in missing)} "
             f"(columns: {', '.join(table.column_names)})")
    return table.select(list(dict.fromkeys(columns)))


def _dates(values: pa.ChunkedArray, column: str, date_format: str | None) -> np.ndarray:
    """A date column as ``datetime64[D]``: dates, timestamps, ISO strings, or text in ``date_format``."""
    try:
        if date_format:
            values = pc.strptime(values.cast(pa.string()), format=date_format, unit="s")
        elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            values = _iso(values, column)
        elif not (pa.types.is_timestamp(values.type) or pa.types.is_date(values.type)):
            raise ValueError(f"column {column!r} holds {values.type} values, not dates; "
                             "give --date-format (e.g. %Y%m%d)")
    except pa.ArrowInvalid as exc:
        raise ValueError(f"column {column!r}: {str(exc).splitlines()[0]}") from None
    if values.null_count:
        raise ValueError(f"column {column!r} has missing dates")
    return to_days(values)


def _iso(values: pa.ChunkedArray, column: str) -> pa.ChunkedArray:
    """ISO 8601 text as timestamps: local (naive) times, or all with a zone offset."""
    for kind in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        try:
            return pc.cast(values, kind)
        except pa.ArrowInvalid:
            pass
    for value in values.unique().to_pylist():  # name a value that is no date, for the message
        if not any(_parses(value, kind) for kind in (pa.timestamp("us"), pa.timestamp("us", tz="UTC"))):
            raise ValueError(f"column {column!r} has a value that is not an ISO 8601 date: "
                             f"{value!r} (give --date-format for other forms)")
    raise ValueError(f"column {column!r} mixes times with and without a zone offset")


def _parses(value: str | None, kind: pa.DataType) -> bool:
    try:
        pc.cast(pa.array([value], pa.string()), kind)
        return True
    except pa.ArrowInvalid:
        return False


def _numbers(values: pa.ChunkedArray, column: str) -> np.ndarray:
    try:
        numbers = pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ValueError(f"column {column!r} must hold numbers, not {values.type}") from None
    if numbers.null_count:
        raise ValueError(f"column {column!r} has missing values")
    return numbers.to_numpy()


def _from_transactions(path: Path, customer: str, date: str, amount: str | None,
                       date_format: str | None, observation_end: datetime | None, freq: str,
                       freq_multiplier: float) -> tuple[Summary, pa.Array]:
    columns = [customer, date] + ([amount] if amount else [])
    table = _select(read_table(path, (customer,) + ((date,) if date_format else ())), path, columns)
    codes, names = encode(table.column(customer))
    days = _dates(table.column(date), date, date_format)
    amounts = _numbers(table.column(amount), amount) if amount else None
    end = observation_end.date() if observation_end else None
    summary = summary_from_transactions(codes, days, amounts, observation_end=end, freq=freq,
                                        freq_multiplier=freq_multiplier)
    return summary, names.take(pa.array(summary.customers))


def _from_summary(path: Path, frequency: str, recency: str, T: str, monetary: str | None) -> Summary:
    table = read_table(path)
    has_monetary = monetary is not None or "monetary" in table.column_names
    columns = [frequency, recency, T] + ([monetary or "monetary"] if has_monetary else [])
    table = _select(table, path, columns)
    values = [_numbers(table.column(c), c) for c in columns]
    x, t_x, age, m = validate(*values[:3], values[3] if has_monetary else None)
    return Summary(x, t_x, age, m)


def _unit(freq: str, multiplier: float) -> str:
    days = PERIOD_DAYS[freq] * multiplier
    return {1.0: "days", 7.0: "weeks"}.get(days, f"periods of {days:g} days")


def _fmt(value: float) -> str:
    return f"{value:.6g}"


transactions_argument = click.argument(
    "transactions", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))


def _common(fn):
    """Options shared by ``fit`` and ``score``: columns, time unit, model."""
    for decorator in reversed([
        click.option("--customer", metavar="COL", help="Customer id column."),
        click.option("--date", metavar="COL", help="Transaction date or timestamp column."),
        click.option("--date-format", metavar="FMT",
                     help="strptime format of the dates when they are not ISO 8601 (e.g. %Y%m%d)."),
        click.option("--freq", type=click.Choice(["D", "W"]), default="D", show_default=True,
                     help="Count purchases per day or per calendar week (Monday to Sunday)."),
        click.option("--freq-multiplier", type=click.FloatRange(min=0, min_open=True), default=1.0,
                     show_default=True,
                     help="Express times in units of this many periods (--freq D --freq-multiplier 7: "
                          "weeks counted in days, as in the published CDNOW summary)."),
        click.option("--model", type=click.Choice(["bgnbd", "pareto"]), default="bgnbd",
                     show_default=True, help="Purchase model: BG/NBD or Pareto/NBD."),
        click.option("--observation-end", type=click.DateTime(["%Y-%m-%d"]),
                     help="Last day of the observation period [default: the last transaction]; "
                          "later transactions are left out."),
    ]):
        fn = decorator(fn)
    return fn


@click.group("clv")
def clv_group() -> None:
    """Customer lifetime value on any transaction table: fit the models, score customers."""


@clv_group.command("fit")
@transactions_argument
@_common
@click.option("--amount", metavar="COL", help="Transaction value column: also fit Gamma-Gamma.")
@click.option("--summary", "summary_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A ready per-customer table (frequency, recency, T[, monetary]) instead of "
                   "TRANSACTIONS.")
@click.option("--frequency-col", default="frequency", show_default=True, help="With --summary.")
@click.option("--recency-col", default="recency", show_default=True, help="With --summary.")
@click.option("--T-col", "t_col", default="T", show_default=True, help="With --summary.")
@click.option("--monetary-col", help="With --summary [default: monetary, when present].")
@json_option
@user_errors(ValueError)
def fit_command(transactions, customer, date, date_format, freq, freq_multiplier, model,
                observation_end, amount, summary_file, frequency_col, recency_col, t_col,
                monetary_col, as_json) -> None:
    """Fit the purchase model (and, with amounts, Gamma-Gamma); print parameters and log-likelihood."""
    if (transactions is None) == (summary_file is None):
        fail("give either TRANSACTIONS (with --customer and --date) or --summary FILE")
    if summary_file is not None:
        summary = _from_summary(summary_file, frequency_col, recency_col, t_col, monetary_col)
        source = {"summary": summary_file.name}
    else:
        if not customer or not date:
            fail("TRANSACTIONS needs --customer COL and --date COL")
        summary, _ = _from_transactions(transactions, customer, date, amount, date_format,
                                        observation_end, freq, freq_multiplier)
        source = {"transactions": transactions.name, "time_unit": _unit(freq, freq_multiplier)}
    with_spend = summary.monetary is not None
    fitted = fit_models(summary, model, with_spend=with_spend)
    result: dict[str, Any] = {"model": model, **source, "customers": len(summary), **fitted.card()}
    if as_json:
        print_json(result)
        return
    purchase = fitted.purchases.fit_result
    name = {"bgnbd": "BG/NBD", "pareto": "Pareto/NBD"}[model]
    unit = f", time unit: {source['time_unit']}" if "time_unit" in source else ""
    click.echo(f"{name} on {purchase.n:,} customers{unit}")
    _echo_fit(purchase)
    if fitted.spend is not None:
        click.echo(f"Gamma-Gamma on {fitted.spend.fit_result.n:,} customers with repeat purchases")
        _echo_fit(fitted.spend.fit_result)
    for warning in fitted.warnings:
        click.echo(f"warning: {warning}")


def _echo_fit(fit) -> None:
    for key, value in fit.params.items():
        click.echo(f"  {key:<15}{_fmt(value)}")
    state = "converged" if fit.converged else "NOT converged"
    click.echo(f"  {'log-likelihood':<15}{fit.log_likelihood:.2f} ({state})")


@clv_group.command("score")
@click.argument("transactions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_common
@click.option("--amount", metavar="COL", required=True, help="Transaction value column.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write one row per customer: .csv, .jsonl or .parquet.")
@click.option("--horizon-days", type=click.IntRange(min=28), default=365, show_default=True,
              help="Horizon of expected purchases and CLV (CLV is summed per month, so its "
                   "horizon is rounded to whole months).")
@click.option("--discount-rate", type=click.FloatRange(min=0, max=1, max_open=True), default=0.01,
              show_default=True, help="Monthly discount rate of future spend.")
@json_option
@user_errors(ValueError)
def score_command(transactions, customer, date, date_format, freq, freq_multiplier, model,
                  observation_end, amount, out, horizon_days, discount_rate, as_json) -> None:
    """Write per customer: frequency, recency, T, monetary, P(alive), expected purchases and
    order value, and CLV over the horizon."""
    if not customer or not date:
        fail("TRANSACTIONS needs --customer COL and --date COL")
    kind = _format(out)
    summary, ids = _from_transactions(transactions, customer, date, amount, date_format,
                                      observation_end, freq, freq_multiplier)
    fitted = fit_models(summary, model)
    period = PERIOD_DAYS[freq] * freq_multiplier
    values = predict(fitted, summary, period_days=period, purchase_horizon_days=horizon_days,
                     horizon_days=horizon_days, monthly_discount_rate=discount_rate)
    table = pa.table({"customer": ids, "frequency": summary.frequency, "recency": summary.recency,
                      "T": summary.T, "monetary": summary.monetary, **values}).select(
        ["customer", "frequency", "recency", "T", "monetary", "probability_alive",
         "expected_purchases", "expected_order_value", "clv"])
    _write(table, out, kind)
    result = {"out": str(out), "customers": table.num_rows, "model": model,
              "time_unit": _unit(freq, freq_multiplier), "horizon_days": horizon_days,
              "clv_months": clv_months(horizon_days), "monthly_discount_rate": discount_rate,
              "total_clv": float(values["clv"].sum()),
              "total_expected_purchases": float(values["expected_purchases"].sum()),
              "mean_probability_alive": float(values["probability_alive"].mean()),
              **fitted.card()}
    if as_json:
        print_json(result)
        return
    click.echo(f"scored {table.num_rows:,} customers into {out.name}: "
               f"{result['total_expected_purchases']:,.1f} expected purchases and CLV "
               f"{result['total_clv']:,.2f} in the next {horizon_days} days "
               f"(mean P(alive) {result['mean_probability_alive']:.2f})")
    for warning in fitted.warnings:
        click.echo(f"warning: {warning}")


def _write(table: pa.Table, out: Path, kind: str) -> None:
    try:
        if kind == "csv":
            from pyarrow import csv

            csv.write_csv(table, out)
        elif kind == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, out)
        else:
            with out.open("wb") as fh:
                for batch in table.to_batches(max_chunksize=65536):
                    fh.write(b"".join(orjson.dumps(row) + b"\n" for row in batch.to_pylist()))
    except OSError as exc:
        fail(f"cannot write {out}: {exc}")
