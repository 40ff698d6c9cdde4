"""Validate landed CSV files against the feature schema with a Great Expectations 1.x suite.

The suite is generated from `include/schemas/<name>.yaml` (no hand-kept copy):

    raw suite (every value read as a string, so "n/a" in a number is a row failure, not a crash)
      ExpectTableColumnsToMatchSet    expected columns present, none unexpected      file-level
      ExpectTableRowCountToBeBetween  schema `row_count`                             file-level
      ExpectColumnValuesToNotBeNull   presence (`mostly` = presence)                 file-level;
                                      for presence 1.0 each null row is a row failure
      ExpectColumnValuesToMatchRegex  type (int / float syntax) and `pattern`        row-level
    typed suite (numbers coerced per schema)
      ExpectColumnValuesToBeInSet     closed vocabulary: row-level; open vocabulary:
                                      `mostly` = 1 - max_oov_rate, OOV rate reported file-level
      ExpectColumnValuesToBeBetween   numeric `range`                                row-level

Row failures go to `quarantine/` (one CSV per source file: `_source_file, _row_number, _field,
_rule, _reason` + the file's own columns); accepted rows go to `accepted/` as CSV with the
schema's columns. Rows in = rows accepted + rows quarantined, for every file, always: a file
rejected as a whole (a file-level rule failed, or more bad rows than `max_bad_row_fraction`)
has all its rows quarantined with the file-level reason. Raw files are only read.

    python -m ml.validate --schema include/schemas/traffic.yaml --data landing/dt=2024-03-04 \
        [--quarantine /tmp/q] [--accepted /tmp/a] [--max-bad-row-fraction 0.05]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ml import features as F
from ml.schema_check import DataError
from ml.storage import to_path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

DEFAULT_LIMITS = {
    "max_bad_row_fraction": 0.05,  # more bad rows than this → the whole file is rejected
    "max_oov_rate": 0.2,  # open vocabularies: share of unseen values tolerated
}
META_COLUMNS = ["_source_file", "_row_number", "_field", "_rule", "_reason"]
NULLS = ("",)
INT_RE = r"^[+-]?[0-9]+$"
FLOAT_RE = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


class FileRejected(DataError):
    """A whole file failed validation (structure, encoding, a file-level rule, too many bad rows).

    Like DataError its message names the file, the row (rows count as in the file, header = 1),
    the field and the rule."""


@dataclass
class _Parsed:
    header: list[str]
    rows: list[list[str]]  # padded/truncated to len(header)
    row_numbers: list[int]  # line numbers as in the file (header = 1)
    malformed: dict[int, str] = field(default_factory=dict)  # index → reason
    encoding_error: str | None = None


# ------------------------------------------------------------------------------ reading


def _read(path: Path) -> _Parsed:
    """Every record as strings. Never raises for bad content: problems are recorded."""
    data = path.read_bytes()
    encoding_error = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        encoding_error = f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        text = data.decode("latin-1")  # never fails: keeps the rows countable and quarantinable
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        encoding_error = encoding_error or "binary content (NUL bytes)"
        text = text.replace("\x00", "")
    reader = csv.reader(io.StringIO(text, newline=""))
    parsed = _Parsed(header=[], rows=[], row_numbers=[], encoding_error=encoding_error)
    try:
        header = next(reader, None)
        parsed.header = [h.strip() for h in header] if header else []
        width = len(parsed.header)
        for record in reader:
            if not record:  # blank line
                continue
            line = reader.line_num
            if len(record) != width:
                parsed.malformed[len(parsed.rows)] = f"row has {len(record)} fields, header has {width}"
                record = (record + [""] * width)[:width]
            parsed.rows.append(record)
            parsed.row_numbers.append(line)
    except csv.Error as exc:  # e.g. a quote never closed: the rest of the file is one field
        parsed.encoding_error = parsed.encoding_error or f"unparseable CSV at line {reader.line_num}: {exc}"
    return parsed


# ------------------------------------------------------------------------------- the suite


def _columns(schema: F.Schema) -> list[tuple[str, str, F.Feature | None]]:
    """(name, type, feature or None for the label) of every expected column."""
    out = [(f.name, f.type, f) for f in schema.features]
    if schema.label:
        out.append((schema.label, "int", None))
    return out


def build_suites(schema: F.Schema, limits: dict) -> tuple:
    """(raw suite, typed suite, rule table) generated from the schema.

    The rule table maps each expectation (by position in its suite) to (field, rule, level)."""
    import great_expectations as gx

    gxe = gx.expectations
    raw, typed = [], []
    lo, hi = schema.row_count
    raw.append((gxe.ExpectTableColumnsToMatchSet(column_set=schema.columns, exact_match=True),
                (None, "columns", "file")))
    raw.append((gxe.ExpectTableRowCountToBeBetween(min_value=int(lo), max_value=int(hi)),
                (None, "row_count", "file")))
    for name, type_, feat in _columns(schema):
        presence = feat.presence if feat is not None else 1.0
        if presence >= 1.0:
            raw.append((gxe.ExpectColumnValuesToNotBeNull(column=name), (name, "not_null", "row")))
        elif presence > 0:
            raw.append((gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=presence),
                        (name, "presence", "file")))
        if type_ in ("int", "float"):
            raw.append((gxe.ExpectColumnValuesToMatchRegex(column=name, regex=INT_RE if type_ == "int" else FLOAT_RE),
                        (name, f"type_{type_}", "row")))
        if feat is not None and feat.pattern:
            raw.append((gxe.ExpectColumnValuesToMatchRegex(column=name, regex=feat.pattern),
                        (name, "pattern", "row")))
        values = feat.vocabulary if feat is not None else schema.label_values
        if values:
            values = [v if type_ == "string" else float(v) for v in values]
            if feat is not None and feat.open_vocabulary:
                typed.append((gxe.ExpectColumnValuesToBeInSet(column=name, value_set=values,
                                                              mostly=1.0 - float(limits["max_oov_rate"])),
                              (name, "oov_rate", "file")))
            else:
                typed.append((gxe.ExpectColumnValuesToBeInSet(column=name, value_set=values),
                              (name, "vocabulary", "row")))
        if feat is not None and feat.range is not None:
            typed.append((gxe.ExpectColumnValuesToBeBetween(column=name, min_value=float(feat.range[0]),
                                                            max_value=float(feat.range[1])),
                          (name, "range", "row")))
    return raw, typed


class _GX:
    """One ephemeral GX context per validate_files call; suites are built once and reused."""

    def __init__(self, schema: F.Schema, limits: dict):
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        try:
            self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # pragma: no cover - cosmetic only
            pass
        raw, typed = build_suites(schema, limits)
        self.suites = {}
        source = self.context.data_sources.add_pandas("prodml_landing")
        self.batch_defs = {}
        for kind, items in (("raw", raw), ("typed", typed)):
            # The rule travels in each expectation's `meta`; the suite is stored once, whole.
            for expectation, (field_, rule, level) in items:
                expectation.meta = {"field": field_, "rule": rule, "level": level}
            suite = gx.ExpectationSuite(name=f"{schema.name}_{kind}", expectations=[e for e, _ in items])
            self.suites[kind] = self.context.suites.add(suite)
            asset = source.add_dataframe_asset(kind)
            self.batch_defs[kind] = asset.add_batch_definition_whole_dataframe(kind)

    def run(self, kind: str, frame) -> list[tuple[tuple, dict, bool]]:
        import warnings

        batch = self.batch_defs[kind].get_batch(batch_parameters={"dataframe": frame})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. pandas' "pattern has match groups"
            result = self._validate(batch, kind)
        out = []
        for r in result.results:
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise RuntimeError(f"GX failed on {r.expectation_config.type}: "
                                   f"{r.exception_info.get('exception_message')}")
            meta = r.expectation_config.meta or {}
            out.append(((meta.get("field"), meta.get("rule"), meta.get("level")), r.result or {}, bool(r.success)))
        return out

    def _validate(self, batch, kind: str):
        return batch.validate(self.suites[kind], result_format={
            "result_format": "COMPLETE", "unexpected_index_column_names": [],
            "return_unexpected_index_query": False})


# ------------------------------------------------------------------------------ one file


def _raw_frame(parsed: _Parsed):
    import pandas as pd

    columns = {}
    for i, name in enumerate(parsed.header):
        if name in columns:  # duplicate header: the column-set rule reports it; keep the first
            continue
        values = [r[i].strip() for r in parsed.rows]
        columns[name] = pd.array([None if v in NULLS else v for v in values], dtype=object)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(parsed.rows)))


def _typed_frame(raw, schema: F.Schema):
    import pandas as pd

    out = {}
    for name, type_, _ in _columns(schema):
        column = raw[name]
        if type_ == "string":
            out[name] = column
        else:
            out[name] = pd.to_numeric(column, errors="coerce").astype("float64")
    return pd.DataFrame(out, index=raw.index)


def _fmt(value) -> str:
    return "NULL" if value is None or (isinstance(value, float) and value != value) else repr(value)


def _file_reason(rule: str, field_: str | None, result: dict, schema: F.Schema, header: list[str]) -> str:
    if rule == "columns":
        missing = [c for c in schema.columns if c not in header]
        unexpected = [c for c in header if c not in schema.columns]
        dupes = sorted({c for c in header if header.count(c) > 1})
        parts = []
        if missing:
            parts.append(f"expected column missing: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected column: {', '.join(unexpected)}")
        if dupes:
            parts.append(f"duplicate column: {', '.join(dupes)}")
        return "; ".join(parts) or f"columns do not match the schema (observed {header})"
    if rule == "row_count":
        return f"row count {result.get('observed_value')} outside {list(schema.row_count)}"
    if rule == "presence":
        share = 1 - (result.get("unexpected_percent") or 0) / 100
        return f"only {share:.1%} of rows have a value; the schema wants >= {schema.feature(field_).presence:.0%}"
    if rule == "oov_rate":
        return f"out-of-vocabulary rate {result.get('unexpected_percent', 0) / 100:.1%} above the limit"
    return rule


def _first_column_problem(rule_field: tuple, schema: F.Schema, header: list[str]) -> str | None:
    missing = [c for c in schema.columns if c not in header]
    if missing:
        return missing[0]
    unexpected = [c for c in header if c not in schema.columns]
    return unexpected[0] if unexpected else None


def _validate_one(path: Path, schema: F.Schema, gxr: _GX, limits: dict) -> dict:
    """Validate one file. Returns {report, accepted: [rows], quarantined: [rows]}, never raises
    for bad content; the report's `rejected` is a FileRejected or None."""
    file = str(path)
    parsed = _read(path)
    n = len(parsed.rows)
    row_failures: dict[int, list[tuple[str, str, str]]] = {}
    for i, reason in parsed.malformed.items():
        row_failures.setdefault(i, []).append(("", "malformed_row", reason))
    file_rule: FileRejected | None = None
    stats = {"oov_rate": {}, "null_fraction": {}}

    if parsed.encoding_error:
        file_rule = FileRejected(file, "encoding", detail=parsed.encoding_error)
    elif not parsed.header:
        file_rule = FileRejected(file, "empty file (no header)", row=1)
    elif n == 0:
        file_rule = FileRejected(file, "file has a header but no rows", row=1)
    else:
        raw = _raw_frame(parsed)
        results = gxr.run("raw", raw)
        columns_ok = all(ok for (f_, rule, _), _, ok in results if rule == "columns")
        if columns_ok:
            results += gxr.run("typed", _typed_frame(raw, schema))
        rank = {"columns": 0, "row_count": 1}
        results.sort(key=lambda item: rank.get(item[0][1], 2))
        for (field_, rule, level), result, ok in results:
            if rule == "oov_rate":
                stats["oov_rate"][field_] = round((result.get("unexpected_percent") or 0.0) / 100, 6)
            if rule in ("presence", "not_null"):
                stats["null_fraction"][field_] = round((result.get("unexpected_percent") or 0.0) / 100, 6)
            if ok:
                continue
            if level == "file":
                if file_rule is None:
                    reason = _file_reason(rule, field_, result, schema, parsed.header)
                    if rule == "columns":
                        field_ = _first_column_problem(field_, schema, parsed.header)
                        file_rule = FileRejected(file, "expected columns", field=field_, row=1, detail=reason)
                    elif rule == "row_count":
                        file_rule = FileRejected(file, "row count", detail=reason)
                    else:
                        file_rule = FileRejected(file, rule, field=field_, detail=reason)
                continue
            indexes = result.get("unexpected_index_list") or []
            values = result.get("unexpected_list") or [None] * len(indexes)
            for i, value in zip(indexes, values, strict=False):
                i = int(i)
                if i in parsed.malformed and rule == "not_null":
                    continue
                row_failures.setdefault(i, []).append(
                    (field_, rule, f"{field_}: {rule} (value {_fmt(value)})"))

    bad = len(row_failures)
    limit = float(limits["max_bad_row_fraction"])
    if file_rule is None and n and bad / n > limit:
        first = min(row_failures)
        f_, rule, reason = row_failures[first][0]
        file_rule = FileRejected(file, f"{bad} of {n} rows ({bad / n:.1%}) failed validation, "
                                 f"limit {limit:.1%}; first: rule {rule}", field=f_ or None,
                                 row=parsed.row_numbers[first], detail=reason)

    accepted, quarantined = [], []
    for i, record in enumerate(parsed.rows):
        line = parsed.row_numbers[i]
        if file_rule is not None:
            quarantined.append([file, line, file_rule.field or "", file_rule.rule, str(file_rule), *record])
        elif i in row_failures:
            f_, rule, _ = row_failures[i][0]
            reason = "; ".join(r for _, _, r in row_failures[i])
            quarantined.append([file, line, f_, rule, reason, *record])
        else:
            accepted.append(record)
    report = {
        "file": file,
        "status": "rejected" if file_rule is not None else "accepted",
        "rows_in": n,
        "rows_accepted": len(accepted),
        "rows_quarantined": len(quarantined),
        "bad_rows": bad,
        "message": str(file_rule) if file_rule is not None else "",
        "rule": file_rule.rule if file_rule is not None else None,
        "field": file_rule.field if file_rule is not None else None,
        "row": file_rule.row if file_rule is not None else None,
        "rules_failed": sorted({r for fails in row_failures.values() for _, r, _ in fails}),
        "fields_failed": sorted({f for fails in row_failures.values() for f, _, _ in fails if f}),
        **stats,
    }
    assert report["rows_in"] == report["rows_accepted"] + report["rows_quarantined"]
    return {"report": report, "accepted": accepted, "quarantined": quarantined,
            "header": parsed.header, "rejected": file_rule}


