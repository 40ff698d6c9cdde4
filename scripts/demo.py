"""`make demo`: the traffic scenario end to end on the local profile, through real Airflow.

1. simulate two weeks of city traffic sensors, then four more days that carry the course's
   failure scenarios (ground truth in bucket/ground_truth.json)
2. `static_training` (validate → drift → Beam transform → train → evaluate → gate → promote)
3. `batch_prediction` for the next day (champion × known-ahead features → DuckDB)
4. `dynamic_training` day by day: a normal day (retrain, gate decides), the logging-format
   change (rejected by validation), the weather model's silent switch to Fahrenheit (a third of
   its values are outside the schema's range: rejected by validation, every row checked), road
   closures (valid values, so a drift alert, retrain, gate decides), a deliberately bad candidate
   trained on shuffled labels (rejected by the gate)
5. a manual `rollback`, then `batch_prediction` again with the restored champion
6. a summary and the story table, rebuilt from the registry history, the alerts table and the
   warehouse (not from this script's variables)

Each DAG runs as `airflow dags test` in a subprocess (its full log goes to a file); this script
follows the run in the Airflow metadata DB and prints each task as it starts and ends.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from scripts import airflow_env  # noqa: E402

DATA = ROOT / ".prodml"  # the local profile's default data folder: `python -m ml.registry list` sees it
LOGS = DATA / "logs"
START = dt.date(2026, 11, 2)
DAYS = 14
SENSORS = 200
SEED = 42
TRAIN_DATE = START + dt.timedelta(days=DAYS)  # static_training's window ends here
PREDICT_DATE = TRAIN_DATE  # the first day without observations: the day to predict
FINAL_DATE = TRAIN_DATE + dt.timedelta(days=5)  # scored again after the rollback
# Days that land after the first model, one dynamic_training run each.
STORY = [
    ("normal", {}),
    ("logging_format_change", {}),
    ("weather_model_shift", {}),
    ("road_closure", {}),
    ("normal", {"shuffle_labels": True}),  # the deliberately bad candidate
]
REJECTED_BY_VALIDATION = {"logging_format_change", "weather_model_shift"}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def task_states(dag_id: str, known_runs: set[str]) -> dict[str, tuple[str | None, float | None]]:
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        run = (session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id.notin_(known_runs))
               .order_by(DagRun.id.desc()).first())
        if run is None:
            return {}
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
        return {ti.task_id: (str(ti.state) if ti.state else None, ti.duration) for ti in tis}


def existing_runs(dag_id: str) -> set[str]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return {r for (r,) in session.query(DagRun.run_id).filter(DagRun.dag_id == dag_id)}


def run_dag(dag_id: str, logical_date: dt.date | None = None, conf: dict | None = None,
            expect_failure: bool = False, label: str = "") -> None:
    """`airflow dags test` in a subprocess, printing task starts/ends as the DB records them."""
    log_path = LOGS / f"{dag_id}{label}.log"
    argv = [str(Path(sys.executable).with_name("airflow")), "dags", "test", dag_id]
    argv += [logical_date.isoformat()] if logical_date else []
    argv += ["--conf", json.dumps(conf)] if conf else []
    say(f"▶ {dag_id} ({f'logical date {logical_date}' if logical_date else 'manual'}"
        f"{', conf ' + json.dumps(conf) if conf else ''}) — full log: {log_path.relative_to(ROOT)}")
    known_runs = existing_runs(dag_id)
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        seen: dict[str, str | None] = {}
        while True:
            done = proc.poll() is not None
            for task_id, (state, duration) in task_states(dag_id, known_runs).items():
                if seen.get(task_id) == state:
                    continue
                seen[task_id] = state
                if state == "running":
                    say(f"    ▶ {task_id}")
                elif state in ("success", "failed", "upstream_failed", "skipped"):
                    mark = {"success": "✓", "skipped": "·"}.get(state, "✗")
                    say(f"    {mark} {task_id}: {state}" + (f" in {duration:.1f}s" if duration else ""))
            if done:
                break
            time.sleep(1)
    failed = proc.returncode != 0 or any(s not in ("success", "skipped") for s in seen.values())
    if failed and expect_failure:
        say(f"✓ {dag_id} stopped as it should ({time.monotonic() - started:.0f}s)")
        return
    if failed:
        say(f"✗ {dag_id} failed; the last lines of {log_path}:")
        print("".join(log_path.read_text().splitlines(keepends=True)[-40:]))
        raise SystemExit(1)
    say(f"✓ {dag_id} done in {time.monotonic() - started:.0f}s")


def summary(config: dict) -> None:
    from ml import registry, warehouse

    champion = registry.connect(config["registry"]).get("champion")
    m = champion["metrics"]
    print("\n" + "=" * 78)
    print(f"champion model      {champion['version']}  (trained on {champion['data_range']['start']} .. "
          f"{champion['data_range']['end']}, parent {champion.get('parent_version')})")
    print(f"eval AUC            {m['auc']:.3f}    cost-weighted error {m['cost_weighted_error']:.3f}   "
          f"(threshold {m['threshold']:.3f}, {m['n']} eval rows)")
    print("by road type        " + "   ".join(
        f"{k}: AUC {v['auc']:.3f}" for k, v in m["slices"]["road_type"].items() if v["auc"] is not None))
    wh = warehouse.connect(config["warehouse"])
    try:
        counts = wh.run_sql_file("prediction_counts", {"target_date": PREDICT_DATE.isoformat()}).to_pylist()[0]
    finally:
        wh.close()
    print(f"predictions         {counts['n_rows']} rows for {PREDICT_DATE} ({counts['n_sensors']} sensors × 24 h), "
          f"mean score {counts['mean_score']:.3f}, model {counts['model_version']}")
    print(f"artifacts           {config['storage']['artifacts']}")
    print(f"registry            {config['registry']['root']}   (python -m ml.registry list)")
    print(f"warehouse           {config['warehouse']['path']}  (table {config['warehouse']['dataset']}.predictions)")
    print("browse the runs     make airflow  →  http://127.0.0.1:8080 (user admin; password printed at start)")
    print("=" * 78)


def story(config: dict) -> None:
    from ml import registry, warehouse
    from ml import story as story_module
    from ml.storage import to_path

    wh = warehouse.connect(config["warehouse"])
    try:
        rows = story_module.build(registry.connect(config["registry"]), wh,
                                  str(to_path(config["storage"]["bucket"]) / "ground_truth.json"))
        predictions = [wh.run_sql_file("prediction_counts", {"target_date": d}).to_pylist()
                       for d in (PREDICT_DATE.isoformat(), FINAL_DATE.isoformat())]
    finally:
        wh.close()
    print("\nThe story (from processed_file_sets, alerts, registry history, ground_truth.json):\n")
    print(story_module.format_table(rows))
    for p in predictions:
        if p:
            print(f"\npredictions for {p[0]['target_date']}: {p[0]['n_rows']} rows by model {p[0]['model_version']}")


def main() -> None:
    total = time.monotonic()
    shutil.rmtree(DATA, ignore_errors=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    airflow_env.apply(data_dir=DATA)
    from ml import config as config_module
    from ml import simulate

    config = config_module.load("local")
    say("preparing the Airflow metadata DB (SQLite, airflow_home/)")
    airflow_env.init_db()

    scenarios = {(TRAIN_DATE + dt.timedelta(days=i)).isoformat(): name for i, (name, _) in enumerate(STORY)}
    say(f"▶ simulate {DAYS} + {len(STORY)} days × {SENSORS} sensors from {START} (seed {SEED}); "
        f"scenarios {scenarios}")
    simulate.simulate(config["storage"]["bucket"], START.isoformat(), DAYS + len(STORY), SEED, sensors=SENSORS,
                      scenarios=scenarios)
    say(f"✓ landing area: {config['storage']['landing']}")

    run_dag("static_training", TRAIN_DATE)
    run_dag("batch_prediction", PREDICT_DATE)
    summary(config)
    for i, (name, conf) in enumerate(STORY):
        day = (TRAIN_DATE + dt.timedelta(days=i)).isoformat()
        run_dag("dynamic_training", conf={"file_set": day, **conf}, label=f"-{day}",
                expect_failure=name in REJECTED_BY_VALIDATION)
    run_dag("rollback", conf={"reason": "demo: manual rollback"})
    run_dag("batch_prediction", FINAL_DATE, label="-after-rollback")
    story(config)
    say(f"demo finished in {time.monotonic() - total:.0f}s")


if __name__ == "__main__":
    main()
