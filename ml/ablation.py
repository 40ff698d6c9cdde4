"""Leave-one-feature-out ablation: does every feature still pay its way?

The `ablation` DAG's task bodies. For each seed, one baseline retrain with every model input and one
retrain without each feature (`python -m ml.trial --drop_features F`: the trainer reads a schema view
in which F is no model input), all on the same data (the champion's transformed training data) and
scored on the same eval split. A feature's delta is AUC(all) - AUC(without it), paired by seed; its
confidence interval across seeds is Student's t interval of the mean delta. A feature whose interval
does not lie above `min_auc_gain` is flagged: it has not shown that it pays for itself (the course:
redundant or bundled features, and every data dependency has a cost: monitoring, latency, an
upstream that can break). Flagged features raise one alert; the report is stored in the bucket.
"""

from __future__ import annotations

import json
import logging
import math

from ml import storage

log = logging.getLogger(__name__)

BASELINE = "_baseline"


def features_to_ablate(schema_path: str, features: list[str] | None) -> list[str]:
    """`features` (checked against the schema's model inputs), or every model input when empty."""
    from ml import features as F

    inputs = [f.name for f in F.load_schema(schema_path).model_inputs]
    if not features:
        return inputs
    unknown = sorted(set(features) - set(inputs))
    if unknown:
        raise ValueError(f"ablation features {', '.join(unknown)}: not model inputs ({', '.join(inputs)})")
    return list(features)


