"""Reading DMP feeds: cookie (or partner) id → segment ids to add and to remove, line by line.

Three formats: Adobe Audience Manager's inbound format (``aam``: one user per line,
``<user id><TAB><traits>``, traits separated by commas or tabs, plain ids and ``d_sid=N`` add,
``d_unsid=N`` removes; gzip or plain), CSV (``cookie_id``, ``segments``, optional ``removed``) and
JSON Lines (``{"cookie_id", "segments": [...], "removed": [...]}``).

A feed can hold millions of lines, so it is read in chunks (100K lines) and each chunk is checked
with Arrow's vectorised kernels, never a Python list of every line. A line whose id or segment ids
are unusable is rejected whole (a line lands complete or not at all, which keeps full-overwrite
feeds honest), counted under its reason, and the first ones are kept with a message; the rest of
the feed lands. No personal data may enter a cookie profile: an id that looks like an e-mail
address or a phone number is refused, and its value is never repeated in a message.
"""

from __future__ import annotations

import gzip
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

FORMATS = ("aam", "csv", "jsonl")
CHUNK_LINES = 100_000
MAX_ID_CHARS = 200
KEEP_REJECTIONS = 100            # rejected lines kept with their message, per feed
SEGMENT_RE = r"^[A-Za-z0-9_.:-]{1,64}$"
EMAIL_RE = r"[^@\s]+@[^@\s]+\.[^@\s]+"
PHONE_RE = r"^(?:\+|00)?\d{9,15}$"   # after dropping spaces, dots, dashes and parentheses
PHONE_SEPARATORS = r"[\s().-]"
CONTROL_RE = r"[\x00-\x1f\x7f]"

ROWS = pa.schema([("line", pa.int64()), ("cookie_id", pa.string()),
                  ("segment_id", pa.string()), ("removed", pa.bool_())])

REASONS = {
    "malformed": "the line cannot be read",
    "empty_id": "the id is empty",
    "id_too_long": f"the id is longer than {MAX_ID_CHARS} characters",
    "invalid_id": "the id contains control characters",
    "personal_data": "the id looks like an e-mail address or a phone number: no personal data "
                     "may enter a cookie profile",
    "invalid_segment": "a segment id is not a plain token (letters, digits, _ . : -; at most 64)",
}


class FeedError(ValueError):
    """The feed cannot be read at all (missing file, unknown format, missing column)."""


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FeedChunk:
    """Some lines of a feed: accepted rows and what was rejected.

    ``rows`` (schema ``ROWS``) has one row per (line, segment) with ``removed`` telling an add
    from a removal, and one row with a NULL segment for an accepted line that lists none (in a
    full-overwrite feed that cookie keeps nothing from the source).
    """

    rows: pa.Table
    lines: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)


# -- the shared check --------------------------------------------------------------------------
def _personal(ids: pa.Array) -> pa.Array:
    """E-mail addresses and phone numbers among ``ids``; the costly patterns run only on the few
    ids that could be one (with an ``@``, or made of phone characters only)."""
    found = pc.match_substring(ids, "@")
    phoneish = pc.invert(pc.match_substring_regex(ids, r"[^0-9\s().+-]"))
    maybe = pc.indices_nonzero(pc.fill_null(pc.or_(found, phoneish), False))
    if len(maybe) == 0:
        return found
    few = pc.take(ids, maybe)
    hit = pc.or_(pc.match_substring_regex(few, EMAIL_RE),
                 pc.match_substring_regex(pc.replace_substring_regex(few, PHONE_SEPARATORS, ""),
                                          PHONE_RE))
    mask = np.zeros(len(ids), dtype=bool)
    mask[maybe.to_numpy()] = pc.fill_null(hit, False).to_numpy(zero_copy_only=False)
    return pa.array(mask)


def _mark(reason: pa.Array, condition: pa.Array, code: str) -> pa.Array:
    """``code`` where ``condition`` holds and no earlier reason was found."""
    hit = pc.and_(pc.fill_null(condition, False), pc.is_null(reason))
    return pc.if_else(hit, pa.scalar(code), reason)


def id_reasons(ids: pa.Array, reason: pa.Array | None = None) -> pa.Array:
    """Per id (trimmed) the code of what makes it unusable, NULL when it is fine; an earlier
    ``reason`` (e.g. malformed) stands."""
    if reason is None:
        reason = pa.nulls(len(ids), pa.string())
    reason = _mark(reason, pc.or_kleene(pc.is_null(ids), pc.equal(pc.utf8_length(ids), 0)),
                   "empty_id")
    reason = _mark(reason, pc.greater(pc.utf8_length(ids), MAX_ID_CHARS), "id_too_long")
    reason = _mark(reason, pc.match_substring_regex(ids, CONTROL_RE), "invalid_id")
    return _mark(reason, _personal(ids), "personal_data")


