"""Validate landed CSV files against the feature schema: every row decided, on files of any size.

The suite is generated from `include/schemas/<name>.yaml` as Great Expectations 1.x expectations
(`suite.py` lists them). The expectations are compiled into vectorised Arrow checks that decide
every row of every file, streaming (`engine.py`); GX itself runs the same suite on the first rows of
each file and must count exactly what the engine counts there (`gx_report.py`), so the suite of
record and the engine cannot drift apart silently.

Row failures go to `quarantine/` (one CSV per source file: `_source_file, _row_number, _field,
_rule, _reason` + the file's own columns); accepted rows go to `accepted/` as CSV with the
schema's columns. Rows in = rows accepted + rows quarantined, for every file, always: a file
rejected as a whole (a file-level rule failed, or more bad rows than `max_bad_row_fraction`)
has all its rows quarantined with the file-level reason. Raw files are only read.

    python -m ml.validate --schema include/schemas/traffic.yaml --data landing/dt=2024-03-04 \\
        [--quarantine /tmp/q] [--accepted /tmp/a] [--report /tmp/r] [--max-bad-row-fraction 0.05] [--json]
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

from ml import features as F
from ml import storage
from ml.storage import to_path
from ml.validate.engine import META_COLUMNS, FileRejected, first_bad_line, prescan, stream, write_quarantine
from ml.validate.suite import build_suites, compile_suites

__all__ = ["DEFAULT_LIMITS", "META_COLUMNS", "FileRejected", "build_suites", "check", "expand", "main",
           "to_path", "to_uri", "validate_files", "verdict"]

DEFAULT_LIMITS = {
    "max_bad_row_fraction": 0.05,  # more bad rows than this → the whole file is rejected
    "max_oov_rate": 0.2,  # open vocabularies: share of unseen values tolerated
    "gx_sample_rows": 2000,  # rows of each file that GX itself validates (and must agree on)
}


def to_uri(path: Path) -> str:
    """file:// URI without percent-encoding (ml.storage.to_path does not decode '=' in dt=...)."""
    return "file://" + str(Path(path).resolve())


def _out_name(uri: str) -> str:
    """landing/dt=2024-03-04/part-00000.csv → dt=2024-03-04__part-00000.csv"""
    parent, _, leaf = str(uri).rstrip("/").rpartition("/")
    parent = parent.rpartition("/")[2]
    stem = f"{parent}__{leaf}" if parent and not parent.endswith(":") else leaf
    return re.sub(r"[^A-Za-z0-9=._-]", "_", stem if stem.endswith(".csv") else stem + ".csv")


def expand(data) -> list[str]:
    """A file, a folder (its *.csv, recursively, skipping hidden/underscore files) or a list of them."""
    items = data if isinstance(data, (list, tuple)) else [data]
    out = []
    for item in items:
        item = str(item)
        if storage.isdir(item):
            out += [u for u in storage.glob(storage.join(item, "**", "*.csv"))
                    if not storage.name(u).startswith((".", "_"))]
        else:
            out.append(item)
    return out


def _uri(folder_uri: str, name: str) -> str:
    """URI of an output file: folders given as bare paths answer file:// URIs, as before."""
    return to_uri(Path(folder_uri) / name) if not str(folder_uri).partition("://")[1] else storage.join(folder_uri, name)


def _column_problem(file: str, header: list[str], schema: F.Schema) -> FileRejected | None:
    missing = [c for c in schema.columns if c not in header]
    unexpected = [c for c in header if c not in schema.columns]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if not (missing or unexpected or dupes):
        return None
    parts = [f"{what}: {', '.join(names)}" for what, names in
             (("expected column missing", missing), ("unexpected column", unexpected),
              ("duplicate column", dupes)) if names]
    return FileRejected(file, "expected columns", field=(missing + unexpected + dupes)[0], row=1,
                        detail="; ".join(parts))


def _file_level(file: str, schema: F.Schema, checks: list, streamed, n: int) -> tuple[FileRejected | None, dict]:
    """Row count and the `mostly` rules (presence, open-vocabulary OOV rate), on the whole file."""
    stats = {"null_fraction": {name: round(nulls / n, 6) for name, nulls in streamed.nulls.items()} if n else {},
             "oov_rate": {}}
    lo, hi = schema.row_count
    if n == 0:
        return FileRejected(file, "file has a header but no rows", row=1), stats
    if not lo <= n <= hi:
        return FileRejected(file, "row count", detail=f"row count {n} outside [{lo}, {hi}]"), stats
    rejected = None
    for i, (unexpected, denominator) in streamed.file_counts.items():
        check = checks[i]
        share = unexpected / denominator if denominator else 0.0
        if check.rule == "oov_rate":
            stats["oov_rate"][check.field] = round(share, 6)
        if rejected is None and 1.0 - share < float(check.params["mostly"]):
            if check.rule == "presence":
                detail = f"only {1 - share:.1%} of rows have a value; the schema wants >= {check.params['mostly']:.0%}"
            else:
                detail = f"out-of-vocabulary rate {share:.1%} above the limit {1 - check.params['mostly']:.1%}"
            rejected = FileRejected(file, check.rule, field=check.field, detail=detail)
    return rejected, stats


