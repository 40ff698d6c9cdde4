"""B4 batch prediction: the batch_prediction DAG's job (ml.prediction_job.predict_to_warehouse:
read_ahead_features → predict_table with batched model calls → DuckDBWarehouse.replace_partition,
an Arrow bulk load) against one model call and one INSERT per row.

The model is a small one trained by the real code (ml.transform.run + ml.trainer.run) on a little
simulated data, cached under benchmarks/.data; its training.json doubles as the bottleneck-report
example (per-epoch input wait vs compute, bound, peak RSS). The per-row baseline runs on a sample
(`--baseline-rows`) and is compared by throughput (rows/s); its scores are checked against ours.

    python -m benchmarks.batch_prediction [--rows 120000] [--baseline-rows 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DATA, SCHEMA, figure, print_table, simulated, timed, write_result

MODEL_ROWS = 24_000
MODEL_EPOCHS = 2
EVALUATION = {"cost_false_negative": 5.0, "cost_false_positive": 1.0}


def trained_model(rows: int = MODEL_ROWS, epochs: int = MODEL_EPOCHS) -> dict:
    """A small model trained by the DAGs' code (Beam transform, then the trainer), cached."""
    from ml import trainer, transform

    folder = DATA / f"model-r{rows}-e{epochs}"
    report_path = folder / "trained" / "training.json"
    if not report_path.exists():
        shutil.rmtree(folder, ignore_errors=True)
        sim = simulated(rows)
        summary = transform.run(["--input", str(sim["folder"] / "landing/dt=*/part-*.csv"),
                                 "--output", str(folder / "transform"), "--schema", str(SCHEMA),
                                 "--num_shards", "2"])
        trainer.run(["--train", summary["train_pattern"], "--eval", summary["eval_pattern"],
                     "--stats", summary["stats"], "--schema", str(SCHEMA),
                     "--output", str(folder / "trained"), "--epochs", str(epochs)])
    report = json.loads(report_path.read_text())
    return {"model_dir": report["model_dir"], "training": report, "rows": rows, "epochs": epochs}


def _writable(path: Path) -> None:
    """The registry makes versions read-only; give write access back so the temp dir can go."""
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chmod(dirpath, stat.S_IRWXU)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), stat.S_IRUSR | stat.S_IWUSR)