def build_chunk(lines: pa.Array, ids: pa.Array, malformed: list[str | None],
                seg_parent: pa.Array, seg_value: pa.Array, seg_removed: pa.Array) -> FeedChunk:
    """Check one chunk: per record its line number, id and malformation (None: well formed);
    per segment the record it belongs to, the id and whether it is a removal."""
    ids = pc.utf8_trim_whitespace(ids.cast(pa.string()))
    reason = id_reasons(ids, pa.array(["malformed" if m else None for m in malformed],
                                      pa.string()))

    seg_value = seg_value.cast(pa.string())
    parent = seg_parent.cast(pa.int64())
    bad_seg = pc.invert(pc.fill_null(pc.match_substring_regex(seg_value, SEGMENT_RE), False))
    in_bad = np.bincount(pc.filter(parent, bad_seg).to_numpy(), minlength=len(ids)) > 0
    reason = _mark(reason, pa.array(in_bad), "invalid_segment")

    ok = pc.is_null(reason)
    seg_ok = pc.take(ok, parent)
    keep_parent = pc.filter(parent, seg_ok)
    listed = np.bincount(parent.to_numpy(), minlength=len(ids)) > 0
    bare = pc.and_(ok, pa.array(~listed))               # accepted lines that list no segment
    bare_at = pc.indices_nonzero(bare)
    rows = pa.Table.from_arrays([
        pa.concat_arrays([pc.take(lines, keep_parent), pc.take(lines, bare_at)]).cast(pa.int64()),
        pa.concat_arrays([pc.take(ids, keep_parent), pc.take(ids, bare_at)]),
        pa.concat_arrays([pc.filter(seg_value, seg_ok), pa.nulls(len(bare_at), pa.string())]),
        pa.concat_arrays([pc.filter(seg_removed, seg_ok).cast(pa.bool_()),
                          pa.array(np.zeros(len(bare_at), dtype=bool))])], schema=ROWS)
    counts = {r["values"]: r["counts"] for r in pc.value_counts(reason).to_pylist()
              if r["values"] is not None}
    rejected = sum(counts.values())
    chunk = FeedChunk(rows=rows, lines=len(ids), rejected=rejected, reasons=counts)
    if rejected:
        chunk.rejections = _messages(lines, ids, malformed, reason, seg_parent, seg_value,
                                     bad_seg)
    return chunk


def _messages(lines, ids, malformed, reason, seg_parent, seg_value, bad_seg) -> list[Rejection]:
    """Messages for the first rejected lines of a chunk (the rest are only counted)."""
    at = pc.indices_nonzero(pc.is_valid(reason)).to_pylist()[:KEEP_REJECTIONS]
    wanted = set(at)
    first_bad: dict[int, str] = {}
    if any(reason[i].as_py() == "invalid_segment" for i in at):
        for p, v in zip(pc.filter(seg_parent, bad_seg).to_pylist(),
                        pc.filter(seg_value, bad_seg).to_pylist()):
            if p in wanted and p not in first_bad:
                first_bad[p] = v
    out = []
    for i in at:
        code = reason[i].as_py()
        value = ids[i].as_py() or ""
        if code == "malformed":
            text = malformed[i]
        elif code == "id_too_long":
            text = f"the id is {len(value)} characters; at most {MAX_ID_CHARS}"
        elif code == "invalid_segment":
            seg = first_bad.get(i) or ""
            text = f"segment id {_show(seg)} is not a plain token (letters, digits, _ . : -; " \
                   "at most 64)"
            if "=" in seg:
                text += "; of key=value traits only d_sid= and d_unsid= are read"
        else:
            text = REASONS[code]
        out.append(Rejection(lines[i].as_py(), code, text))
    return out


def _show(value: str) -> str:
    return repr(value if len(value) <= 70 else value[:67] + "...")


