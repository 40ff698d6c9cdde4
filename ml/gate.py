"""The model gate: every promotion passes through here, against fixed thresholds.

Not human-facing: the thresholds come from the profile's `gate:` section, passed in as a dict
by the caller (ml/ never reads the profile). Four families of checks, every failure a reason:

- value thresholds: AUC floor, cost-weighted-error ceiling (`min_auc`, `max_cost_weighted_error`);
- change thresholds against the champion *evaluated on the same eval data* (`max_auc_drop`,
  `max_cost_weighted_error_increase`); skipped when there is no champion (the very first model);
- per-slice floors: no slice (road type) may lose more than `max_slice_auc_drop` AUC against the
  champion; slices with fewer than `min_slice_rows` rows on either side are ignored;
  optional absolute `min_slice_auc`;
- infra validation (`infra:` budgets): the SavedModel is loaded in a *separate process*
  (`python -m ml.gate infra ...`), canary requests built from held-out rows with raw features
  are sent one row at a time and in batches; p99 latency, the child's peak memory
  (getrusage ru_maxrss) and the model size on disk are compared with budgets, and every
  prediction must be finite and in [0, 1].

A threshold or budget set to null is not checked (recorded as skipped). A metric that is missing
or None (e.g. AUC of a one-class eval set) fails its check: the gate never passes on no evidence.

The flow (local profile; the registry keeps the record with the version):

    version = registry.register(root, candidate_dir, {"metrics": candidate_metrics, ...})  # no promotion
    champion = registry.get(root)  (if any) → evaluate the champion's model on the SAME eval data
    record = evaluate_gate(candidate_metrics, champion_metrics, gate_config, model_dir=...,
                           canary_rows=load_canary(...), schema_path=..., candidate={"version": version},
                           champion={"version": champion["version"]})
    store_blessing(root, version, record)        # registry.attach(root, version, "blessing", record)
    if record["decision"] == "pass":
        promote_if_blessed(root, version)        # refuses unless the stored blessing says pass

Rejected candidates stay registered (never champion) with the reasons attached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ml import registry, storage

BLESSING = "blessing"
PACKAGE_PARENT = Path(__file__).resolve().parents[1]  # the folder `ml` imports from, for the serving process

DEFAULT_INFRA = {
    "single_requests": 50,
    "batch_requests": 5,
    "batch_size": 64,
    "timeout_s": 180,
    "max_p99_latency_ms": None,
    "max_batch_p99_latency_ms": None,
    "max_peak_memory_mb": None,
    "max_model_size_mb": None,
}


class NotBlessedError(registry.RegistryError):
    """A promotion was refused: the version has no passing blessing."""


# ---------------------------------------------------------------- metric checks (pure)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _check(checks: dict, reasons: list, name: str, value, limit, *, upper: bool, what: str) -> None:
    """One threshold check: value <= limit (upper) or value >= limit; None limit = skipped."""
    if limit is None:
        checks[name] = {"value": value, "threshold": None, "passed": None, "skipped": "no threshold"}
        return
    number = _number(value)
    passed = number is not None and (number <= limit if upper else number >= limit)
    checks[name] = {"value": value, "threshold": limit, "passed": passed}
    if not passed:
        if number is None:
            reasons.append(f"{what}: no value ({value!r}), cannot be checked against {limit}")
        else:
            sign = ">" if upper else "<"
            reasons.append(f"{what} {number:.4f} {sign} {'max' if upper else 'min'} {limit}")


def decide(candidate_metrics: dict, champion_metrics: dict | None, thresholds: dict) -> dict:
    """Metric checks → {decision, reasons, checks}. See the module docstring for the keys."""
    checks: dict = {}
    reasons: list[str] = []
    cand = candidate_metrics or {}
    t = thresholds

    # value thresholds
    _check(checks, reasons, "value.auc", cand.get("auc"), t.get("min_auc"), upper=False, what="AUC")
    _check(checks, reasons, "value.cost_weighted_error", cand.get("cost_weighted_error"),
           t.get("max_cost_weighted_error"), upper=True, what="cost-weighted error")

    # change thresholds against the champion on the same eval data
    if champion_metrics is None:
        checks["change"] = {"skipped": "no champion (first model)"}
    else:
        for metric, key, higher_is_better, what in (
            ("auc", "max_auc_drop", True, "AUC drop vs champion"),
            ("cost_weighted_error", "max_cost_weighted_error_increase", False,
             "cost-weighted error increase vs champion"),
        ):
            c, p = _number(cand.get(metric)), _number(champion_metrics.get(metric))
            if p is None and t.get(key) is not None:
                checks[f"change.{metric}"] = {"skipped": f"champion has no {metric}", "passed": None}
                continue
            delta = None if c is None or p is None else ((p - c) if higher_is_better else (c - p))
            _check(checks, reasons, f"change.{metric}", delta, t.get(key), upper=True, what=what)
            checks[f"change.{metric}"].update(candidate=c, champion=p)

    # per-slice floors
    min_rows = int(t.get("min_slice_rows") or 0)
    for slice_by, values in sorted((cand.get("slices") or {}).items()):
        champ_values = ((champion_metrics or {}).get("slices") or {}).get(slice_by, {})
        for value, m in sorted(values.items()):
            name = f"slice.{slice_by}={value}"
            if int(m.get("n") or 0) < min_rows:
                checks[name] = {"skipped": f"{m.get('n')} rows < min_slice_rows {min_rows}"}
                continue
            if t.get("min_slice_auc") is not None:
                _check(checks, reasons, f"{name}.auc", m.get("auc"), t["min_slice_auc"], upper=False,
                       what=f"{slice_by}={value} AUC")
            champ = champ_values.get(value)
            if champion_metrics is None or champ is None:
                continue
            if int(champ.get("n") or 0) < min_rows:
                checks[f"{name}.auc_drop"] = {"skipped": f"champion slice has {champ.get('n')} rows"}
                continue
            c, p = _number(m.get("auc")), _number(champ.get("auc"))
            if p is None:
                checks[f"{name}.auc_drop"] = {"skipped": "champion slice has no AUC"}
                continue
            _check(checks, reasons, f"{name}.auc_drop", None if c is None else p - c,
                   t.get("max_slice_auc_drop"), upper=True, what=f"{slice_by}={value} AUC drop vs champion")
            checks[f"{name}.auc_drop"].update(candidate=c, champion=p)

    return {"decision": "fail" if reasons else "pass", "reasons": reasons, "checks": checks}


# ---------------------------------------------------------------- infra validation


def model_size_mb(model_dir) -> float:
    """Size of the SavedModel folder (local or in the bucket), in MiB."""
    return storage.size_bytes(str(model_dir)) / 2**20


def _jsonable_columns(rows: dict) -> dict:
    out = {}
    for name, values in rows.items():
        if hasattr(values, "to_pylist"):
            values = values.to_pylist()
        elif hasattr(values, "tolist"):
            values = values.tolist()
        flat = []
        for v in values:
            while isinstance(v, (list, tuple)) and len(v) == 1:
                v = v[0]
            if isinstance(v, bytes):
                v = v.decode()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            flat.append(v)
        out[name] = flat
    return out


def infra_validate(model_dir, canary_rows: dict, budgets: dict, *, schema_path: str,
                   python: str | None = None) -> dict:
    """Load the SavedModel in a separate process, send canary requests, compare with budgets.

    `canary_rows`: raw feature columns of held-out rows ({column: list/array}); the child turns
    them into model inputs through the feature contract (`ml.features.to_model_inputs`), as a
    serving client would. Returns {passed, reasons, measured, budgets}.
    """
    b = {**DEFAULT_INFRA, **(budgets or {})}
    reasons: list[str] = []
    measured: dict = {}
    path = storage.cached_copy(str(model_dir))  # the serving child loads it from local disk
    if not (path / "saved_model.pb").exists():
        reasons.append(f"infra: no SavedModel at {model_dir} (saved_model.pb missing)")
        return {"passed": False, "reasons": reasons, "measured": measured, "budgets": b}
    measured["model_size_mb"] = round(model_size_mb(path), 3)

    columns = _jsonable_columns(canary_rows)
    n_rows = len(next(iter(columns.values()), []))
    if n_rows == 0:
        reasons.append("infra: no canary rows to send")
        return {"passed": False, "reasons": reasons, "measured": measured, "budgets": b}

    with tempfile.TemporaryDirectory(prefix="prodml-canary-") as tmp:
        canary = Path(tmp) / "canary.json"
        canary.write_text(json.dumps(columns))
        argv = [python or sys.executable, "-m", "ml.gate", "infra", "--model-dir", str(path),
                "--canary", str(canary), "--schema", str(schema_path),
                "--single-requests", str(b["single_requests"]), "--batch-requests", str(b["batch_requests"]),
                "--batch-size", str(b["batch_size"])]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")]))}
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=b["timeout_s"], env=env,
                                  cwd=PACKAGE_PARENT)
        except subprocess.TimeoutExpired:
            reasons.append(f"infra: the serving process did not finish within {b['timeout_s']} s")
            return {"passed": False, "reasons": reasons, "measured": measured, "budgets": b}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    child = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or "error" in child or not child:
        detail = child.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
        reasons.append(f"infra: the model failed to load or serve in a separate process "
                       f"(exit {proc.returncode}): {detail}")
        return {"passed": False, "reasons": reasons, "measured": {**measured, **child}, "budgets": b}
    measured.update(child)
    reasons += check_budgets(measured, b)
    return {"passed": not reasons, "reasons": reasons, "measured": measured, "budgets": b}


def check_budgets(measured: dict, budgets: dict) -> list[str]:
    """Reasons why measurements of a serving process break the budgets (empty: within budget).
    Also: one prediction per canary row, all finite and in [0, 1]."""
    b = {**DEFAULT_INFRA, **(budgets or {})}
    reasons = []
    for key, value, what in (
        ("max_p99_latency_ms", measured["single_latency_ms"]["p99"], "p99 latency (1 row)"),
        ("max_batch_p99_latency_ms", measured["batch_latency_ms"]["p99"],
         f"p99 latency ({b['batch_size']} rows)"),
        ("max_peak_memory_mb", measured["peak_memory_mb"], "peak memory of the serving process"),
        ("max_model_size_mb", measured["model_size_mb"], "model size on disk"),
    ):
        if b.get(key) is not None and value > b[key]:
            unit = "ms" if "latency" in key else "MB"
            reasons.append(f"infra: {what} {value:.3f} {unit} > budget {b[key]} {unit}")
    if measured["predictions"] != measured["expected_predictions"]:
        reasons.append(f"infra: {measured['predictions']} predictions for "
                       f"{measured['expected_predictions']} requested rows")
    if measured["non_finite"]:
        reasons.append(f"infra: {measured['non_finite']} predictions are NaN or infinite")
    if measured["out_of_range"]:
        reasons.append(f"infra: {measured['out_of_range']} predictions are outside [0, 1]")
    return reasons


def _percentiles(values: list[float]) -> dict:
    import numpy as np

    a = np.asarray(values, dtype=np.float64) * 1000.0
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "max": round(float(a.max()), 3), "n": int(a.size)}


def _serve_child(model_dir: str, canary_path: str, schema_path: str, single_requests: int,
                 batch_requests: int, batch_size: int) -> dict:
    """Runs in the separate process: load, warm up, time single-row and batch requests."""
    import resource
    import time

    import numpy as np

    from ml import features as F

    started = time.perf_counter()
    import tensorflow as tf

    schema = F.load_schema(schema_path)
    inputs = F.to_model_inputs(schema, json.loads(Path(canary_path).read_text()))
    n = len(next(iter(inputs.values())))
    model = tf.saved_model.load(model_dir)
    load_s = time.perf_counter() - started

    def call(rows: slice):
        out = model.serve({k: tf.constant(v[rows]) for k, v in inputs.items()})
        return np.asarray(out).ravel()

    t0 = time.perf_counter()
    outputs = [call(slice(0, 1))]
    first_ms = (time.perf_counter() - t0) * 1000
    outputs.append(call(slice(0, min(batch_size, n))))  # warm the batch shape too
    single, batch = [], []
    expected = 1 + min(batch_size, n)
    for i in range(single_requests):
        row = i % n
        t0 = time.perf_counter()
        outputs.append(call(slice(row, row + 1)))
        single.append(time.perf_counter() - t0)
        expected += 1
    for i in range(batch_requests):
        start = (i * batch_size) % n
        rows = slice(start, min(start + batch_size, n))
        t0 = time.perf_counter()
        outputs.append(call(rows))
        batch.append(time.perf_counter() - t0)
        expected += rows.stop - rows.start
    scores = np.concatenate(outputs).astype(np.float64)
    finite = np.isfinite(scores)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "load_s": round(load_s, 3),
        "first_request_ms": round(first_ms, 3),
        "single_latency_ms": _percentiles(single or [0.0]),
        "batch_latency_ms": _percentiles(batch or [0.0]),
        "peak_memory_mb": round(peak_kb / 1024, 1),
        "canary_rows": n,
        "predictions": int(scores.size),
        "expected_predictions": expected,
        "non_finite": int((~finite).sum()),
        "out_of_range": int(((scores[finite] < 0) | (scores[finite] > 1)).sum()),
        "score_min": float(scores[finite].min()) if finite.any() else None,
        "score_max": float(scores[finite].max()) if finite.any() else None,
    }


# ---------------------------------------------------------------- canary rows


def load_canary(uri: str, schema_path: str, n: int = 64, eval_fraction: float | None = None) -> dict:
    """Raw feature columns of up to `n` held-out rows.

    `uri`: a JSON file {column: [values]}; a landed CSV file, folder or glob (with `eval_fraction`,
    only rows on the eval side of the deterministic split are kept: held out from training);
    or a TFRecord file pattern of the eval split (raw features written by the transform).
    """
    from ml import features as F

    text = str(uri)
    if text.endswith(".json"):
        columns = json.loads(storage.read_text(text))
        return {k: list(v)[:n] for k, v in columns.items()}
    if ".tfrecord" in text or "/eval/" in text:
        from ml.evaluate import read_eval_examples

        columns, _ = read_eval_examples(text, F.load_schema(schema_path))
        return _jsonable_columns({k: v[:n] for k, v in columns.items()})
    import pyarrow as pa

    schema = F.load_schema(schema_path)
    if storage.isdir(text):
        files = storage.glob(storage.join(text, "**", "*.csv"))
    elif any(ch in text for ch in "*?["):
        files = storage.glob(text)
    else:
        files = [text]
    if not files:
        raise FileNotFoundError(f"no canary rows under {uri}")
    table = F.read_csv_files(files, schema)
    if eval_fraction is not None and schema.split_key:
        mask = F.split_bucket(table.column(schema.split_key).to_pylist(), eval_fraction)
        table = table.filter(pa.array(mask))
    if table.num_rows > n:  # spread over the file set (many sensors, hours), deterministically
        import numpy as np

        table = table.take(pa.array(np.linspace(0, table.num_rows - 1, n).astype(np.int64)))
    return {f.name: table.column(f.name).to_pylist() for f in schema.model_inputs if f.name in table.column_names}


# ---------------------------------------------------------------- the gate and the blessing


def evaluate_gate(candidate_metrics: dict, champion_metrics: dict | None, thresholds: dict, *,
                  model_dir=None, canary_rows: dict | None = None, schema_path: str | None = None,
                  candidate: dict | None = None, champion: dict | None = None) -> dict:
    """Metric checks + infra validation → the blessing record.

    {decision: "pass"|"fail", reasons: [...], checks: {..., "infra": {...}}, thresholds,
     candidate: {..., metrics}, champion: {..., metrics} | None, decided_at}

    Infra validation runs when `thresholds` has an `infra` section (the profile always does);
    it then needs model_dir, canary_rows and schema_path, and missing any of them fails the gate.
    """
    metric = decide(candidate_metrics, champion_metrics, thresholds)
    reasons, checks = list(metric["reasons"]), dict(metric["checks"])
    infra_budgets = thresholds.get("infra")
    if infra_budgets is None:
        checks["infra"] = {"skipped": "no infra budgets configured"}
    elif model_dir is None or not canary_rows or not schema_path:
        checks["infra"] = {"passed": False}
        reasons.append("infra: model_dir, canary_rows and schema_path are required for infra validation")
    else:
        infra = infra_validate(model_dir, canary_rows, infra_budgets, schema_path=schema_path)
        checks["infra"] = infra
        reasons += infra["reasons"]
    return {
        "decision": "fail" if reasons else "pass",
        "reasons": reasons,
        "checks": checks,
        "thresholds": thresholds,
        "candidate": {**(candidate or {}), "metrics": candidate_metrics,
                      **({"model_dir": str(model_dir)} if model_dir is not None else {})},
        "champion": None if champion_metrics is None and not champion
        else {**(champion or {}), "metrics": champion_metrics},
        "decided_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def summary(record: dict) -> dict:
    """The small dict for XCom / logs: decision, reasons, versions."""
    return {
        "decision": record["decision"],
        "reasons": record["reasons"],
        "version": (record.get("candidate") or {}).get("version"),
        "champion_version": (record.get("champion") or {}).get("version"),
    }


def store_blessing(models, version: str, record: dict) -> str:
    """Attach the record to the (registered, not promoted) version of the registry `models`
    (`ml.registry.connect`); once only. Returns its path."""
    return models.attach(version, BLESSING, record)


def promote_if_blessed(models, version: str, record: dict | None = None, reason: str = "") -> dict:
    """Promote `version` only if the blessing stored with it says pass; return the aliases.

    The stored blessing is authoritative (a caller cannot bless by passing a dict); `record`, if
    given, must agree with it. Raises NotBlessedError otherwise; the aliases are left untouched.
    """
    try:
        stored = models.read_attachment(version, BLESSING)
    except registry.RegistryError as exc:
        raise NotBlessedError(f"refusing to promote {version}: no blessing stored ({exc}); "
                              "run the gate and store_blessing() first") from None
    for label, rec in (("stored", stored), ("given", record)):
        if rec is None:
            continue
        if rec.get("decision") != "pass":
            why = "; ".join(rec.get("reasons") or []) or "no reasons recorded"
            raise NotBlessedError(f"refusing to promote {version}: {label} blessing decision is "
                                  f"{rec.get('decision')!r}: {why}")
        blessed = (rec.get("candidate") or {}).get("version")
        if blessed is not None and registry._normalise_version(blessed) != registry._normalise_version(version):
            raise NotBlessedError(f"refusing to promote {version}: the {label} blessing is for {blessed}")
    return models.promote(version, reason or "gate passed")


def check_restorable(models, version: str) -> None:
    """A rollback may restore any earlier champion, but not a version the gate failed: that needs
    an explicit force (NotBlessedError otherwise). A version without a blessing (registered before
    the gate existed, or by hand) is not held against."""
    try:
        stored = models.read_attachment(version, BLESSING)
    except registry.RegistryError:
        return
    if stored.get("decision") == "fail":
        why = "; ".join(stored.get("reasons") or []) or "no reasons recorded"
        raise NotBlessedError(f"refusing to restore {version}: the gate failed it ({why}); to serve it "
                              "anyway, force it (rollback DAG param force=true, or "
                              "`python -m ml.registry rollback --version V --force`)")


# ---------------------------------------------------------------- CLI (the infra child)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.gate")
    sub = parser.add_subparsers(dest="command", required=True)
    infra = sub.add_parser("infra", help="serve canary requests (run by infra_validate in a child process)")
    infra.add_argument("--model-dir", required=True)
    infra.add_argument("--canary", required=True)
    infra.add_argument("--schema", required=True)
    infra.add_argument("--single-requests", type=int, default=DEFAULT_INFRA["single_requests"])
    infra.add_argument("--batch-requests", type=int, default=DEFAULT_INFRA["batch_requests"])
    infra.add_argument("--batch-size", type=int, default=DEFAULT_INFRA["batch_size"])
    args = parser.parse_args(argv)
    try:
        result = _serve_child(args.model_dir, args.canary, args.schema, args.single_requests,
                              args.batch_requests, args.batch_size)
    except Exception as exc:  # reported to the parent as a reason, not a traceback to parse
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000]}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
