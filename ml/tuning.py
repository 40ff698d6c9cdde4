"""Hyperparameter tuning: the search space from the profile, a study shared by parallel trials, the
best parameters stored and merged into the next training run.

The `tuning` DAG's task bodies. Locally every mapped trial task opens the same Optuna study (`open_study`)
and asks it for parameters: the TPE sampler proposes them from every trial finished so far, so later
trials are guided by earlier ones. The study lives in Optuna's journal file storage under the
profile's data root: an append-only log guarded by a file lock, which Optuna provides for several
processes on one machine (SQLite is not recommended for concurrent writers; an RDB URL such as
`postgresql://...` works as well for workers on several machines). On the gcp profile Vertex AI's
tuning service (Vizier) runs the study itself; `vertex_parameter_specs` turns the same search space
into its parameter specs and `best_from_vertex_job` reads its answer.

Search space (`tuning.search_space`, one entry per ml.trainer flag):
    learning_rate: {type: float, low: 0.0003, high: 0.03, log: true}
    hidden_units:  {type: categorical, choices: ["32", "64,32", "128,64"]}
    epochs:        {type: int, low: 2, high: 8}

The best parameters go to `tuning.best_uri` (`<bucket>/tuning/best.json`); the training DAGs read them
at run time (`training_params`), over the profile's `training:` section, and the gate still decides.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

from ml import storage
from ml.errors import PermanentError

log = logging.getLogger(__name__)

# ml.trainer flags a search space may tune and the training DAGs take from best.json
TUNABLE = ("learning_rate", "hidden_units", "batch_size", "epochs")
TYPES = ("float", "int", "categorical")


class TuningError(PermanentError, ValueError):
    pass


def search_space(space: dict) -> dict:
    """Check the profile's `tuning.search_space` and return it with defaults filled in."""
    if not space:
        raise TuningError("tuning.search_space is empty")
    checked = {}
    for name, spec in space.items():
        where = f"tuning.search_space.{name}"
        if name not in TUNABLE:
            raise TuningError(f"{where}: not a tunable ml.trainer flag ({', '.join(TUNABLE)})")
        kind = spec.get("type")
        if kind not in TYPES:
            raise TuningError(f"{where}: type must be one of {', '.join(TYPES)}, not {kind!r}")
        if kind == "categorical":
            if not spec.get("choices"):
                raise TuningError(f"{where}: a categorical parameter needs choices")
            checked[name] = {"type": kind, "choices": list(spec["choices"])}
            continue
        low, high = spec.get("low"), spec.get("high")
        if low is None or high is None or not low < high:
            raise TuningError(f"{where}: needs low < high, got {low!r}, {high!r}")
        log_scale = bool(spec.get("log", False))
        if log_scale and low <= 0:
            raise TuningError(f"{where}: a log scale needs low > 0")
        cast = float if kind == "float" else int
        checked[name] = {"type": kind, "low": cast(low), "high": cast(high), "log": log_scale}
    return checked


def distributions(space: dict) -> dict:
    """The search space as Optuna distributions."""
    import optuna

    out = {}
    for name, spec in search_space(space).items():
        if spec["type"] == "categorical":
            out[name] = optuna.distributions.CategoricalDistribution(spec["choices"])
        elif spec["type"] == "float":
            out[name] = optuna.distributions.FloatDistribution(spec["low"], spec["high"], log=spec["log"])
        else:
            out[name] = optuna.distributions.IntDistribution(spec["low"], spec["high"], log=spec["log"])
    return out


def make_sampler(kind: str = "tpe", seed: int = 0, n_startup_trials: int = 4):
    """`tpe`: guided by the trials so far (random for the first `n_startup_trials`); `random`: not
    guided, the baseline it is measured against. TPE's constant liar counts the trials still
    running, so parallel trials do not all propose the same point."""
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True,
                                          constant_liar=True)
    raise TuningError(f"tuning.sampler must be tpe or random, not {kind!r}")