# -- records from Python objects (JSON Lines, the HTTP API, the Python API) -----------------------
def _as_ids(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of segment ids")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ValueError(f"{what} must be a list of segment ids (text or whole numbers)")
        out.append(str(v).strip())
    return out


def chunk_from_objects(objects: Iterable[tuple[int, Any]], id_key: str = "cookie_id") -> FeedChunk:
    """A chunk from (line number, decoded object or an error message) pairs; each object
    ``{id_key: …, "segments": [...], "removed": [...]}``."""
    lines, ids, malformed = [], [], []
    parents, values, removed = [], [], []
    for pos, (line, obj) in enumerate(objects):
        lines.append(line)
        problem, cookie = None, None
        if isinstance(obj, str):
            problem = obj
        elif not isinstance(obj, dict):
            problem = f"expected an object with {id_key!r} and 'segments'"
        else:
            cookie = obj.get(id_key)
            if isinstance(cookie, int) and not isinstance(cookie, bool):
                cookie = str(cookie)
            if cookie is not None and not isinstance(cookie, str):
                problem = f"{id_key!r} must be text"
                cookie = None
            try:
                adds = _as_ids(obj.get("segments"), "'segments'")
                removes = _as_ids(obj.get("removed"), "'removed'")
            except ValueError as exc:
                problem, adds, removes = str(exc), [], []
            for seg in adds:
                parents.append(pos), values.append(seg), removed.append(False)
            for seg in removes:
                parents.append(pos), values.append(seg), removed.append(True)
        ids.append(cookie)
        malformed.append(problem)
    return build_chunk(pa.array(lines, pa.int64()), pa.array(ids, pa.string()), malformed,
                       pa.array(parents, pa.int64()), pa.array(values, pa.string()),
                       pa.array(removed, pa.bool_()))


# -- files ---------------------------------------------------------------------------------------
def detect_format(path: Path, given: str | None) -> str:
    """``--format``, else from the name: .csv → csv, .jsonl/.ndjson/.json → jsonl, else aam."""
    if given:
        if given not in FORMATS:
            raise FeedError(f"unknown feed format {given!r}; use one of {', '.join(FORMATS)}")
        return given
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}.get(last, "aam")