def _validate_one(file: str, path: Path, schema: F.Schema, checks: list, gx, limits: dict, qdir: Path,
                  adir: Path | None) -> dict:
    """Validate `file` (its local copy `path`), writing into the local folders `qdir` and `adir`."""
    name = _out_name(file)
    limit = float(limits["max_bad_row_fraction"])
    scan = prescan(path)
    header = F.read_header(path) if scan.utf8 and scan.size else []
    rejected = streamed = None
    stats, gx_report = {"null_fraction": {}, "oov_rate": {}}, None
    if scan.encoding_error:
        rejected = FileRejected(file, "encoding", detail=scan.encoding_error)
    elif not header:
        rejected = FileRejected(file, "empty file (no header)", row=1)
    else:
        rejected = _column_problem(file, header, schema)
    accepted_tmp = adir / f".{name}.tmp" if adir is not None else None
    try:
        if rejected is None:
            try:
                streamed = stream(path, header, schema, checks, bad_budget=math.floor(limit * scan.lines),
                                  accepted_tmp=accepted_tmp, spill_dir=qdir,
                                  sample_rows=int(limits["gx_sample_rows"]))
            except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
                rejected = FileRejected(file, "unparseable CSV", detail=str(exc).splitlines()[0])
        n = bad = 0
        if streamed is not None:
            n = streamed.rows + streamed.malformed
            bad = streamed.bad + streamed.malformed
            rejected, stats = _file_level(file, schema, checks, streamed, n)
            if rejected is None and streamed.rows and gx is not None:
                gx_report = gx.validate(file, streamed.sample)
            if rejected is None and bad / n > limit:
                first = streamed.first_bad
                line, malformed = first_bad_line(path, len(header), first[0] if first else None)
                field_, rule, reason = ("", "malformed_row", "row has the wrong number of fields") if malformed \
                    else first[1:]
                rejected = FileRejected(file, f"{bad} of {n} rows ({bad / n:.1%}) failed validation, "
                                        f"limit {limit:.1%}; first: rule {rule}", field=field_ or None,
                                        row=line, detail=reason)
        quarantined = 0
        if scan.size and header and (rejected is not None or bad):
            records, quarantined = write_quarantine(
                path, header, qdir / name, utf8=scan.utf8, rejected=rejected,
                reasons_path=streamed.reasons_path if streamed else None,
                expected_rows=streamed.rows if streamed is not None else None)
            n = n if streamed is not None else records
        if accepted_tmp is not None and accepted_tmp.exists():
            if rejected is None:
                os.replace(accepted_tmp, adir / name)
            else:
                accepted_tmp.unlink()
    finally:
        if streamed is not None and streamed.reasons_path is not None:
            streamed.reasons_path.unlink(missing_ok=True)
        if accepted_tmp is not None:
            accepted_tmp.unlink(missing_ok=True)
    report = {
        "file": file,
        "status": "rejected" if rejected is not None else "accepted",
        "rows_in": n,
        "rows_accepted": 0 if rejected is not None else n - quarantined,
        "rows_quarantined": quarantined,
        "bad_rows": bad,
        "message": str(rejected) if rejected is not None else "",
        "rule": rejected.rule if rejected is not None else None,
        "field": rejected.field if rejected is not None else None,
        "row": rejected.row if rejected is not None else None,
        **stats,
    }
    seen = streamed.failed_rules if streamed is not None and rejected is None else set()
    report["fields_failed"] = sorted({f for f, _ in seen if f})
    report["rules_failed"] = sorted({r for _, r in seen})
    if quarantined:
        report["quarantine_name"] = name
    if rejected is None and adir is not None:
        report["accepted_name"] = name
    if rejected is None and quarantined != bad:
        raise RuntimeError(f"{file}: {bad} rows failed but {quarantined} were quarantined")
    if report["rows_in"] != report["rows_accepted"] + report["rows_quarantined"]:
        raise RuntimeError(f"{file}: rows in != accepted + quarantined ({report})")
    return {"report": report, "gx": gx_report}


