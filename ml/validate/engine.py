"""Validate one CSV file against the compiled suite, streaming: every row is decided, and memory
stays flat however large the file is.

Three passes, the last two only when needed:
  1. prescan (bytes): size, line count, UTF-8 validity, NUL bytes          always, ~disk speed
  2. Arrow's streaming CSV reader, a record batch at a time: every check on  when the header is right
     every row (vectorised); accepted rows appended to the accepted file;
     reasons of failing rows spilled to a temporary Arrow IPC file
  3. Python's csv module, record by record: the quarantine file, with the   only if a row is quarantined
     physical line number of each row (header = 1), malformed rows (wrong
     field count) and, for a rejected file, every row with the file's reason

Pass 3 also re-counts the records Arrow parsed: if the two parsers ever disagree, the file fails
with an internal error instead of a row going unaccounted. Rows in = accepted + quarantined, always.
"""

from __future__ import annotations

import codecs
import csv
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

from ml import features as F
from ml.schema_check import DataError
from ml.validate.suite import Check, expected_columns, fails, nonnull_denominator

BLOCK_BYTES = 8 << 20  # Arrow reads and checks this much CSV at a time
META_COLUMNS = ["_source_file", "_row_number", "_field", "_rule", "_reason"]
_NEEDS_QUOTES = r'[",\r\n]'
_NULL = pa.scalar(None, pa.string())


class FileRejected(DataError):
    """A whole file failed validation (structure, encoding, a file-level rule, too many bad rows).

    Like DataError its message names the file, the row (rows count as in the file, header = 1),
    the field and the rule."""


# ------------------------------------------------------------------------------- pass 1


@dataclass
class Prescan:
    size: int
    lines: int  # newline characters: an upper bound of the records
    encoding_error: str | None
    utf8: bool  # False: read as Latin-1 to quarantine the rows


def prescan(path: Path) -> Prescan:
    size, lines, error, offset, pending = 0, 0, None, 0, b""
    nul = False
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK_BYTES):
            size += len(block)
            lines += block.count(b"\n")
            nul = nul or b"\x00" in block
            if error is None:
                data = pending + block
                try:
                    _, used = codecs.utf_8_decode(data, "strict", False)
                except UnicodeDecodeError as exc:
                    error = f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {offset + exc.start}"
                else:
                    offset += used
                    pending = data[used:]
    if error is None and pending:
        error = f"not valid UTF-8: truncated character at offset {offset}"
    utf8 = error is None
    if error is None and nul:
        error = "binary content (NUL bytes)"
    return Prescan(size, lines, error, utf8)


# ------------------------------------------------------------------------------- pass 2


def _text(column) -> pa.Array:
    """Trimmed strings; empty → NULL (what the suite calls a missing value)."""
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(trimmed, ""), _NULL, trimmed)


def csv_bytes(columns: list) -> bytes:
    """Rows of string columns as CSV lines, quoting only the values that need it."""
    table = pa.table({str(i): column for i, column in enumerate(columns)})
    sink = pa.BufferOutputStream()
    try:  # Arrow's writer, unquoted: refuses (fast) when a value holds a comma, quote or newline
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        return sink.getvalue().to_pybytes()
    except pa.ArrowInvalid:
        pass
    cells = []
    for column in columns:
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
        cells.append(pc.if_else(pc.match_substring_regex(column, _NEEDS_QUOTES), quoted, column))
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*cells, ","), "", "\n")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
    return bytes(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])


@dataclass
class Sample:
    """The first rows of the file as the engine saw them, and its counts on them (for GX)."""

    text: dict = field(default_factory=dict)
    typed: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)  # check index → unexpected rows in the sample


@dataclass
class Streamed:
    rows: int = 0  # records Arrow parsed with the right number of fields
    malformed: int = 0
    bad: int = 0  # of `rows`, those failing a row-level check
    first_bad: tuple | None = None  # (index among `rows`, field, rule, reason)
    file_counts: dict = field(default_factory=dict)  # check index → [unexpected, denominator]
    nulls: dict = field(default_factory=dict)  # column → NULL values
    failed_rules: set = field(default_factory=set)  # (field, rule) of every row-level failure seen
    reasons_path: Path | None = None
    sample: Sample = field(default_factory=Sample)