def is_gzip(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"\x1f\x8b"
    except OSError as exc:
        raise FeedError(f"cannot open {path}: {exc.strerror or exc}") from None


BLOCK_BYTES = 4 << 20


def _lines(body: bytes) -> pa.Array:
    """The lines of a block of bytes (no trailing newline), split by Arrow, not by Python."""
    try:
        text = pa.array([body], pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:   # not UTF-8: marked with U+FFFD, and such lines are rejected
        text = pa.array([body.decode("utf-8", errors="replace")], pa.string())
    return pc.utf8_rtrim(pc.list_flatten(pc.split_pattern(text, "\n")), characters="\r")


def _line_blocks(path: Path, chunk_lines: int) -> Iterator[tuple[pa.Array, pa.Array]]:
    """(line numbers, lines) of the non-blank lines, read in blocks of a few megabytes and
    cut into pieces of at most ``chunk_lines``."""
    opener = gzip.open if is_gzip(path) else open
    first, rest = 1, b""
    with opener(path, "rb") as fh:
        while True:
            try:
                data = fh.read(BLOCK_BYTES)
            except (OSError, EOFError) as exc:     # a truncated or corrupt gzip file
                raise FeedError(f"{path.name}: cannot read on after line {first}: {exc}") \
                    from None
            if data:
                data, cut = rest + data, (rest + data).rfind(b"\n")
                if cut < 0:
                    rest = data
                    continue
                body, rest = data[:cut], data[cut + 1:]
            elif rest:
                body, rest = rest, b""
            else:
                return
            lines = _lines(body)
            numbers = pa.array(np.arange(first, first + len(lines), dtype=np.int64))
            first += len(lines)
            keep = pc.not_equal(pc.utf8_trim_whitespace(lines), "")
            lines, numbers = pc.filter(lines, keep), pc.filter(numbers, keep)
            for start in range(0, len(lines), chunk_lines):
                yield numbers[start:start + chunk_lines], lines[start:start + chunk_lines]


def read_feed(path: Path, fmt: str | None = None, chunk_lines: int = CHUNK_LINES
              ) -> Iterator[FeedChunk]:
    """The feed in ``path`` chunk by chunk; ``fmt`` from :data:`FORMATS` or from the name."""
    fmt = detect_format(path, fmt)
    if not path.is_file():
        raise FeedError(f"no feed file at {path}")
    if fmt == "csv":
        return _csv_chunks(path, chunk_lines)
    blocks = _line_blocks(path, chunk_lines)
    if fmt == "jsonl":
        return _jsonl_chunks(blocks)
    return (aam_chunk(numbers, lines) for numbers, lines in blocks)


def aam_chunk(numbers: pa.Array, text: pa.Array) -> FeedChunk:
    """One chunk of Audience Manager lines, ``<user id>\\t<trait>,<trait>…``."""
    has_tab = pc.match_substring(text, "\t")
    # a tab appended to every line gives each two parts; literal splits are much faster than regex
    parts = pc.split_pattern(pc.binary_join_element_wise(text, "\t", ""), "\t", max_splits=1)
    ids = pc.list_element(parts, 0)
    traits = pc.replace_substring(pc.if_else(has_tab, pc.list_element(parts, 1), ""), "\t", ",")
    bad_text = pc.match_substring(text, "\ufffd").to_pylist()
    malformed = [None if tab else "no tab between the user id and its traits"
                 for tab in has_tab.to_pylist()]
    malformed = [m or ("not valid UTF-8" if bad else None) for m, bad in zip(malformed, bad_text)]
    split = pc.split_pattern(traits, ",")
    parent = pc.list_parent_indices(split)
    raw = pc.utf8_trim_whitespace(pc.list_flatten(split))
    listed = pc.not_equal(raw, "")
    parent, raw = pc.filter(parent, listed), pc.filter(raw, listed)
    is_removal = pc.starts_with(raw, "d_unsid=")
    value = pc.if_else(is_removal, pc.utf8_slice_codeunits(raw, 8),
                       pc.if_else(pc.starts_with(raw, "d_sid="), pc.utf8_slice_codeunits(raw, 6),
                                  raw))
    return build_chunk(numbers, ids, malformed, parent, value, is_removal)


def _jsonl_chunks(blocks: Iterator[tuple[pa.Array, pa.Array]]) -> Iterator[FeedChunk]:
    def decode(line: str) -> Any:
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return f"not valid JSON: {exc}"

    for numbers, lines in blocks:
        yield chunk_from_objects(zip(numbers.to_pylist(), map(decode, lines.to_pylist())))


def _csv_chunks(path: Path, chunk_lines: int) -> Iterator[FeedChunk]:
    raw = pa.OSFile(str(path), "rb")
    invalid: list[tuple[int | None, str]] = []

    def on_invalid(row) -> str:
        invalid.append((row.number, f"expected {row.expected_columns} columns, found "
                                    f"{row.actual_columns}"))
        return "skip"

    try:
        reader = pa_csv.open_csv(
            pa.CompressedInputStream(raw, "gzip") if is_gzip(path) else raw,
            read_options=pa_csv.ReadOptions(block_size=8 << 20, use_threads=False),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(column_types={
                "cookie_id": pa.string(), "segments": pa.string(), "removed": pa.string()}))
        missing = [c for c in ("cookie_id", "segments") if c not in reader.schema.names]
        if missing:
            raise FeedError(f"{path.name}: the CSV header needs the columns cookie_id and "
                            f"segments (and optionally removed); missing {', '.join(missing)}")
        line = 1  # the header
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            bad, invalid[:] = list(invalid), []
            skipped = {n for n, _ in bad if n is not None}
            numbers = np.arange(line + 1, line + 1 + batch.num_rows + len(skipped))
            if skipped:   # the parser left the bad rows out: number the others around them
                numbers = numbers[~np.isin(numbers, list(skipped))][:batch.num_rows]
            line = max(int(numbers[-1]) if len(numbers) else line, *skipped, line + len(bad))
            chunk = _csv_chunk(batch, pa.array(numbers[:batch.num_rows]),
                               "removed" in reader.schema.names)
            chunk.lines, chunk.rejected = chunk.lines + len(bad), chunk.rejected + len(bad)
            if bad:
                chunk.reasons["malformed"] = chunk.reasons.get("malformed", 0) + len(bad)
                chunk.rejections += [Rejection(number or line, "malformed", message)
                                     for number, message in bad[:KEEP_REJECTIONS]]
            yield chunk
    except (pa.ArrowInvalid, OSError) as exc:
        raise FeedError(f"{path.name}: not a readable CSV file: {exc}") from None
    finally:
        raw.close()


def _csv_chunk(batch: pa.RecordBatch, numbers: pa.Array, has_removed: bool) -> FeedChunk:
    def split(column: pa.Array) -> tuple[pa.Array, pa.Array]:
        lists = pc.split_pattern(pc.fill_null(column, ""), ",")
        values = pc.utf8_trim_whitespace(pc.list_flatten(lists))
        parent = pc.list_parent_indices(lists)
        keep = pc.not_equal(values, "")
        return pc.filter(parent, keep), pc.filter(values, keep)

    add_parent, add_value = split(batch.column("segments"))
    parents, values = [add_parent], [add_value]
    removed = [pa.array([False] * len(add_value), pa.bool_())]
    if has_removed:
        rem_parent, rem_value = split(batch.column("removed"))
        parents.append(rem_parent), values.append(rem_value)
        removed.append(pa.array([True] * len(rem_value), pa.bool_()))
    return build_chunk(numbers, batch.column("cookie_id"), [None] * batch.num_rows,
                       pa.concat_arrays(parents), pa.concat_arrays(values),
                       pa.concat_arrays(removed))
