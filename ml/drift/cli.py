"""python -m ml.drift: check CSV data for drift against a reference, from the command line.

    python -m ml.drift --schema S --reference R.csv|R.json --current C.csv [--config profile.yaml]
                       [--save-reference R.json] [--report out.html] [--json]

--json prints only JSON on stdout (every score of every feature and slice with its threshold and
verdict, and the overall verdict); human lines go to stderr. Exit codes: 0 no drift, 1 drift
found, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ml import features as F
from ml.drift.check import check_drift, verdict
from ml.drift.config import DriftError
from ml.drift.reference import build_reference, load_reference, save_reference

OUTPUT_KEYS = ("ok", "rows", "drifted", "leakage", "blocked", "drifted_share", "run_id", "report", "scores")


def _config(path: str | None, slice_by: str | None) -> dict:
    config = {}
    if path:
        import yaml

        raw = yaml.safe_load(Path(path).read_text()) or {}
        config = dict(raw.get("drift", raw))
    if slice_by:
        config["slice_by"] = slice_by
    return config


def run(args) -> dict:
    config = _config(args.config, args.slice_by)
    if args.reference.endswith(".json"):
        reference = load_reference(args.reference)
    else:
        reference = build_reference(args.reference, args.schema, config)
    if args.save_reference:
        save_reference(reference, args.save_reference)
    return check_drift(reference, args.current, args.schema, config=config, report_path=args.report)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.drift", description=__doc__.split("\n")[0])
    parser.add_argument("--schema", required=True)
    parser.add_argument("--reference", required=True,
                        help="CSV file/folder of reference data, or a reference JSON saved with --save-reference")
    parser.add_argument("--current", required=True, action="append", help="CSV file or folder (repeatable)")
    parser.add_argument("--config", default=None, help="YAML/JSON file with a drift section (thresholds, policy)")
    parser.add_argument("--slice-by", default=None)
    parser.add_argument("--save-reference", default=None,
                        help="write the reference here (JSON, values beside it as <stem>.values.parquet)")
    parser.add_argument("--report", default=None, help="write an HTML report here")
    parser.add_argument("--json", action="store_true", help="only JSON on stdout; human lines on stderr")
    args = parser.parse_args(argv)
    human = sys.stderr if args.json else sys.stdout
    try:
        result = run(args)
    except (DriftError, F.SchemaError, OSError, KeyError, ValueError) as exc:
        message = f"{type(exc).__name__}: {exc}"
        print(f"ERROR: {message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": None, "error": message}))
        return 2
    print(verdict(result), file=human)
    if args.report:
        print(f"report: {result['report']}", file=human)
    if args.json:
        print(json.dumps({"verdict": "ok" if result["ok"] else "drift",
                          **{k: result.get(k) for k in OUTPUT_KEYS}}))
    return 0 if result["ok"] else 1