def per_row_baseline(model_dir: str, table, schema, target_date: str, wh_path: Path) -> tuple[float, list]:
    """One model call and one INSERT (own transaction) per row."""
    import tensorflow as tf

    from ml import evaluate, predict
    from ml import features as F
    from ml.warehouse import DuckDBWarehouse

    model = predict.load_model(model_dir)
    threshold = evaluate.decision_threshold(EVALUATION["cost_false_negative"], EVALUATION["cost_false_positive"])
    wh = DuckDBWarehouse(wh_path, "prodml")
    wh.ensure_tables()
    predict.ensure_predictions_table(wh, schema)
    rows = table.to_pylist()
    day = dt.date.fromisoformat(target_date)
    insert = ("INSERT INTO prodml.predictions (target_date, sensor_id, hour, entity_key, score, "
              "predicted_congested, model_version, run_id, predicted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    names = [f.name for f in schema.model_inputs]
    scores = []
    t0 = time.perf_counter()
    for row in rows:
        inputs = F.to_model_inputs(schema, {n: [row[n]] for n in names})
        score = float(model.serve({k: tf.constant(v) for k, v in inputs.items()}).numpy().ravel()[0])
        key = F.entity_key([row[k] for k in schema.entity_keys])
        wh.con.execute(insert, [day, row["sensor_id"], row["hour"], key, score,
                                int(score >= threshold), "bench", "bench-per-row", dt.datetime.now(dt.UTC)])
        scores.append(score)
    elapsed = time.perf_counter() - t0
    wh.close()
    return elapsed, scores


def run(rows: int = 120_000, baseline_rows: int = 1000, repeat: int = 3, model_rows: int = MODEL_ROWS) -> dict:
    logging.getLogger("ml").setLevel(logging.WARNING)
    from ml import features as F
    from ml import predict, registry
    from ml.prediction_job import predict_to_warehouse
    from ml.warehouse import DuckDBWarehouse

    schema = F.load_schema(SCHEMA)
    model = trained_model(model_rows)
    sim = simulated(rows)
    dates = sim["forecast_dates"][: sim["days"]]
    total_rows = 0
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp = Path(tmp)
        try:
            root = tmp / "registry"
            version = registry.register(root, model["model_dir"], {"metrics": {}})
            registry.promote(root, version, "benchmark")
            wh_config = {"kind": "duckdb", "path": str(tmp / "warehouse.duckdb"), "dataset": "prodml"}

            def ours():
                n = 0
                for day in dates:
                    n += predict_to_warehouse(target_date=day, registry_config={"kind": "local", "root": str(root)},
                                              forecast_uri=str(sim["forecast"]), schema_path=str(SCHEMA),
                                              warehouse_config=wh_config, evaluation=EVALUATION,
                                              batch_size=4096, run_id="bench")["rows"]
                return n

            ours_s, ours_all, total_rows = timed(ours, repeat)
            # Where the time goes, for one date (same functions the job calls).
            first = dates[0]
            t0 = time.perf_counter()
            loaded = predict.load_model(model["model_dir"])
            t_load = time.perf_counter() - t0
            t_read, _, table = timed(lambda: predict.read_ahead_features(sim["forecast"] / f"dt={first}", schema))
            t_pred, _, scored = timed(lambda: predict.predict_table(
                loaded, table, schema, target_date=first, model_version="bench", run_id="bench", threshold=0.5))
            with DuckDBWarehouse(tmp / "parts.duckdb", "prodml") as wh:
                wh.ensure_tables()
                predict.ensure_predictions_table(wh, schema)
                t_load_wh, _, _ = timed(lambda: wh.replace_partition("predictions", scored, "target_date",
                                                                     dt.date.fromisoformat(first)))
            # Per-row baseline on a sample of the same date.
            sample = table.slice(0, min(baseline_rows, table.num_rows))
            base_s, base_scores = per_row_baseline(model["model_dir"], sample, schema, first, tmp / "per_row.duckdb")
            with DuckDBWarehouse(wh_config["path"], "prodml") as wh:
                got = wh.query("SELECT sensor_id, hour, score FROM prodml.predictions WHERE target_date = @d",
                               {"d": dt.date.fromisoformat(first)}).to_pylist()
                stored_rows = wh.query("SELECT count(*) AS n FROM prodml.predictions").to_pylist()[0]["n"]
            ours_scores = {(r["sensor_id"], r["hour"]): r["score"] for r in got}
            keys = list(zip(sample.column("sensor_id").to_pylist(), sample.column("hour").to_pylist(), strict=True))
            diff = float(np.max(np.abs(np.array([ours_scores[k] for k in keys]) - np.array(base_scores))))
        finally:
            _writable(tmp)
    per_row_ms = 1000 * base_s / sample.num_rows
    fig = figure("B4 batch prediction end to end", base_s, ours_s, total_rows, aim=100,
                 baseline="per-row model.serve + per-row INSERT", baseline_rows=sample.num_rows,
                 ours="prediction_job.predict_to_warehouse (batched predict_table + replace_partition)",
                 note=f"baseline on a {sample.num_rows}-row sample ({per_row_ms:.2f} ms/row), compared by rows/s; "
                      f"max |score diff| vs ours {diff:.1e}")
    training = model["training"]
    result = {
        "rows": total_rows, "dates": dates, "repeat": repeat, "figures": [fig], "ours_all_s": ours_all,
        "stored_rows_after_reruns": stored_rows,
        "idempotent": stored_rows == total_rows,
        "breakdown_one_date_s": {"rows": table.num_rows, "load_model": round(t_load, 3),
                                 "read_ahead_features": round(t_read, 3), "predict_table": round(t_pred, 3),
                                 "replace_partition": round(t_load_wh, 3)},
        "scores_match": diff < 1e-5, "max_score_diff": diff,
        "trainer_bottleneck_report": {k: training[k] for k in ("epochs", "input_share", "bound", "peak_rss_mb")},
        "model": {"rows": model["rows"], "epochs": model["epochs"]},
    }
    print_table(f"B4 batch prediction ({total_rows} rows over {len(dates)} date(s), median of {repeat})", [fig])
    b = result["breakdown_one_date_s"]
    print(f"  one date, {b['rows']} rows: load_model {b['load_model']} s, read {b['read_ahead_features']} s, "
          f"predict_table {b['predict_table']} s, replace_partition {b['replace_partition']} s; "
          f"reruns left {stored_rows} rows (idempotent: {result['idempotent']}); scores match: {result['scores_match']}")
    print(f"  trainer bottleneck report (training.json of the model, {model['rows']} rows): "
          f"{training['bound']}, input share {training['input_share']:.0%}, peak RSS {training['peak_rss_mb']} MB")
    for i, e in enumerate(training["epochs"], 1):
        print(f"    epoch {i}: {e['steps']} steps, input wait {e['input_wait_s']} s, compute {e['compute_s']} s, "
              f"input share {e['input_share']:.0%}")
    write_result("batch_prediction", result)
    if not result["scores_match"] or not result["idempotent"]:
        raise AssertionError(f"B4 check failed: scores_match={result['scores_match']} idempotent={result['idempotent']}")
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_prediction", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--baseline-rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    return run(args.rows, args.baseline_rows, args.repeat)


if __name__ == "__main__":
    main()