def _typed(text: dict, schema: F.Schema, syntax_ok: dict) -> dict:
    """Numbers parsed from the values that passed their type rule (the rest are NULL), as float64:
    what the typed suite's set and range rules read."""
    out = {}
    for name, type_, _ in expected_columns(schema):
        if type_ == "string":
            out[name] = text[name]
        else:
            out[name] = pc.cast(F.parse_numbers(text[name], type_, ok=syntax_ok.get(name)), pa.float64())
    return out


def stream(path: Path, header: list[str], schema: F.Schema, checks: list[Check], *, bad_budget: int,
           accepted_tmp: Path | None, spill_dir: Path, sample_rows: int) -> Streamed:
    """Pass 2. `bad_budget`: once more rows than this failed, the file is rejected whatever follows,
    so reasons and accepted rows are no longer written (only counted)."""
    out = Streamed()
    out.file_counts = {i: [0, 0] for i, c in enumerate(checks) if c.level == "file" and c.kind.startswith("ExpectColumn")}

    def count_malformed(row) -> str:
        out.malformed += 1
        out.failed_rules.add(("", "malformed_row"))
        return "skip"

    reader = pacsv.open_csv(
        str(path),
        read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=count_malformed),
        convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                             strings_can_be_null=False))
    accepted = open(accepted_tmp, "wb") if accepted_tmp is not None else None
    spill = None
    try:
        if accepted is not None:
            accepted.write(csv_bytes([pa.array([name]) for name in schema.columns]))
        for batch in reader:
            n = batch.num_rows
            if n == 0:
                continue
            text = {name: _text(batch.column(name)) for name in schema.columns}
            for name, column in text.items():
                out.nulls[name] = out.nulls.get(name, 0) + column.null_count
            typed, syntax_ok = None, {}
            bad = np.zeros(n, dtype=bool)
            failed = []
            for i, check in enumerate(checks):
                if not check.kind.startswith("ExpectColumn"):
                    continue
                if check.stage == "typed" and typed is None:  # raw checks come first in suite order
                    typed = _typed(text, schema, syntax_ok)
                column = (text if check.stage == "raw" else typed)[check.field]
                mask = fails(check, column)
                if check.rule.startswith("type_"):
                    syntax_ok[check.field] = pa.array(~mask & pc.is_valid(column).to_numpy(zero_copy_only=False))
                if out.rows < sample_rows:
                    out.sample.counts[i] = out.sample.counts.get(i, 0) + int(mask[:sample_rows - out.rows].sum())
                if check.level == "file":
                    counts = out.file_counts[i]
                    counts[0] += int(mask.sum())
                    counts[1] += n - column.null_count if nonnull_denominator(check) else n
                elif mask.any():
                    failed.append((check, mask))
                    out.failed_rules.add((check.field, check.rule))
                    bad |= mask
            if out.rows < sample_rows:  # the rows GX will see (the typed frame only for them)
                typed = typed if typed is not None else _typed(text, schema, syntax_ok)
                k = sample_rows - out.rows
                out.sample.text = {name: col.slice(0, k) for name, col in text.items()}
                out.sample.typed = {name: col.slice(0, k) for name, col in typed.items()}
            n_bad = int(bad.sum())
            if n_bad and out.bad <= bad_budget:
                spill = spill or _open_spill(spill_dir)
                first = _spill_reasons(spill, out.rows, bad, failed, text)
                out.first_bad = out.first_bad or first
            out.bad += n_bad
            if accepted is not None and out.bad <= bad_budget:
                good = pa.array(~bad)
                accepted.write(csv_bytes([pc.filter(batch.column(name), good) for name in schema.columns]))
            out.rows += n
    finally:
        if accepted is not None:
            accepted.close()
        if spill is not None:
            spill[1].close()
            spill[0].close()
            out.reasons_path = spill[2]
    return out


_SPILL_SCHEMA = pa.schema([("index", pa.int64()), ("field", pa.string()), ("rule", pa.string()),
                           ("reason", pa.string())])


def _open_spill(spill_dir: Path):
    path = spill_dir / f".reasons-{os.getpid()}-{id(spill_dir)}.arrow"
    sink = pa.OSFile(str(path), "wb")
    return sink, ipc.new_stream(sink, _SPILL_SCHEMA), path


def _fmt(value) -> str:
    return "NULL" if value is None else repr(value)


