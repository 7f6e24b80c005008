"""CSV files, streamed by PyArrow with every cell read as text.

Types come from the mapping, not from the file: per-block type inference breaks streaming (a column
that looks numeric for a million rows and then holds "n/a" would fail the read). The separator is
guessed from the header line unless given; a UTF-8 BOM is skipped; .gz/.zst/.bz2 are read as they
are.

Line numbers are what an editor shows: the header is line 1, blank lines count, and a row whose
quoted value spans several lines moves the rows after it down by as many lines. Rows with the wrong
number of fields are refused (with their line) instead of failing the whole file.
"""

from __future__ import annotations

import bisect
import csv
import io
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from .build import Column
from .readers import Chunk, ImportInputError, LineMap, nonempty, open_input, rechunk

_BLOCK = 1 << 20  # bytes per read block (PyArrow reads a few dozen ahead: keep them small)


class CsvReader:
    unit = "line"
    progress_unit = "B"

    def __init__(self, path: Path, codec: str | None, delimiter: str | None = None,
                 encoding: str = "utf-8") -> None:
        self.path, self.codec, self.encoding = path, codec, encoding
        self.total = path.stat().st_size
        self.delimiter = delimiter or self._sniff()
        raw, stream = open_input(path, codec)
        try:
            with raw, stream:
                reader = pa_csv.open_csv(stream, read_options=self._read_options(1 << 20),
                                         parse_options=self._parse_options(lambda row: "skip"))
                names = reader.schema.names
        except pa.ArrowInvalid as exc:
            raise ImportInputError(f"{path.name}: {arrow_reason(exc)}") from None
        self.header = names
        self.columns = {n: Column(f"c{i}") for i, n in enumerate(names) if names.count(n) == 1}

    def _sniff(self) -> str:
        raw, stream = open_input(self.path, self.codec)
        with raw, stream:
            head = stream.read(64 << 10)
        first = head.split(b"\n", 1)[0]
        counts = {d: first.count(d.encode()) for d in (",", ";", "\t", "|")}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","

    def _read_options(self, block: int) -> pa_csv.ReadOptions:
        # use_threads=False: the parser then reports the record number of a malformed row.
        return pa_csv.ReadOptions(use_threads=False, block_size=block, encoding=self.encoding)

    def _parse_options(self, handler) -> pa_csv.ParseOptions:
        return pa_csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True,
                                   ignore_empty_lines=False, invalid_row_handler=handler)

    def _refusal(self, text: str, line: int | None) -> tuple[str, str, str]:
        fields = len(next(csv.reader(io.StringIO(text), delimiter=self.delimiter), [])) or 1
        return ("invalid_row", f"line {line if line is not None else '?'} has {fields} "
                f"field{'s' if fields != 1 else ''}; the header has {len(self.header)}", text)

    def chunks(self, needed: list[str], chunk_size: int) -> Iterator[Chunk]:
        """Chunks of the rows, with only the ``needed`` columns, named by their Column idents."""
        skips: list[int] = []      # record numbers of malformed rows, ascending
        pending: list[tuple[int | None, str]] = []

        def handler(row) -> str:
            if row.number is not None:
                skips.append(row.number)
            pending.append((row.number, row.text))
            return "skip"

        # Every column is read (as text) so line breaks inside any quoted value are counted.
        convert = pa_csv.ConvertOptions(column_types={c: pa.string() for c in self.header},
                                        strings_can_be_null=False)
        wanted = [i for i, c in enumerate(self.header) if c in needed and c in self.columns]
        idents = [self.columns[self.header[i]].ident for i in wanted]
        delivered = base = 0
        raw, stream = open_input(self.path, self.codec)
        with raw, stream:
            try:
                reader = pa_csv.open_csv(stream, read_options=self._read_options(_BLOCK),
                                         parse_options=self._parse_options(handler),
                                         convert_options=convert)
                for table in rechunk(iter(reader), reader.schema, chunk_size):
                    n = table.num_rows
                    breaks, total = _line_breaks(table)
                    part = table.select(wanted).rename_columns(idents)
                    kept = nonempty(part)
                    if kept is not None:
                        part = part.take(kept)
                    lines = LineMap(delivered + 2, kept, skips, size=part.num_rows,
                                    breaks=breaks, base=base)
                    last = lines.record(n - 1)
                    mine = [b for b in pending if b[0] is None or b[0] <= last]
                    pending[:] = [b for b in pending if b[0] is not None and b[0] > last]
                    refused = []
                    for number, text in mine:
                        line = None if number is None else number + base + _breaks_before(
                            lines, number, n, breaks, total)
                        lines.extra.append(line)
                        refused.append(self._refusal(text, line))
                    delivered += n
                    base += total
                    yield Chunk(part, lines, refused, raw.tell(), n - part.num_rows)
            except pa.ArrowInvalid as exc:
                raise ImportInputError(f"{self.path.name}: {arrow_reason(exc)}") from None
        if pending:  # malformed rows after the last good one
            lines = LineMap(0, extra=[None if num is None else num + base for num, _ in pending])
            refused = [self._refusal(text, line) for (_, text), line in zip(pending, lines.extra)]
            yield Chunk(pa.table({i: pa.array([], pa.string()) for i in idents}), lines, refused,
                        self.total)


def _line_breaks(table: pa.Table) -> tuple[pa.Array | None, int]:
    """Per row, the line breaks inside values of the rows before it (None when there are none)."""
    counts = None
    for col in table.columns:
        c = pc.count_substring(col, "\n")
        counts = c if counts is None else pc.add(counts, c)
    total = pc.sum(counts).as_py() if counts is not None else 0
    if not total:
        return None, 0
    if isinstance(counts, pa.ChunkedArray):
        counts = counts.combine_chunks()
    return pc.subtract(pc.cumulative_sum(counts), counts), total


def _breaks_before(lines: LineMap, number: int, n: int, breaks: pa.Array | None,
                   total: int) -> int:
    """Line breaks inside values of the chunk's rows that come before record ``number``."""
    if breaks is None:
        return 0
    d = bisect.bisect_left(range(n), number, key=lines.record)
    return breaks[d].as_py() if d < n else total


def arrow_reason(exc: Exception) -> str:
    text = str(exc)
    if "UTF8" in text or "UTF-8" in text or "utf-8" in text:
        return ("the file is not valid UTF-8; give its encoding, e.g. --encoding latin-1 "
                f"({text.splitlines()[0]})")
    return text.splitlines()[0] if text else type(exc).__name__
