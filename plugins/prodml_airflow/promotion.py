"""Evaluate → register → gate → promote or keep: the task group that every training DAG ends with.

Every promotion goes through `ml.gate`: the candidate is registered (immutable, not promoted),
the champion is evaluated on the *same* eval data, `GateOperator` decides and stores the blessing
record with the version, and only `promote` — which emits the champion Asset — moves the alias,
through `ml.gate.promote_if_blessed`, which re-reads the stored blessing. A failed gate runs
`keep`, which alerts and leaves the champion untouched. The task bodies are `ml.promotion_job`.

The group does not prefix its task ids (`gate`, `promote`, `keep`, ... as before), so the
branch, XCom pulls, tests and the demo name them as they always did.
"""

from __future__ import annotations

from airflow.sdk import task, task_group

from ml.run_layout import RunLayout
from prodml_airflow.assets import CHAMPION
from prodml_airflow.gate import GateOperator


def champion_checkpoint(*, registry_config: dict):
    """Task: the champion's Keras file for a warm start ('' for the very first model)."""

    @task(task_id="champion_checkpoint")
    def checkpoint() -> str:
        from ml import promotion_job

        return promotion_job.champion_checkpoint(registry_config=registry_config)

    return checkpoint()


@task_group(group_id="promotion", prefix_group_id=False)
def promotion(*, candidate, dates, reference_files, layout: RunLayout, trained_by: str, registry_config: dict,
              schema_path: str, evaluation: dict, gate_thresholds: dict, drift_config: dict,
              warehouse_config: dict):
    """Wire the tail after a `train` task whose output (`candidate`) is the run's candidate folder URI.

    `dates`: the training window's dates; `reference_files`: the validated CSVs trained on, whose
    statistics become the version's drift reference; `layout`: the run folder (its eval split feeds
    the gate's canary rows); `evaluation`: the profile's costs and `slice_by` (unset: the schema's slices).
    Used as a whole downstream: `promotion(...) >> next_task` runs after promote or keep.
    """
    costs = {"cost_false_negative": evaluation["cost_false_negative"],
             "cost_false_positive": evaluation["cost_false_positive"], "slice_by": evaluation.get("slice_by")}

    @task
    def evaluate_candidate(candidate_uri: str) -> dict:
        from ml import promotion_job

        return promotion_job.evaluate_candidate(candidate_uri=candidate_uri, schema_path=schema_path, **costs)

    @task
    def evaluate_champion(candidate_uri: str) -> dict | None:
        """The champion on the candidate's eval data: the change thresholds compare like with like."""
        from ml import promotion_job

        return promotion_job.evaluate_champion(candidate_uri=candidate_uri, registry_config=registry_config,
                                               schema_path=schema_path, **costs)

    @task
    def register_candidate(candidate_uri: str, metrics: dict, dates: list, files: list, run_id=None) -> dict:
        from ml import promotion_job, training_job

        # A warm start that fell back to training from scratch is alerted here: the trainer has no
        # warehouse (on gcp it runs on Vertex).
        training_job.alert_warm_start(candidate_uri=candidate_uri, trained_by=trained_by, run_id=run_id,
                                      warehouse_config=warehouse_config)
        return promotion_job.register_candidate(
            candidate_uri=candidate_uri, metrics=metrics, dates=dates, reference_files=files,
            registry_config=registry_config, schema_path=schema_path, drift_config=drift_config,
            trained_by=trained_by, run_id=run_id)

    metrics = evaluate_candidate(candidate)
    champion_metrics = evaluate_champion(candidate)
    registered = register_candidate(candidate, metrics, dates, reference_files)
    gate = GateOperator(
        task_id="gate",
        candidate_version=registered["version"],
        model_dir=registered["model_dir"],
        candidate_metrics=metrics,
        champion_metrics=champion_metrics,
        champion_version=registered["champion_version"],
        canary_uri=layout.eval_files,
        schema_path=schema_path,
        thresholds=gate_thresholds,
        registry_config=registry_config,
    )

    @task.branch
    def decide(decision: dict) -> str:
        return "promote" if decision["decision"] == "pass" else "keep"

    @task(outlets=[CHAMPION])
    def promote(reg: dict) -> dict:
        from ml import promotion_job

        return promotion_job.promote(version=reg["version"], registry_config=registry_config, reason=trained_by)

    @task
    def keep(decision: dict, run_id=None) -> dict:
        """The gate said no: the champion stays; the reasons are stored with the version and alerted."""
        from ml import promotion_job

        return promotion_job.keep(decision=decision, trained_by=trained_by, run_id=run_id,
                                  warehouse_config=warehouse_config)

    decide(gate.output) >> [promote(registered), keep(gate.output)]