def validate_files(files, schema_path, quarantine_uri, limits: dict | None = None, accepted_uri=None,
                   report_uri=None) -> dict:
    """Validate `files` (paths/URIs, or folders) against the schema; never modifies them.

    Writes quarantined rows to `quarantine_uri/<name>.csv`, accepted rows (schema column order) to
    `accepted_uri/<name>.csv` if given, and GX's validation result per file to
    `report_uri/<name>.gx.json` if given. Returns {ok, files: [per-file report], rows_in,
    rows_accepted, rows_quarantined, accepted: [uris], quarantine: [uris], rejected: [messages]}.
    Does not raise for bad data: see `check`."""
    limits = {**DEFAULT_LIMITS, **(limits or {})}
    schema = F.load_schema(str(schema_path))
    paths = expand(files)
    if not paths:
        raise FileRejected(str(files), "no files to validate")
    raw, typed = build_suites(schema, limits)
    checks = compile_suites(raw, typed)
    gx = None
    if int(limits["gx_sample_rows"]) > 0:
        from ml.validate.gx_report import GXSuite

        gx = GXSuite(schema, raw, typed)
    summary = {"ok": True, "files": [], "rows_in": 0, "rows_accepted": 0, "rows_quarantined": 0,
               "accepted": [], "quarantine": [], "rejected": [], "schema": schema.path, "limits": limits}
    for file in paths:
        if not storage.exists(file) or storage.isdir(file):
            report = {"file": file, "status": "rejected", "rows_in": 0, "rows_accepted": 0,
                      "rows_quarantined": 0, "bad_rows": 0, "rule": "missing",
                      "message": f"{file}: file does not exist", "field": None, "row": None}
            gx_report = None
        else:
            # Two passes (Arrow, then csv for line numbers) read a local copy of a bucket object;
            # outputs are written locally and published to the bucket when the file is done.
            with contextlib.ExitStack() as stack:
                path = stack.enter_context(storage.local_copy(file))
                qdir = stack.enter_context(storage.staged_output(quarantine_uri))
                adir = stack.enter_context(storage.staged_output(accepted_uri)) if accepted_uri else None
                result = _validate_one(file, path, schema, checks, gx, limits, qdir, adir)
            report, gx_report = result["report"], result["gx"]
            if report.pop("quarantine_name", None):
                report["quarantine_uri"] = _uri(quarantine_uri, _out_name(file))
            if report.pop("accepted_name", None):
                report["accepted_uri"] = _uri(accepted_uri, _out_name(file))
        if gx_report is not None and report_uri:
            target = storage.join(report_uri, _out_name(file)[:-4] + ".gx.json")
            storage.write_text(target, json.dumps({"file": file, **gx_report}, indent=2))
            report["gx_report_uri"] = _uri(report_uri, _out_name(file)[:-4] + ".gx.json")
        if report.get("quarantine_uri"):
            summary["quarantine"].append(report["quarantine_uri"])
        if report.get("accepted_uri"):
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
        lines.append(f"{r['status'].upper():<9} {r['file']}: {r['rows_in']} rows, {r['rows_accepted']} accepted, "
                     f"{r['rows_quarantined']} quarantined")
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
    """The CLI: exit 0 all files accepted, 1 a file rejected, 2 usage or input error. With --json
    stdout holds only the JSON summary; human lines go to stderr."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m ml.validate", description=__doc__.split("\n")[0])
    parser.add_argument("--schema", required=True, help="schema YAML file")
    parser.add_argument("--data", required=True, action="append", help="CSV file or folder (repeatable)")
    parser.add_argument("--quarantine", default=None, help="folder for quarantined rows (default: a temp folder)")
    parser.add_argument("--accepted", default=None, help="folder for accepted rows (default: not written)")
    parser.add_argument("--report", default=None, help="folder for GX's validation result per file")
    parser.add_argument("--max-bad-row-fraction", type=float, default=DEFAULT_LIMITS["max_bad_row_fraction"])
    parser.add_argument("--max-oov-rate", type=float, default=DEFAULT_LIMITS["max_oov_rate"])
    parser.add_argument("--gx-sample-rows", type=int, default=DEFAULT_LIMITS["gx_sample_rows"],
                        help="rows of each file GX itself validates (0: none)")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary on stdout")
    args = parser.parse_args(argv)
    human = sys.stderr if args.json else sys.stdout
    quarantine = args.quarantine or tempfile.mkdtemp(prefix="prodml-quarantine-")
    limits = {"max_bad_row_fraction": args.max_bad_row_fraction, "max_oov_rate": args.max_oov_rate,
              "gx_sample_rows": args.gx_sample_rows}
    try:
        summary = validate_files(args.data, args.schema, quarantine, limits, accepted_uri=args.accepted,
                                 report_uri=args.report)
    except (F.SchemaError, FileRejected, OSError) as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    print(verdict(summary), file=human)
    if summary["quarantine"]:
        print(f"quarantined rows: {quarantine}", file=human)
    return 0 if summary["ok"] else 1