# ----------------------------------------------------------------------------- public API


def to_uri(path: Path) -> str:
    """file:// URI without percent-encoding (ml.storage.to_path does not decode '=' in dt=...)."""
    return "file://" + str(Path(path).resolve())


def _out_name(path: Path) -> str:
    """landing/dt=2024-03-04/part-00000.csv → dt=2024-03-04__part-00000.csv"""
    stem = f"{path.parent.name}__{path.name}" if path.parent.name else path.name
    return re.sub(r"[^A-Za-z0-9=._-]", "_", stem if stem.endswith(".csv") else stem + ".csv")


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8", errors="replace") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def expand(data) -> list[Path]:
    """A file, a folder (its *.csv, recursively, skipping hidden/underscore files) or a list of them."""
    items = data if isinstance(data, (list, tuple)) else [data]
    out = []
    for item in items:
        path = to_path(item)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*.csv") if not p.name.startswith((".", "_")))
        else:
            out.append(path)
    return out


def validate_files(files, schema_path, quarantine_uri, limits: dict | None = None,
                   accepted_uri=None) -> dict:
    """Validate `files` (paths/URIs, or folders) against the schema; never modifies them.

    Writes quarantined rows to `quarantine_uri/<name>.csv` and, if `accepted_uri` is given,
    accepted rows (schema column order) to `accepted_uri/<name>.csv`. Returns
    {ok, files: [per-file report], rows_in, rows_accepted, rows_quarantined, accepted: [uris],
    quarantine: [uris], rejected: [messages]}. Does not raise for bad data: see `check`."""
    limits = {**DEFAULT_LIMITS, **(limits or {})}
    schema = F.load_schema(str(schema_path))
    paths = expand(files)
    if not paths:
        raise FileRejected(str(files), "no files to validate")
    gxr = _GX(schema, limits)
    qdir = to_path(quarantine_uri)
    adir = to_path(accepted_uri) if accepted_uri else None
    summary = {"ok": True, "files": [], "rows_in": 0, "rows_accepted": 0, "rows_quarantined": 0,
               "accepted": [], "quarantine": [], "rejected": [], "schema": schema.path,
               "limits": limits}
    for path in paths:
        if not path.is_file():
            result = {"report": {"file": str(path), "status": "rejected", "rows_in": 0, "rows_accepted": 0,
                                 "rows_quarantined": 0, "bad_rows": 0, "rule": "missing",
                                 "message": f"{path}: file does not exist", "field": None, "row": None},
                      "accepted": [], "quarantined": [], "header": [], "rejected": True}
        else:
            result = _validate_one(path, schema, gxr, limits)
        report = result["report"]
        name = _out_name(path)
        if result["quarantined"]:
            qpath = qdir / name
            _write_csv(qpath, META_COLUMNS + result["header"], result["quarantined"])
            report["quarantine_uri"] = to_uri(qpath)
            summary["quarantine"].append(report["quarantine_uri"])
        if adir is not None and report["status"] == "accepted":
            index = [result["header"].index(c) for c in schema.columns]
            apath = adir / name
            _write_csv(apath, schema.columns, [[r[i] for i in index] for r in result["accepted"]])
            report["accepted_uri"] = to_uri(apath)
            summary["accepted"].append(report["accepted_uri"])
        for key in ("rows_in", "rows_accepted", "rows_quarantined"):
            summary[key] += report[key]
        if report["status"] == "rejected":
            summary["ok"] = False
            summary["rejected"].append(report["message"])
        summary["files"].append(report)
    return summary