def plan(*, data: dict, schema_path: str, schema_arg: str, features: list[str] | None, seeds: list[int],
         trainer_params: dict, epochs: int, evaluation: dict, output_root: str) -> list[dict]:
    """The runs to fan out: per seed, the baseline and one run without each feature. Each item is the
    mapped training task's keyword arguments: {"args": ml.trial's flags, "output_uri": its folder}.
    `schema_path`: the schema read here (which features exist); `schema_arg`: the schema the runs
    read (the same file locally, its copy in the bucket on Vertex AI). `trainer_params`: the trainer's
    hyperparameters (`ml.tuning.training_params`: tuned ones when stored); `epochs` overrides its epochs."""
    if not seeds:
        raise ValueError("ablation needs at least one seed")
    runs = []
    for seed in seeds:
        for feature in [BASELINE, *features_to_ablate(schema_path, features)]:
            output = f"{output_root}/{feature}/seed-{int(seed)}"
            args = {"train": data["train"], "eval": data["eval"], "stats": data["stats"], "schema": schema_arg,
                    "seed": int(seed), "epochs": int(epochs), "batch_size": trainer_params["batch_size"],
                    "learning_rate": trainer_params["learning_rate"], "hidden_units": trainer_params["hidden_units"],
                    "cost_false_negative": evaluation["cost_false_negative"],
                    "cost_false_positive": evaluation["cost_false_positive"],
                    "drop_features": "" if feature == BASELINE else feature, "output": output}
            runs.append({"args": args, "output_uri": output})
    log.info("ablation: %d runs (%d seeds x (baseline + %d features))", len(runs), len(seeds),
             len(runs) // len(seeds) - 1)
    return runs


def t_quantile(confidence: float, df: int) -> float:
    """Two-sided Student's t critical value (inf without degrees of freedom)."""
    if df < 1:
        return math.inf
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def report(results: list[dict], *, confidence: float, min_auc_gain: float, metric: str = "auc") -> dict:
    """`results`: every run's trial.json (`ml.trial`). Per feature: the deltas AUC(all) - AUC(without
    it) paired by seed, their mean, standard deviation, t interval, and whether the feature pays its
    way (interval's lower bound above `min_auc_gain`); features that do not are `flagged`."""
    by = {}
    for r in results:
        seed = _seed(r)
        feature = (r.get("dropped") or [BASELINE])[0]
        by.setdefault(feature, {})[seed] = r["metrics"][metric]
    if BASELINE not in by:
        raise ValueError("ablation: no baseline run finished")
    baseline = by.pop(BASELINE)
    features = {}
    for feature, scores in sorted(by.items()):
        seeds = sorted(set(scores) & set(baseline))
        deltas = [baseline[s] - scores[s] for s in seeds]
        n = len(deltas)
        mean = sum(deltas) / n if n else math.nan
        sd = math.sqrt(sum((d - mean) ** 2 for d in deltas) / (n - 1)) if n > 1 else math.nan
        half = t_quantile(confidence, n - 1) * sd / math.sqrt(n) if n > 1 else math.inf
        low, high = mean - half, mean + half
        pays = n > 1 and low > min_auc_gain
        features[feature] = {"delta_mean": round(mean, 6), "delta_sd": None if math.isnan(sd) else round(sd, 6),
                             "ci_low": _num(low), "ci_high": _num(high), "n": n, "seeds": seeds,
                             "deltas": [round(d, 6) for d in deltas],
                             "auc_without": round(sum(scores[s] for s in seeds) / n, 6) if n else None,
                             "pays": pays}
    base = [baseline[s] for s in sorted(baseline)]
    ranked = sorted(features, key=lambda f: features[f]["delta_mean"], reverse=True)
    return {"metric": metric, "confidence": confidence, "min_auc_gain": min_auc_gain,
            "baseline": {"mean": round(sum(base) / len(base), 6), "by_seed": {str(s): baseline[s] for s in sorted(baseline)}},
            "features": features, "ranked": ranked,
            "flagged": [f for f in ranked if not features[f]["pays"]]}


def _seed(result: dict) -> int:
    args = result.get("trainer_args", [])
    for i, arg in enumerate(args):
        if arg == "--seed":
            return int(args[i + 1])
        if arg.startswith("--seed="):
            return int(arg.split("=", 1)[1])
    return 7  # ml.trainer's default seed


def _num(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else round(x, 6)


def collect(outputs: list[str]) -> list[dict]:
    """The trial.json of every finished run (a run that failed left none and is skipped, logged)."""
    from ml.trial import read_result

    results = []
    for output in outputs:
        if storage.exists(storage.join(output, "trial.json")):
            results.append(read_result(output))
        else:
            log.warning("ablation run %s left no trial.json: left out", output)
    return results


def table(rep: dict) -> str:
    """The report as a readable table, largest contribution first."""
    rows = [("FEATURE", "DELTA AUC", f"{int(rep['confidence'] * 100)}% CI", "SEEDS", "VERDICT")]
    for f in rep["ranked"]:
        r = rep["features"][f]
        ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        rows.append((f, f"{r['delta_mean']:+.4f}", ci, str(r["n"]), "pays" if r["pays"] else "FLAGGED"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return f"baseline AUC {rep['baseline']['mean']:.4f}\n" + "\n".join(lines)


def finish(*, outputs: list[str], confidence: float, min_auc_gain: float, run_uri: str, report_uri: str,
           data_version: str, warehouse_config: dict | None, run_id: str | None) -> dict:
    """After the fan-out: collect the runs, compute the report, store it (the run's folder and
    `report_uri`, the latest), alert on flagged features. Returns the report."""
    rep = report(collect(outputs), confidence=confidence, min_auc_gain=min_auc_gain)
    rep |= {"champion_version": data_version, "run_id": run_id}
    text = json.dumps(rep, indent=1)
    storage.write_text(storage.join(run_uri, "report.json"), text)
    storage.write_text(report_uri, text)
    log.info("ablation report (%s):\n%s", report_uri, table(rep))
    if rep["flagged"] and warehouse_config is not None:
        from ml import alerts, warehouse

        wh = warehouse.connect(warehouse_config)
        try:
            wh.ensure_tables()
            alerts.raise_alert(wh, "warning", "ablation.flagged",
                               f"features that do not pay their way: {', '.join(rep['flagged'])}",
                               {"report": report_uri, "run_id": run_id,
                                "deltas": {f: rep["features"][f]["delta_mean"] for f in rep["flagged"]}})
        finally:
            wh.close()
    return rep
