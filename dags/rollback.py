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

from ml.config import load

CONFIG = load()


@dag(
    dag_id="rollback",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    default_args=default_args(alerts=CONFIG.get("alerts")),
    params={
        "version": Param("", type="string", description="Version to restore (e.g. v0003); empty = previous."),
        "reason": Param("manual rollback", type="string"),
    },
    tags=["prodml", "serving"],
    doc_md=__doc__,
)
def rollback():
    @task(outlets=[CHAMPION])
    def move_champion_back(params=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from ml import alerts, registry, warehouse

        root = CONFIG["registry"]["root"]
        before = registry.aliases(root).get("champion")
        try:
            after = registry.rollback(root, params.get("version") or None, reason=params.get("reason", ""))
        except registry.RegistryError as exc:  # nothing to roll back to / unknown version: retrying won't help
            raise AirflowFailException(str(exc)) from None
        wh = warehouse.connect(CONFIG["warehouse"])
        try:
            wh.ensure_tables()
            alerts.raise_alert(wh, "warning", "registry.rollback",
                               f"champion rolled back from {before} to {after['champion']}",
                               {"reason": params.get("reason", ""), "aliases": after})
        finally:
            wh.close()
        return after

    move_champion_back()


rollback()