def check(summary: dict) -> dict:
    """Raise FileRejected (naming file, row, field and rule) if any file was rejected."""
    for report in summary["files"]:
        if report["status"] == "rejected":
            raise FileRejected(report["file"], report["rule"] or "rejected", field=report.get("field"),
                               row=report.get("row"), detail=report["message"])
    return summary


def verdict(summary: dict) -> str:
    lines = []
    for r in summary["files"]:
        head = f"{r['status'].upper():<9} {r['file']}: {r['rows_in']} rows, {r['rows_accepted']} accepted, " \
               f"{r['rows_quarantined']} quarantined"
        lines.append(head)
        if r["status"] == "rejected":
            lines.append(f"          {r['message']}")
        elif r.get("fields_failed"):
            lines.append(f"          row failures on: {', '.join(r['fields_failed'])} "
                         f"(rules: {', '.join(r['rules_failed'])})")
        for name, rate in (r.get("oov_rate") or {}).items():
            if rate:
                lines.append(f"          {name}: out-of-vocabulary rate {rate:.1%}")
    ok = "PASS" if summary["ok"] else "FAIL"
    lines.append(f"{ok}: {summary['rows_in']} rows in = {summary['rows_accepted']} accepted + "
                 f"{summary['rows_quarantined']} quarantined")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.validate", description=__doc__.split("\n")[0])
    parser.add_argument("--schema", required=True, help="schema YAML file")
    parser.add_argument("--data", required=True, action="append", help="CSV file or folder (repeatable)")
    parser.add_argument("--quarantine", default=None, help="folder for quarantined rows (default: a temp folder)")
    parser.add_argument("--accepted", default=None, help="folder for accepted rows (default: not written)")
    parser.add_argument("--max-bad-row-fraction", type=float, default=DEFAULT_LIMITS["max_bad_row_fraction"])
    parser.add_argument("--max-oov-rate", type=float, default=DEFAULT_LIMITS["max_oov_rate"])
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    args = parser.parse_args(argv)
    quarantine = args.quarantine
    if quarantine is None:
        import tempfile

        quarantine = tempfile.mkdtemp(prefix="prodml-quarantine-")
    limits = {"max_bad_row_fraction": args.max_bad_row_fraction, "max_oov_rate": args.max_oov_rate}
    try:
        summary = validate_files(args.data, args.schema, quarantine, limits, accepted_uri=args.accepted)
    except (DataError, F.SchemaError, OSError) as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str) if args.json else verdict(summary))
    if summary["quarantine"]:
        print(f"quarantined rows: {quarantine}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
