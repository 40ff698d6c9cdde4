"""
### rollback

Move the `champion` alias back (manual). Param `version`: the version to restore; empty = the
`previous` alias. The move is atomic and recorded in the registry history; the champion Asset
fires, so `batch_prediction` rescores with the restored model. Same operation as
`python -m ml.registry rollback [--version V]`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task
from prodml_airflow.assets import CHAMPION
from prodml_airflow.defaults import default_args
from prodml_airflow.failures import fail_fast
from prodml_airflow.targets import google_cloud
from prodml_airflow.vertex_endpoint import vertex_endpoint
from prodml_airflow.vertex_mirror import vertex_mirror

from ml.config import load

CONFIG = load()


@dag(
    dag_id="rollback",
    description="Manual: move the champion alias back to the previous (or a chosen) model version.",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,  # two rollbacks at once would race on the same alias
    default_args=default_args(alerts=CONFIG.get("alerts")),
    params={
        # null default: the trigger form accepts it as it is (an empty required string disables the button)
        "version": Param(None, type=["null", "string"],
                         description="Version to restore (e.g. v0003); empty = the previous champion."),
        "reason": Param("manual rollback", type="string",
                        description="Why: kept in the registry history and in the alert."),
        "force": Param(False, type="boolean",
                       description="Restore the chosen version even though the gate failed it."),
    },
    tags=["prodml", "serving"],
    doc_md=__doc__,
)
def rollback():
    @task(outlets=[CHAMPION])
    def move_champion_back(params=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from ml import promotion_job, registry

        try:
            return promotion_job.rollback(version=params.get("version"), reason=params.get("reason", ""),
                                          force=bool(params.get("force")), registry_config=CONFIG["registry"],
                                          warehouse_config=CONFIG["warehouse"])
        except registry.RegistryError as exc:  # nothing to roll back to / unknown version: retrying won't help
            raise AirflowFailException(str(exc)) from None

    moved = move_champion_back()
    mirror = vertex_mirror(registry_config=CONFIG["registry"], google=google_cloud(CONFIG),
                           settings=CONFIG["registry"].get("vertex_mirror"))
    if mirror is not None:  # gcp profile: the Vertex aliases move back too
        moved >> mirror
    endpoint = vertex_endpoint(registry_config=CONFIG["registry"], serving_config=CONFIG.get("serving"),
                               google=google_cloud(CONFIG))
    if endpoint is not None:  # gcp profile, serving.vertex_endpoint on: the endpoint serves the restored one
        mirror >> endpoint


fail_fast(rollback())  # schema/config errors fail at once; transient ones keep their retries
