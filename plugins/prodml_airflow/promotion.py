"""Evaluate → register → gate → promote or keep: the tail that every training DAG shares.

Every promotion goes through `ml.gate`: the candidate is registered (immutable, not promoted),
the champion is evaluated on the *same* eval data, `GateOperator` decides and stores the blessing
record with the version, and only `promote` — which emits the champion Asset — moves the alias,
through `ml.gate.promote_if_blessed`, which re-reads the stored blessing. A failed gate runs
`keep`, which alerts and leaves the champion untouched.
"""

from __future__ import annotations

from airflow.sdk import task

from prodml_airflow.assets import CHAMPION
from prodml_airflow.gate import GateOperator


def champion_checkpoint(config: dict):
    """Task: the champion's Keras file for a warm start ('' for the very first model)."""

    @task(task_id="champion_checkpoint")
    def checkpoint() -> str:
        from ml import registry

        try:
            return registry.get(config["registry"]["root"], "champion")["path"] + "/model.keras"
        except registry.RegistryError:
            return ""

    return checkpoint()


def _eval_glob(candidate_uri: str) -> str:
    """<run_dir>/candidate → <run_dir>/transform/eval/part-*.tfrecord (the candidate's eval split)."""
    return candidate_uri.rsplit("/", 1)[0] + "/transform/eval/part-*.tfrecord"


def evaluate_gate_promote(config: dict, *, run_dir: str, candidate, data, reference_files, trained_by: str):
    """Wire the tail after a `train` task whose output is the candidate folder URI.

    `data` carries {"dates": [...]} of the training window; `reference_files` the validated CSVs
    trained on, whose statistics become the version's drift reference.
    Returns the task that ends the run (promote/keep join).
    """
    eval_pattern = run_dir + "/transform/eval/part-*.tfrecord"
    ev = config["evaluation"]
    root = config["registry"]["root"]

    @task
    def evaluate_candidate(candidate_uri: str) -> dict:
        from ml.evaluate import evaluate

        return evaluate(candidate_uri + "/model", _eval_glob(candidate_uri), config["schema_path"],
                        ev["cost_false_negative"], ev["cost_false_positive"], slice_by=ev["slice_by"])

    @task
    def evaluate_champion(candidate_uri: str) -> dict | None:
        """The champion on the candidate's eval data: the change thresholds compare like with like."""
        from ml import registry
        from ml.evaluate import evaluate

        try:
            champion = registry.get(root, "champion")
        except registry.RegistryError:
            return None  # first model: change checks are skipped
        return evaluate(champion["path"], _eval_glob(candidate_uri), config["schema_path"], ev["cost_false_negative"],
                        ev["cost_false_positive"], slice_by=ev["slice_by"])

    @task
    def register_candidate(candidate_uri: str, metrics: dict, window: dict, files: list, run_id=None) -> dict:
        import json

        from ml import drift, features, registry
        from ml.storage import to_path

        run_dir = to_path(candidate_uri)
        training = json.loads((run_dir / "training.json").read_text()) if (run_dir / "training.json").exists() else {}
        try:
            champion = registry.get(root, "champion")["version"]
        except registry.RegistryError:
            champion = None
        version = registry.register(root, str(to_path(candidate_uri + "/model")), {
            "metrics": metrics,
            "data_range": {"start": window["dates"][0], "end": window["dates"][-1], "days": len(window["dates"])},
            "schema_hash": features.load_schema(config["schema_path"]).digest,
            "parent_version": champion,
            "trained_by": trained_by,
            "run_id": run_id,
            "artifacts": candidate_uri.rsplit("/", 1)[0],
            # the trainer's bottleneck report (input-bound vs compute-bound, peak memory) and flags
            "training": {k: training.get(k) for k in ("bound", "input_share", "peak_rss_mb", "strategy",
                                                       "warm_start", "shuffled_labels")},
        })
        # The reference statistics of this version's training data: what drift checks compare with.
        drift.store_reference(root, version, files, config["schema_path"], config["drift"])
        return {"version": version, "champion_version": champion or "",
                "model_dir": str(to_path(candidate_uri + "/model"))}

    metrics = evaluate_candidate(candidate)
    champion_metrics = evaluate_champion(candidate)
    registered = register_candidate(candidate, metrics, data, reference_files)
    gate = GateOperator(
        task_id="gate",
        candidate_version=registered["version"],
        model_dir=registered["model_dir"],
        candidate_metrics=metrics,
        champion_metrics=champion_metrics,
        champion_version=registered["champion_version"],
        canary_uri=eval_pattern,
        schema_path=config["schema_path"],
        thresholds=config["gate"],
        registry_root=root,
    )

    @task.branch
    def decide(decision: dict) -> str:
        return "promote" if decision["decision"] == "pass" else "keep"

    @task(outlets=[CHAMPION])
    def promote(reg: dict) -> dict:
        from ml import gate as model_gate
        from ml import registry

        aliases = model_gate.promote_if_blessed(root, reg["version"], reason=trained_by)
        champion = registry.get(root, "champion")
        print(f"promoted {reg['version']} (AUC {champion['metrics']['auc']:.3f}); aliases {aliases}")
        return {"version": reg["version"], "promoted": True}

    @task
    def keep(decision: dict, run_id=None) -> dict:
        """The gate said no: the champion stays; the reasons are stored with the version and alerted."""
        from ml import alerts, warehouse

        wh = warehouse.connect(config["warehouse"])
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

    branch = decide(gate.output)
    promoted, kept = promote(registered), keep(gate.output)
    branch >> [promoted, kept]
    return promoted, kept
