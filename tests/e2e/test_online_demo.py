"""`make demo`'s online part (`scripts/demo.py` `online()`) at a small scale, through real Airflow
(dag.test) and the real service in a child process, in its own Airflow home and data folder: the
champion and the challenger are copies of the session's trained model, the bad model a tiny one
with AUC ~0.5 registered as trained on shuffled labels and rejected by the gate. Checks what the
demo claims: all head hits on the precomputed day, a hybrid advice whose head batch_prediction
precomputes, the bandit's tail split and its rewards from late labels, the bad champion judged
bad in consecutive windows, the automatic rollback with its audit row, a clean stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ml.config import PROJECT_ROOT

START = "2026-11-20"  # landed; the online days are the three after it (forecasts only)
SENSORS = 50  # 1,200 keys a day: above the advisor's max_static_keys (1,000), so hybrid when peaked
SEED = 3

SCRIPT = """
import json, sys
sys.path[:0] = [{root!r}, {root!r} + "/plugins"]
from scripts import airflow_env
airflow_env.apply(airflow_home={home!r}, data_dir={data!r})
airflow_env.init_db()
from pathlib import Path
from scripts import demo
from ml import config as C, registry, simulate
from tests.ml.tiny_model import build

cfg = C.load("local")
simulate.simulate(cfg["storage"]["bucket"], {start!r}, 1, {seed}, sensors={sensors}, forecast_days=3)
models = registry.connect(cfg["registry"])
good = [models.register({trained!r}, {{"metrics": {{}}}}) for _ in range(2)]
for version in good:
    models.promote(version, "test")  # champion good[1], previous (the challenger) good[0]
bad = models.register(build({data!r} + "/bad-model", cfg["schema_path"], scale=0.02),
                      {{"metrics": {{}}, "training": {{"shuffled_labels": True}}}})
models.attach(bad, "blessing", {{"decision": "fail", "reasons": ["AUC 0.50 < min 0.70"]}})
runs = []

def run(dag_id, conf=None, label="", **_):
    states = {{ti.task_id: str(ti.state) for ti in airflow_env.get_dag(dag_id).test(run_conf=conf).get_task_instances()}}
    runs.append({{"dag": dag_id, "label": label, "states": states}})
    assert set(states.values()) <= {{"success", "skipped"}}, (dag_id, states)

run("batch_prediction", conf={{"target_date": "2026-11-21"}}, label="-static")  # the story's last step
out = demo.online(cfg, days=("2026-11-21", "2026-11-22", "2026-11-23"), requests=(1200, 1200, 800), seed={seed}, sensors={sensors}, run=run,
                  logs=Path({data!r}) / "logs")
print(json.dumps({{"out": out, "runs": runs, "good": good, "bad": bad}}, default=str))
"""


@pytest.fixture(scope="module")
def online(static_training_run, config, tmp_path_factory):
    from ml import registry

    trained = registry.get(config["registry"]["root"], "v0001")["path"]  # static_training's model
    folder = tmp_path_factory.mktemp("online-demo")
    code = SCRIPT.format(root=str(PROJECT_ROOT), home=str(folder / "home"), data=str(folder / "data"), start=START,
                         seed=SEED, sensors=SENSORS, trained=trained)
    env = {k: v for k, v in os.environ.items() if k not in ("PRODML_SERVE_CHALLENGERS",)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                          env={**env, "PRODML_PROFILE": "local"}, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def served(online, what: str) -> list[dict]:
    return [r for r in online["out"]["served"] if r["what"] == what]


def runs(online, label: str) -> list[dict]:
    return [r for r in online["runs"] if r["label"].startswith(label)]


def test_static_day_all_head_then_the_advised_head_and_a_bandit_routed_tail(online):
    out, (challenger, champion) = online["out"], online["good"]
    [static], [hybrid] = served(online, "every key precomputed"), served(online, "advised head precomputed")
    assert static["day"] == "2026-11-21" and hybrid["day"] == "2026-11-22"
    assert static["paths"] == {"head": 1200} and static["versions"] == {champion: 1200} and not static["errors"]
    advice = out["advice"]
    assert advice["recommendation"] == "hybrid" and advice["key_space"] == SENSORS * 24
    assert advice["head_share"] >= 0.8 and advice["head_size"] < advice["cardinality"]
    # the advised head answers at least its share of the next day (same popular keys), the tail goes
    # through the bandit from the prior: both versions get some of it
    assert hybrid["paths"]["head"] / 1200 >= 0.5 and hybrid["paths"]["tail"] > 0
    assert hybrid["versions"].get(challenger, 0) > 0 and hybrid["versions"][champion] > hybrid["versions"][challenger]
    assert runs(online, "-2026-11-22-advised-head")[0]["states"]["predict"] == "success"


def test_the_bandit_learns_rewards_from_the_late_labels_through_the_monitoring_dag(online):
    out, (challenger, champion) = online["out"], online["good"]
    arms = out["bandit"]["arms"]
    assert set(arms) == {champion, challenger}
    for version in (champion, challenger):
        assert arms[version]["successes"] + arms[version]["failures"] > 0
    assert sum(out["bandit"]["shares"].values()) == pytest.approx(1.0)
    assert runs(online, "-bandit")[0]["states"]["update_bandit"] == "success"


def test_the_bad_champion_is_judged_bad_and_rolled_back_with_an_audit_row(online):
    out, (challenger, champion), bad = online["out"], online["good"], online["bad"]
    assert sum(r["versions"].get(bad, 0) for r in served(online, f"champion {bad}")) >= 500  # min_labelled
    assert out["windows"] == [True, True, True]  # monitoring.rollback.consecutive_windows
    assert [r["states"]["roll_back"] for r in runs(online, "-window")] == ["skipped", "skipped", "success"]
    assert out["aliases_after"] == {"champion": champion, "previous": bad}
    audit = out["audit"]
    assert (audit["action"], audit["from_version"], audit["to_version"], audit["actor"]) == (
        "rollback", bad, champion, "monitoring")
    [after] = served(online, "after the rollback")
    assert bad not in after["versions"] and not after["errors"]
    assert set(after["versions"]) <= {champion, challenger}
    assert out["exit_code"] == 0
