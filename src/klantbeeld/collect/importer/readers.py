"""Streaming readers for import files: CSV, JSON Lines and Parquet, each in chunks of rows.

Memory stays flat whatever the file size: a reader holds one chunk (plus one read-ahead block) at a
time. CSV lives in :mod:`.csv_reader`; this module holds what the readers share, Parquet and JSON
Lines. SQL sources are in :mod:`.sql_source`.

Each chunk knows how to turn a row position back into the line (or row) number a person finds in
the file, but computes it only when asked — for the few rows that fail.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .build import Column

FORMATS = ("csv", "jsonl", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


class ImportInputError(ValueError):
    """The input cannot be read (missing, unknown format, wrong encoding...); says what to do."""


@dataclass
class LineMap:
    """Position in a chunk → line (or row) number in the input, computed on demand.

    ``first`` is the number of the chunk's first delivered row, ``kept`` the delivered positions
    that were kept (None: all), ``skips`` the sorted numbers of rows the parser left out before
    delivering (malformed CSV rows), ``extra`` the numbers of rows refused by the reader, which
    follow the kept rows in the job. For CSV, ``breaks`` holds per delivered row the line breaks
    inside quoted values of the chunk's earlier rows, ``base`` those before the chunk.
    """

    first: int
    kept: pa.Array | None = None
    skips: list[int] | None = None
    extra: list[int | None] = field(default_factory=list)
    size: int = 0  # number of kept rows
    breaks: pa.Array | None = None
    base: int = 0

    def record(self, delivered: int) -> int:
        """The record number of the chunk's delivered row ``delivered``."""
        n = self.first + delivered
        for skipped in self.skips or ():
            if skipped > n:
                break
            n += 1
        return n

    def __call__(self, pos: int) -> int | None:
        if pos >= self.size:
            i = pos - self.size
            return self.extra[i] if i < len(self.extra) else None
        d = self.kept[pos].as_py() if self.kept is not None else pos
        return (self.record(d) + self.base
                + (self.breaks[d].as_py() if self.breaks is not None else 0))


@dataclass
class Chunk:
    table: pa.Table                   # the rows to build, columns named by Column.ident
    lines: LineMap
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (code, reason, payload)
    done: int = 0                     # bytes (or rows) of the input consumed so far
    skipped_empty: int = 0


def detect_format(path: Path, given: str | None) -> tuple[str, str | None]:
    """(format, compression codec) from ``--format`` or the file name."""
    suffixes = [s.lower() for s in path.suffixes]
    codec = _CODECS.get(suffixes[-1]) if suffixes else None
    if codec:
        suffixes = suffixes[:-1]
    if given:
        if given not in FORMATS:
            raise ImportInputError(f"unknown format {given!r}; use one of {', '.join(FORMATS)}")
        return given, codec
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise ImportInputError(f"cannot tell the format of {path.name} from its name; give "
                               f"--format ({', '.join(FORMATS)})")
    return fmt, codec


def open_input(path: Path, codec: str | None) -> tuple[pa.NativeFile, pa.NativeFile]:
    """(raw file, stream to read): the raw file's position is the progress through the input."""
    try:
        raw = pa.OSFile(str(path), "rb")
    except (FileNotFoundError, OSError) as exc:
        raise ImportInputError(f"cannot open {path}: {exc}") from None
    return raw, (pa.CompressedInputStream(raw, codec) if codec else raw)


def nonempty(table: pa.Table) -> pa.Array | None:
    """Positions of rows with at least one value, or None when every row has one."""
    if table.num_columns == 0 or table.num_rows == 0:
        return None
    mask = None
    for col in table.columns:
        has = pc.is_valid(col)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            has = pc.and_(has, pc.not_equal(col, ""))
        mask = has if mask is None else pc.or_(mask, has)
    if pc.all(mask).as_py():
        return None
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return pc.indices_nonzero(mask)


def rechunk(batches: Iterator[pa.RecordBatch], schema: pa.Schema, size: int) -> Iterator[pa.Table]:
    """Regroup record batches into tables of exactly ``size`` rows (the last one smaller)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(pending, schema)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending, schema)


def natural_type(t: pa.DataType) -> str:
    """How a typed column's values go into a message when the mapping names no type."""
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_nested(t):
        return "json"
    return "string"


