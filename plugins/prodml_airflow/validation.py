"""Thin operators for data validation and drift: `execute` makes one call into `ml/` and returns
a small dict (URIs and counts) for XCom. `ml` is imported inside `execute` only, so DAG files
that import these operators parse fast."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import BaseOperator

from prodml_airflow.failures import fail_fast_callable


class ValidateDataOperator(BaseOperator):
    """Validate landed CSVs against the schema (Great Expectations suite generated from it).

    Bad rows go to `quarantine_uri`, good rows to `accepted_uri`; a rejected file fails the task
    with a message naming file, row, field and rule (raw files are never touched)."""

    template_fields: Sequence[str] = ("files", "schema_path", "quarantine_uri", "accepted_uri", "report_uri",
                                      "limits")

    def __init__(self, *, files, schema_path: str, quarantine_uri: str, accepted_uri: str | None = None,
                 report_uri: str | None = None, limits: dict | None = None, fail_on_reject: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.files = files
        self.schema_path = schema_path
        self.quarantine_uri = quarantine_uri
        self.accepted_uri = accepted_uri
        self.report_uri = report_uri  # GX's validation result per file
        self.limits = limits
        self.fail_on_reject = fail_on_reject

    @fail_fast_callable
    def execute(self, context) -> dict:
        from ml import validate

        summary = validate.validate_files(self.files, self.schema_path, self.quarantine_uri, self.limits,
                                          accepted_uri=self.accepted_uri, report_uri=self.report_uri)
        self.log.info("%s", validate.verdict(summary))
        if self.fail_on_reject:
            validate.check(summary)  # raises FileRejected (a DataError): the run stops here
        return {key: summary[key] for key in ("ok", "rows_in", "rows_accepted", "rows_quarantined",
                                              "accepted", "quarantine", "rejected")}


class DriftCheckOperator(BaseOperator):
    """Compare new data with the reference statistics stored on a model version (default: the
    champion) under the thresholds and policy of `config` (the profile's `drift:` section, read at
    every check). Every score goes to `drift_scores`; breaches raise alerts; the HTML report is
    written to `report_uri`. The task fails (the run stops before training) only where the policy
    says `block` for a breached feature; with no reference yet (the first model) it compares
    nothing and succeeds, so training downstream still runs."""

    template_fields: Sequence[str] = ("data", "schema_path", "registry_config", "version", "report_uri",
                                      "data_date")

    def __init__(self, *, data, schema_path: str, registry_config: dict, warehouse: dict | None = None,
                 version: str = "champion", report_uri: str | None = None, data_date: str | None = None,
                 config: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data = data
        self.schema_path = schema_path
        self.registry_config = registry_config  # the profile's `registry:` section
        self.warehouse = warehouse  # the profile's `warehouse:` section
        self.version = version
        self.report_uri = report_uri
        self.data_date = data_date
        self.config = config  # the profile's `drift:` section

    @fail_fast_callable
    def execute(self, context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from ml import drift, registry
        from ml.warehouse import connect

        try:
            models = registry.connect(self.registry_config)
            version = models.get(self.version)["version"]
            reference = drift.load_reference(models, version)
        except (registry.RegistryError, drift.DriftError) as exc:  # e.g. the very first model
            self.log.warning("no reference statistics to compare with, nothing checked: %s", exc)
            return {"ok": True, "compared": False, "reason": str(exc)}
        run_id = context["run_id"] if context and "run_id" in context else None
        warehouse = connect(self.warehouse) if self.warehouse else None
        try:
            if warehouse is not None:
                warehouse.ensure_tables()
            result = drift.check_drift(reference, self.data, self.schema_path, config=self.config,
                                       warehouse=warehouse, run_id=run_id, data_date=self.data_date,
                                       model_version=version, source=f"{self.dag_id}.{self.task_id}",
                                       report_path=self.report_uri)
        finally:
            if warehouse is not None:
                warehouse.close()
        self.log.info("%s", drift.verdict(result))
        if result.get("report"):
            self.log.info("drift report: %s", result["report"])
        if result["blocked"]:
            raise AirflowFailException(f"drift policy blocks training on {result['blocked']}:\n"
                                       + drift.verdict(result))
        return {"ok": result["ok"], "compared": True, "drifted": result["drifted"], "leakage": result["leakage"],
                "drifted_share": result["drifted_share"], "report": result.get("report"),
                "model_version": version, "run_id": result["run_id"]}
