"""Environment for running this project's DAGs through real Airflow on the local profile.

`apply()` must run before airflow is imported: Airflow reads its configuration at import.
Used by `make demo` (scripts/demo.py) and the end-to-end tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def apply(airflow_home: str | Path | None = None, data_dir: str | Path | None = None) -> None:
    env = {
        "PRODML_HOME": str(ROOT),
        "AIRFLOW_HOME": str(airflow_home or ROOT / "airflow_home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW_CONN_FS_DEFAULT": '{"conn_type":"fs","extra":{"path":"/"}}',
        "GX_ANALYTICS_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    if data_dir is not None:
        env["PRODML_DATA"] = str(data_dir)
    os.environ.update(env)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    for path in (str(ROOT / "plugins"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)


def init_db() -> None:
    """Create/upgrade the SQLite metadata DB (idempotent, ~1 s)."""
    from airflow.utils import db

    db.initdb()


def get_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.get_dag(dag_id)