def _spill_reasons(spill, offset: int, bad: np.ndarray, failed: list, text: dict) -> tuple:
    """Write (row index, first field, first rule, all reasons) of each failing row of a batch."""
    rows = np.flatnonzero(bad)
    position = {int(r): k for k, r in enumerate(rows)}
    first = [None] * len(rows)
    reasons = [[] for _ in rows]
    for check, mask in failed:  # suite order: the first failing check names the row's field and rule
        where = np.flatnonzero(mask)
        values = text[check.field].take(pa.array(where)).to_pylist()
        for r, value in zip(where.tolist(), values, strict=True):
            k = position[r]
            first[k] = first[k] or (check.field, check.rule)
            reasons[k].append(f"{check.field}: {check.rule} (value {_fmt(value)})")
    batch = pa.record_batch([pa.array(rows + offset, pa.int64()), pa.array([f for f, _ in first]),
                             pa.array([r for _, r in first]), pa.array(["; ".join(r) for r in reasons])],
                            schema=_SPILL_SCHEMA)
    spill[1].write_batch(batch)
    return int(rows[0]) + offset, first[0][0], first[0][1], reasons[0][0]


# ------------------------------------------------------------------------------- pass 3


def _records(path: Path, utf8: bool):
    """(physical line number of the record's last line, fields) of every non-blank record after
    the header. A file that is not UTF-8 is read as Latin-1 (never fails) so its rows can still be
    quarantined; NUL bytes are dropped."""
    csv.field_size_limit(sys.maxsize)  # one unclosed quote can make the rest of a file one field
    with open(path, newline="", encoding="utf-8-sig" if utf8 else "latin-1") as handle:
        reader = csv.reader(line.replace("\x00", "") for line in handle)
        next(reader, None)
        for record in reader:
            if record:
                yield reader.line_num, record


def _spilled(reasons_path: Path | None):
    if reasons_path is None:
        return
    with pa.OSFile(str(reasons_path), "rb") as source:
        for batch in ipc.open_stream(source):
            yield from zip(*(batch.column(i).to_pylist() for i in range(4)), strict=True)


def first_bad_line(path: Path, width: int, first_bad_index: int | None) -> tuple[int, bool]:
    """(line, malformed?) of the first failing record: the first malformed one or the row-level
    failure at `first_bad_index` (an index among well-formed records), whichever comes first."""
    index = 0
    for line, record in _records(path, True):
        if len(record) != width:
            return line, True
        if index == first_bad_index:
            return line, False
        index += 1
    raise RuntimeError(f"{path}: the failing row {first_bad_index} was not found on re-reading")


def write_quarantine(path: Path, header: list[str], out_path: Path, *, utf8: bool,
                     rejected: FileRejected | None, reasons_path: Path | None,
                     expected_rows: int | None) -> tuple[int, int]:
    """Pass 3: quarantine rows (every row if `rejected`), each with its line number and reason.
    Returns (records, quarantined). `expected_rows`: well-formed records Arrow counted (checked)."""
    width = max(len(header), 1)
    spilled = _spilled(None if rejected is not None else reasons_path)
    pending = next(spilled, None)
    records = quarantined = index = 0
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", newline="", encoding="utf-8", errors="replace") as handle:
        writer = csv.writer(handle)
        writer.writerow(META_COLUMNS + header)
        for line, record in _records(path, utf8):
            records += 1
            row = None
            if rejected is not None:
                row = [rejected.field or "", rejected.rule, str(rejected)]
            elif len(record) != width:
                row = ["", "malformed_row", f"row has {len(record)} fields, header has {width}"]
            if len(record) == width:
                if row is None and pending is not None and pending[0] == index:
                    row = list(pending[1:])
                    pending = next(spilled, None)
                index += 1
            if row is not None:
                writer.writerow([str(path), line, *row, *(record + [""] * width)[:width]])
                quarantined += 1
    if expected_rows is not None and index != expected_rows:
        tmp.unlink()
        raise RuntimeError(f"{path}: Arrow read {expected_rows} well-formed rows, Python's csv {index}: "
                           "the two CSV parsers disagree on this file, so no row is decided")
    if quarantined:
        os.replace(tmp, out_path)
    else:
        tmp.unlink()
    return records, quarantined
