"""One training run scored on its eval split: a tuning trial or an ablation run.

    python -m ml.trial [--drop_features a,b] [--metric auc] <ml.trainer's flags>

Runs `ml.trainer.run` with the trainer's own flags, scores the exported model on the eval split with
the project's one evaluation (`ml.evaluate`: exact AUC, cost-weighted error), and writes
`<output>/trial.json`. The same entry point runs in a subprocess on the Airflow worker (the local
`tuning` trials, the `ablation` runs) and as the container command of a Vertex AI job (a trial of a
hyperparameter tuning job, an ablation CustomJob), so both profiles score a trial alike.

- `--drop_features`: the run trains without these model inputs. The trainer is given a *schema view*
  (`<output>/schema.yaml`): the schema with those features set to `transform: none`, which makes
  them no model input (`ml.features`), so neither the model nor the input pipeline reads them.
- `--output` may be left out inside a Vertex AI hyperparameter tuning trial: the trial's folder is
  then the parent of `AIP_MODEL_DIR` (Vertex gives each trial its own `<base>/<trial id>/model/`).
- The metric is reported to Vertex AI's tuning service when the job is a tuning trial
  (`CLOUD_ML_TRIAL_ID` / `CLOUD_ML_HP_METRIC_FILE` set): the newline-delimited JSON file that the
  `cloudml-hypertune` package writes, in its format, without the dependency.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import yaml

from ml import storage

log = logging.getLogger(__name__)

HYPERTUNE_FILE = "/tmp/hypertune/output.metrics"  # cloudml-hypertune's default path
METRICS = ("auc", "cost_weighted_error")


def parser() -> argparse.ArgumentParser:
    """The trial's own flags; every other flag goes to ml.trainer unchanged."""
    p = argparse.ArgumentParser(description="Train with ml.trainer, score on the eval split, write trial.json.",
                                allow_abbrev=False)
    p.add_argument("--schema", required=True, help="the feature contract (a view is derived when dropping)")
    p.add_argument("--eval", required=True, help="TFRecord glob of the eval split (also passed to the trainer)")
    p.add_argument("--output", default="", help="trial folder (default: the parent of $AIP_MODEL_DIR)")
    p.add_argument("--drop_features", default="", help="comma-separated model inputs to train without")
    p.add_argument("--metric", default="auc", choices=METRICS, help="the metric reported to a tuning service")
    p.add_argument("--cost_false_negative", type=float, default=1.0)
    p.add_argument("--cost_false_positive", type=float, default=1.0)
    return p


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """(the trial's flags, the rest: ml.trainer's flags)."""
    return parser().parse_known_args(argv)


def trial_folder(output: str, environ=os.environ) -> str:
    if output:
        return output.rstrip("/")
    model_dir = environ.get("AIP_MODEL_DIR", "").rstrip("/")
    if not model_dir:
        raise SystemExit("ml.trial: --output is required outside a Vertex AI job (no AIP_MODEL_DIR)")
    return model_dir.rsplit("/", 1)[0]


def schema_view(schema_path: str, drop: list[str], out_uri: str) -> str:
    """Write the schema with `drop` set to `transform: none` (no model input) to `out_uri`; return it.
    A name that is not a model input is an error (a typo would silently ablate nothing)."""
    from ml import features as F

    inputs = {f.name for f in F.load_schema(schema_path).model_inputs}
    unknown = sorted(set(drop) - inputs)
    if unknown:
        raise ValueError(f"--drop_features {', '.join(unknown)}: not model inputs of {schema_path} "
                         f"(model inputs: {', '.join(sorted(inputs))})")
    raw = yaml.safe_load(storage.read_text(schema_path))
    for feature in raw["features"]:
        if feature["name"] in drop:
            feature["transform"] = "none"
            feature.pop("hash_bins", None)
    storage.write_text(out_uri, yaml.safe_dump(raw, sort_keys=False))
    return out_uri


def report_metric(tag: str, value: float, environ=os.environ) -> str | None:
    """Report `value` to Vertex AI hyperparameter tuning when this process is one of its trials
    (cloudml-hypertune's file format: one JSON object per line). Returns the file written, or None."""
    if not (environ.get("CLOUD_ML_TRIAL_ID") or environ.get("CLOUD_ML_HP_METRIC_FILE")):
        return None
    path = environ.get("CLOUD_ML_HP_METRIC_FILE", HYPERTUNE_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = {"timestamp": time.time(), "trial": str(environ.get("CLOUD_ML_TRIAL_ID", 0)),
            tag: str(float(value)), "global_step": "0"}
    with open(path, "w") as handle:
        handle.write(json.dumps(body, sort_keys=True) + "\n")
    return path


def run(argv: list[str] | None = None) -> dict:
    """Train, score, write `<output>/trial.json`; return its content."""
    from ml import trainer
    from ml.evaluate import evaluate

    args, trainer_argv = parse_args(argv)
    output = trial_folder(args.output)
    drop = [f.strip() for f in args.drop_features.split(",") if f.strip()]
    schema = schema_view(args.schema, drop, storage.join(output, "schema.yaml")) if drop else args.schema
    started = time.perf_counter()
    report = trainer.run([*trainer_argv, "--schema", schema, "--eval", args.eval, "--output", output])
    metrics = evaluate(storage.join(output, "model"), args.eval, schema, args.cost_false_negative,
                       args.cost_false_positive)
    result = {
        "metric": args.metric,
        "value": metrics[args.metric],
        "metrics": {k: metrics[k] for k in (*METRICS, "n")},
        "dropped": drop,
        "trainer_args": trainer_argv,
        "train_seconds": round(time.perf_counter() - started, 2),
        "input_share": report.get("input_share"),
        "output": output,
    }
    storage.write_text(storage.join(output, "trial.json"), json.dumps(result, indent=1))
    report_metric(args.metric, result["value"])
    log.info("trial %s: %s = %.4f (dropped: %s)", output, args.metric, result["value"], ", ".join(drop) or "-")
    return result


def read_result(output: str) -> dict:
    """A finished trial's `trial.json`."""
    return json.loads(storage.read_text(storage.join(output, "trial.json")))


def experiment_data(*, registry_config: dict, transform_uri: str | None = None) -> dict:
    """The transformed data that tuning trials and ablation runs train and score on: the Beam
    transform folder `transform_uri` when given, else the one the champion was trained on (its run
    folder, recorded with the version), so experiments compare with the model in service.
    {"train", "eval", "stats", "version"} (version: the champion's, or "" for a given folder)."""
    from ml import registry
    from ml.run_layout import RunLayout

    version = ""
    if not transform_uri:
        try:
            champion = registry.connect(registry_config).get("champion")
        except registry.RegistryError as exc:
            raise ValueError(f"no champion to take the data from ({exc}): train one first, or name a "
                             "transform folder") from None
        version = champion["version"]
        transform_uri = RunLayout(champion["artifacts"]).transform
    transform_uri = transform_uri.rstrip("/")
    data = {"train": f"{transform_uri}/train/part-*.tfrecord", "eval": f"{transform_uri}/eval/part-*.tfrecord",
            "stats": f"{transform_uri}/stats.json", "version": version}
    for key in ("train", "eval"):
        if not storage.glob(data[key]):
            raise ValueError(f"no {key} shards match {data[key]}")
    return data


if __name__ == "__main__":
    from ml.errors import run_main

    run_main(run)