def study_storage(uri: str | None):
    """None (in memory), an RDB URL (`sqlite:///…`, `postgresql://…`), or a journal file path /
    `file://` URI: Optuna's storage for several processes on one machine."""
    import optuna

    if not uri:
        return None
    if "://" in uri and not uri.startswith("file://"):
        return optuna.storages.RDBStorage(uri)
    path = storage.to_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def open_study(*, name: str, storage_uri: str | None, sampler=None, direction: str = "maximize"):
    """The study `name` in `storage_uri`, created by whichever trial comes first (every trial task
    calls this; a rerun of the DAG run resumes the same study)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=study_storage(storage_uri), sampler=sampler,
                               direction=direction, load_if_exists=True)


def ask_and_tell(study, space: dict, objective) -> dict:
    """One trial: ask the study for parameters, evaluate `objective(params)`, tell the result (a
    failure is told as FAIL, so the study does not wait for it, and re-raised)."""
    import optuna

    trial = study.ask(distributions(space))
    try:
        value = float(objective(dict(trial.params), trial.number))
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    study.tell(trial, value)
    return {"number": trial.number, "params": dict(trial.params), "value": value}


def run_key(run_id: str) -> str:
    """An Airflow run id as a folder and study name (`manual__2026-11-27T10:00:00+00:00` →
    `manual__2026-11-27T10_00_00_00_00`): manual runs may have no logical date to key on."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "adhoc")


def prepare(*, registry_config: dict, transform_uri: str | None, artifacts_uri: str, run_id: str) -> dict:
    """The data every trial trains on (`ml.trial.experiment_data`: the champion's, or a given
    transform folder), the run's study name and its trials' folder."""
    from ml.trial import experiment_data

    key = run_key(run_id)
    return {**experiment_data(registry_config=registry_config, transform_uri=transform_uri),
            "study": f"tuning-{key}", "output_root": f"{artifacts_uri}/tuning/{key}/trials"}


def trial_indices(trials) -> list[int]:
    """What the trial task is mapped over: 0 .. trials-1 (the run's budget)."""
    if int(trials) < 1:
        raise TuningError(f"trials must be at least 1, not {trials}")
    return list(range(int(trials)))


def hidden_units_flag(hidden) -> str:
    """[64, 32] or "64,32" → "64,32" (ml.trainer's --hidden_units)."""
    return ",".join(str(u) for u in hidden) if isinstance(hidden, (list, tuple)) else str(hidden)


def trial_args(*, data, schema_path: str, training: dict, evaluation: dict, epochs: int, seed: int, metric: str,
               space: dict) -> dict:
    """ml.trial's flags shared by every trial: the data (a dict, or an XComArg whose keys resolve at
    run time), the schema, the training section's values for what the search space does not tune,
    the trial epochs and seed, the metric and evaluation costs. The tuned values come per trial."""
    fixed = {"learning_rate": training["learning_rate"], "batch_size": training["batch_size"],
             "hidden_units": hidden_units_flag(training["hidden_units"]), "epochs": epochs}
    return {"train": data["train"], "eval": data["eval"], "stats": data["stats"], "schema": schema_path,
            "seed": seed, "metric": metric, "cost_false_negative": evaluation["cost_false_negative"],
            "cost_false_positive": evaluation["cost_false_positive"],
            **{k: v for k, v in fixed.items() if k not in space}}


def flags(args: dict) -> list[str]:
    """{"epochs": 3, "drop": ""} → ["--epochs=3"] (empty values left out)."""
    return [f"--{k}={v}" for k, v in args.items() if v not in (None, "")]


def run_trial(*, index: int, study_name: str, storage_uri: str, space: dict, seed: int, n_startup_trials: int,
              trial_args: dict, output_root: str, metric: str = "auc", python: str = sys.executable) -> dict:
    """One mapped trial of the `tuning` DAG: ask the shared study, run `python -m ml.trial` with the
    proposed parameters over `trial_args` (data, schema, fixed flags) into `<output_root>/trial-NNN/`,
    tell the study its metric. {"number", "params", "value", "output"}."""
    from ml import trial as trial_run

    study = open_study(name=study_name, storage_uri=storage_uri,
                       sampler=make_sampler("tpe", seed + index, n_startup_trials))
    outputs = {}

    def objective(params: dict, number: int) -> float:
        output = outputs[number] = storage.join(output_root, f"trial-{number:03d}")
        argv = [python, "-m", "ml.trial", *flags({**trial_args, **params, "metric": metric, "output": output})]
        log.info("trial %d: %s", number, " ".join(argv))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.info("%s", line.rstrip())
        if proc.wait() != 0:
            raise RuntimeError(f"trial {number}: python -m ml.trial exited with {proc.returncode}; see the log above")
        return trial_run.read_result(output)["value"]

    result = ask_and_tell(study, space, objective)
    return {**result, "output": outputs[result["number"]]}