class ParquetReader:
    """A Parquet file, by record batches; columns keep their types. Rows are numbered from 1."""

    unit = "row"
    progress_unit = "rows"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = pq.ParquetFile(str(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ImportInputError(f"{path.name}: not a readable Parquet file: {exc}") from None
        schema = self._file.schema_arrow
        self.total = self._file.metadata.num_rows
        self.columns = {f.name: Column(f"c{i}", natural_type(f.type))
                        for i, f in enumerate(schema)}

    def chunks(self, needed: list[str], chunk_size: int) -> Iterator[Chunk]:
        names = [n for n in self.columns if n in needed]
        idents = [self.columns[n].ident for n in names]
        done = 0
        batches = self._file.iter_batches(batch_size=min(chunk_size, 65_536), columns=names)
        schema = self._file.schema_arrow
        schema = pa.schema([schema.field(n) for n in names])
        for table in rechunk(batches, schema, chunk_size):
            table = table.rename_columns(idents)
            n = table.num_rows
            kept = nonempty(table)
            if kept is not None:
                table = table.take(kept)
            yield Chunk(table, LineMap(done + 1, kept, size=table.num_rows),
                        done=done + n, skipped_empty=n - table.num_rows)
            done += n
        self._file.close()


def read_lines(path: Path, codec: str | None, chunk_size: int
               ) -> Iterator[tuple[list[bytes], int, int]]:
    """(lines, number of the first, bytes consumed) per chunk of a line-oriented file."""
    raw, stream = open_input(path, codec)
    with raw, stream:
        buffered = io.BufferedReader(stream, 1 << 20)
        first = 1
        while True:
            lines = list(itertools.islice(buffered, chunk_size))
            if not lines:
                return
            yield lines, first, raw.tell()
            first += len(lines)


class JsonLinesReader:
    """JSON Lines where each line is a flat record (mapped like CSV columns); values stay JSON.

    The columns are the keys seen in the first chunk. Lines that are not JSON objects are refused
    with their line number.
    """

    unit = "line"
    progress_unit = "B"

    def __init__(self, path: Path, codec: str | None, chunk_size: int) -> None:
        self.path, self.codec, self.chunk_size = path, codec, chunk_size
        self.total = path.stat().st_size
        self._con = duckdb.connect(":memory:")
        self._lines = read_lines(path, codec, chunk_size)
        self._first = next(self._lines, None)
        keys: list[str] = []
        if self._first is not None:
            table, _, _ = self._decode(self._first[0])
            self._con.register("lines", table)
            keys = [r[0] for r in self._con.sql(
                "SELECT k FROM (SELECT unnest(json_keys(line)) AS k, row_number() OVER () AS n "
                "FROM lines WHERE json_valid(line) AND json_type(line) = 'OBJECT') "
                "GROUP BY k ORDER BY min(n)").fetchall()]
            self._con.unregister("lines")
        self.columns = {k: Column(f"c{i}", "json") for i, k in enumerate(keys)}

    @staticmethod
    def _decode(lines: list[bytes]) -> tuple[pa.Table, list[int], list[tuple[int, str, str, str]]]:
        """The non-blank lines as text, their indexes, and the lines that are not UTF-8."""
        texts, kept, bad = [], [], []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                texts.append(line.decode("utf-8"))
                kept.append(i)
            except UnicodeDecodeError as exc:
                bad.append((i, "invalid_json", f"the line is not valid UTF-8: {exc}",
                            line.decode("utf-8", "replace")))
        return pa.table({"line": pa.array(texts, pa.string())}), kept, bad

    def chunks(self, needed: list[str], chunk_size: int) -> Iterator[Chunk]:
        names = [n for n in self.columns if n in needed]
        paths = {f"k{i}": f'$."{n}"' for i, n in enumerate(names)}
        select = ", ".join(f"CAST(json_extract(line, $k{i}) AS VARCHAR) AS {self.columns[n].ident}"
                           for i, n in enumerate(names)) or "NULL AS none"
        first_chunk = [self._first] if self._first is not None else []
        for lines, first, done in itertools.chain(first_chunk, self._lines):
            table, kept, bad = self._decode(lines)
            blank = len(lines) - len(kept) - len(bad)
            self._con.register("lines", table)
            try:
                kinds = self._con.sql("SELECT CASE WHEN json_valid(line) THEN json_type(line) END "
                                      "AS kind FROM lines").to_arrow_table().column("kind")
                kinds = kinds.combine_chunks() if kinds.num_chunks else pa.array([], pa.string())
                ok = pc.equal(kinds, "OBJECT").fill_null(False)
                good = pc.indices_nonzero(ok)
                for pos in pc.indices_nonzero(pc.invert(ok)).to_pylist():
                    text = table.column("line")[pos].as_py().rstrip("\r\n")
                    if kinds[pos].is_valid:
                        bad.append((kept[pos], "not_an_object", "a message must be a JSON object "
                                    f"(line {first + kept[pos]} holds {kinds[pos]})", text))
                    else:
                        bad.append((kept[pos], "invalid_json",
                                    f"line {first + kept[pos]} is not valid JSON", text))
                self._con.register("objects", table.take(good))
                out = self._con.sql(f"SELECT {select} FROM objects", params=paths).to_arrow_table()
                self._con.unregister("objects")
            finally:
                self._con.unregister("lines")
            kept_lines = pa.array([kept[i] for i in good.to_pylist()], pa.int64())
            bad.sort()
            yield Chunk(out, LineMap(first, kept_lines, size=out.num_rows,
                                     extra=[first + b[0] for b in bad]),
                        [(code, why, text) for _, code, why, text in bad], done, blank)
        self._con.close()
