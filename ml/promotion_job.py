"""Evaluate → register → promote or keep: the bodies of the promotion tail every training DAG shares.

Plain functions with explicit arguments. The candidate is the `train` task's output, the run
folder's `candidate/` (`ml.run_layout`); its eval split is the run's `transform/eval/`. The gate
itself is `ml.gate` (called by the gate operator); `promote` moves the alias only through
`ml.gate.promote_if_blessed`, which re-reads the stored blessing.
"""

from __future__ import annotations

import json

from ml import alerts, registry, storage, warehouse
from ml.run_layout import RunLayout

TRAINING_KEYS = ("bound", "input_share", "peak_rss_mb", "strategy", "warm_start", "shuffled_labels", "model_name")


def champion_checkpoint(*, registry_config: dict) -> str:
    """The champion's Keras file for a warm start ('' for the very first model)."""
    try:
        return registry.connect(registry_config).get("champion")["path"] + "/model.keras"
    except registry.RegistryError:
        return ""


def evaluate_candidate(*, candidate_uri: str, schema_path: str, cost_false_negative: float,
                       cost_false_positive: float, slice_by: str | None) -> dict:
    """The candidate's metrics on its run's eval split."""
    from ml.evaluate import evaluate

    layout = RunLayout.of_candidate(candidate_uri)
    return evaluate(layout.model, layout.eval_files, schema_path, cost_false_negative, cost_false_positive,
                    slice_by=slice_by)


def evaluate_champion(*, candidate_uri: str, registry_config: dict, schema_path: str, cost_false_negative: float,
                      cost_false_positive: float, slice_by: str | None) -> dict | None:
    """The champion on the candidate's eval data (the change thresholds compare like with like);
    None when there is no champion yet (the first model: change checks are skipped)."""
    from ml.evaluate import evaluate

    try:
        champion = registry.connect(registry_config).get("champion")
    except registry.RegistryError:
        return None
    return evaluate(champion["path"], RunLayout.of_candidate(candidate_uri).eval_files, schema_path,
                    cost_false_negative, cost_false_positive, slice_by=slice_by)


def register_candidate(*, candidate_uri: str, metrics: dict, dates: list[str], reference_files: list[str],
                       registry_config: dict, schema_path: str, drift_config: dict, trained_by: str,
                       run_id: str | None) -> dict:
    """Register the candidate (immutable, not promoted) with its metrics, training window, schema
    hash, parent (the champion) and the trainer's report, and attach the reference statistics of
    `reference_files` (what drift checks compare with).
    {"version", "champion_version" ('' if none), "model_dir"}."""
    from ml import drift, features

    layout = RunLayout.of_candidate(candidate_uri)
    models = registry.connect(registry_config)
    report = layout.training_report
    training = json.loads(storage.read_text(report)) if storage.exists(report) else {}
    try:
        champion = models.get("champion")["version"]
    except registry.RegistryError:
        champion = None
    model_dir = layout.model
    version = models.register(model_dir, {
        "metrics": metrics,
        "data_range": {"start": dates[0], "end": dates[-1], "days": len(dates)},
        "schema_hash": features.load_schema(schema_path).digest,
        "parent_version": champion,
        "trained_by": trained_by,
        "run_id": run_id,
        "artifacts": layout.root,
        # the trainer's bottleneck report (input-bound vs compute-bound, peak memory) and flags
        "training": {k: training.get(k) for k in TRAINING_KEYS},
    })
    drift.store_reference(models, version, reference_files, schema_path, drift_config)
    return {"version": version, "champion_version": champion or "", "model_dir": model_dir}


def promote(*, version: str, registry_config: dict, reason: str) -> dict:
    """Move `champion` to `version` if its stored blessing says pass (ml.gate.NotBlessedError otherwise)."""
    from ml import gate

    models = registry.connect(registry_config)
    aliases = gate.promote_if_blessed(models, version, reason=reason)
    champion = models.get("champion")
    print(f"promoted {version} (AUC {champion['metrics']['auc']:.3f}); aliases {aliases}")
    return {"version": version, "promoted": True}


def keep(*, decision: dict, trained_by: str, run_id: str | None, warehouse_config: dict) -> dict:
    """The gate said no: the champion stays; the reasons (stored with the version) are alerted."""
    wh = warehouse.connect(warehouse_config)
    try:
        wh.ensure_tables()
        alerts.raise_alert(wh, "warning", f"gate.{trained_by}",
                           f"candidate {decision['version']} rejected by the gate; champion "
                           f"{decision.get('champion_version') or 'none'} kept",
                           {"reasons": decision["reasons"], "version": decision["version"], "run_id": run_id})
    finally:
        wh.close()
    print("gate failed: " + "; ".join(decision["reasons"]))
    return {"version": decision["version"], "promoted": False}


def rollback(*, version: str | None, reason: str, registry_config: dict, warehouse_config: dict,
             force: bool = False) -> dict:
    """Move `champion` back to `version` (default: the `previous` alias) and raise a warning alert;
    return the aliases. registry.RegistryError when there is nothing to roll back to, or when
    `version` failed the gate and `force` is not set (gate.NotBlessedError)."""
    from ml import gate

    models = registry.connect(registry_config)
    if version and not force:
        gate.check_restorable(models, version)
    before = models.aliases().get("champion")
    after = models.rollback(version or None, reason=reason)
    wh = warehouse.connect(warehouse_config)
    try:
        wh.ensure_tables()
        alerts.raise_alert(wh, "warning", "registry.rollback", f"champion rolled back from {before} to "
                           f"{after['champion']}", {"reason": reason, "aliases": after})
    finally:
        wh.close()
    return after