def best_of_study(study) -> dict:
    """The best finished trial: {"params", "value", "number", "trials"} (completed trials counted)."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise TuningError(f"study {study.study_name}: no trial finished")
    best = study.best_trial
    return {"params": dict(best.params), "value": best.value, "number": best.number, "trials": len(done)}


def best_from_vertex_job(job: dict, metric: str, space: dict) -> dict:
    """The best succeeded trial of a Vertex AI HyperparameterTuningJob (as the operator returns it:
    `HyperparameterTuningJob.to_dict`), its parameter values typed as the search space says.
    Vertex passes categorical values as strings: they are mapped back to the configured choices."""
    space = search_space(space)
    scored = []
    for t in job.get("trials", []):
        if t.get("state") not in ("SUCCEEDED", 4):
            continue
        values = {m["metric_id"]: m["value"] for m in (t.get("final_measurement") or {}).get("metrics", [])}
        if metric in values:
            scored.append((values[metric], t))
    if not scored:
        raise TuningError(f"tuning job {job.get('name', '?')}: no succeeded trial reported {metric!r}")
    value, best = max(scored, key=lambda pair: pair[0])
    params = {}
    for p in best.get("parameters", []):
        spec = space.get(p["parameter_id"])
        if spec is None:
            continue
        raw = p["value"]
        if spec["type"] == "categorical":
            params[p["parameter_id"]] = next(c for c in spec["choices"] if str(c) == str(raw))
        else:
            params[p["parameter_id"]] = int(raw) if spec["type"] == "int" else float(raw)
    return {"params": params, "value": float(value), "number": best.get("id"), "trials": len(scored)}


def vertex_parameter_specs(space: dict) -> dict:
    """The search space as Vertex AI parameter specs (plain dicts: `kind` names the SDK class of
    `google.cloud.aiplatform.hyperparameter_tuning`, the rest are its arguments)."""
    out = {}
    for name, spec in search_space(space).items():
        if spec["type"] == "categorical":
            out[name] = {"kind": "categorical", "values": [str(c) for c in spec["choices"]]}
        else:
            out[name] = {"kind": "double" if spec["type"] == "float" else "integer",
                         "min": spec["low"], "max": spec["high"], "scale": "log" if spec["log"] else "linear"}
    return out


def store_best(*, best_uri: str, best: dict, metric: str, source: str, study: str, run_id: str | None) -> dict:
    """Write the best parameters to `best_uri` (atomic put) for the next training run; return the record."""
    record = {"params": best["params"], "metric": metric, "value": best["value"], "trial": best.get("number"),
              "trials": best.get("trials"), "source": source, "study": study, "run_id": run_id}
    storage.write_text(best_uri, json.dumps(record, indent=1, default=str))
    log.info("best of %s (%s trials): %s = %.4f with %s", study, record["trials"], metric, record["value"],
             record["params"])
    return record


def store_study_best(*, study_name: str, storage_uri: str, best_uri: str, metric: str, run_id: str | None) -> dict:
    """After the mapped trials: the study's best trial → `best_uri` (trials that failed are left out)."""
    study = open_study(name=study_name, storage_uri=storage_uri)
    return store_best(best_uri=best_uri, best=best_of_study(study), metric=metric, source="optuna",
                      study=study_name, run_id=run_id)


def load_best(best_uri: str | None) -> dict | None:
    """The stored best parameters, or None when tuning has not run."""
    if not best_uri or not storage.exists(best_uri):
        return None
    return json.loads(storage.read_text(best_uri))


def training_params(*, training: dict, best_uri: str | None) -> dict:
    """The trainer flags of the next training run: the profile's `training:` section, with the stored
    best parameters (when tuning has run) merged over it. Tuned or not, the gate judges the candidate.
    {"epochs", "batch_size", "learning_rate", "hidden_units", "tuned_from"}."""
    params = {"epochs": training["epochs"], "batch_size": training["batch_size"],
              "learning_rate": training["learning_rate"], "hidden_units": training["hidden_units"]}
    best = load_best(best_uri)
    tuned = {k: v for k, v in ((best or {}).get("params") or {}).items() if k in TUNABLE}
    params.update(tuned)
    params["hidden_units"] = hidden_units_flag(params["hidden_units"])
    params["tuned_from"] = best_uri if tuned else ""
    if tuned:
        log.info("training with tuned parameters from %s: %s", best_uri, tuned)
    return params
