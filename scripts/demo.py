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
7. online (`online()`): the prediction service (`python -m ml.serving`, as `make serve`) in a child
   process with generated keys; a day of Zipf-peaked requests through its HTTP API (every key
   precomputed: all head hits); the serving advisor's table from the prediction log; the next day
   with only the advised head precomputed (the tail computed on demand, routed by the bandit
   between the champion and a challenger); that day's late labels, learned by the `monitoring`
   DAG's bandit task; then a bad model (the candidate trained on shuffled labels, which the gate
   rejected) made champion by hand, served, its labels landed, and `monitoring` run for the
   consecutive bad windows that confirm the breach: the closed loop rolls the champion back and
   writes the audit row; the service follows and is stopped cleanly

Each DAG runs as `airflow dags test` in a subprocess (its full log goes to a file); this script
follows the run in the Airflow metadata DB and prints each task as it starts and ends.
"""

from __future__ import annotations

import datetime as dt
import json
import os
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
# The online part serves three days after the story (forecasts exist up to FINAL_DATE + 6): the
# day batch_prediction scored after the rollback (every key precomputed), the next one (only the
# advised head precomputed), and the day a bad model serves. Requests per day, one instance each,
# Zipf(ZIPF_S)-peaked over the (sensor, hour) keys.
ONLINE_DAYS = tuple((FINAL_DATE + dt.timedelta(days=i)).isoformat() for i in range(3))
ONLINE_REQUESTS = (3000, 3000, 3000)
ZIPF_S = 1.0


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
    print(f"predictions         {counts['n_rows']} rows for {PREDICT_DATE} ({counts['n_keys']} keys: sensor × hour), "
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



# ------------------------------------------------------------------ the online part


def _answered(result: dict) -> str:
    """One line: how a replay was answered (paths, model versions, client-side latency)."""
    n = sum(result["paths"].values()) or 1
    paths = ", ".join(f"{p} {c} ({c / n:.0%})" for p, c in sorted(result["paths"].items()))
    versions = ", ".join(f"{v} {c}" for v, c in sorted(result["versions"].items()))
    errors = f"; HTTP errors {result['errors']}" if result["errors"] else ""
    return (f"{result['requests']} requests in {result['seconds']:.1f}s ({result['per_second']:.0f}/s, "
            f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms): {paths}; answered by {versions}{errors}")


def shuffled_candidate(models) -> str:
    """The newest registered version trained on shuffled labels (the story's bad candidate)."""
    bad = [r["version"] for r in models.list_versions() if (r.get("training") or {}).get("shuffled_labels")]
    if not bad:
        raise SystemExit("no version trained on shuffled labels in the registry: the story's dynamic_training "
                         "runs register one")
    return bad[-1]


def window_ends(after: dt.datetime, minutes: int, n: int) -> list[dt.datetime]:
    """The ends of the next `n` monitoring windows on the `minutes` grid, the first after `after`."""
    step, epoch = dt.timedelta(minutes=minutes), dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    first = epoch + ((after - epoch) // step + 1) * step
    return [first + i * step for i in range(n)]


def online(config: dict, *, days=ONLINE_DAYS, requests=ONLINE_REQUESTS, seed: int = SEED, sensors: int = SENSORS,
           run=run_dag, logs: Path = LOGS) -> dict:
    """Serve, advise, route with the bandit, break the champion and watch the closed loop roll it
    back (step 7 of the module docstring). `days`: the all-precomputed day, the advised-head day
    and the bad model's day; `requests`: how many for each; `seed`/`sensors`: the simulation's,
    for the late labels; `run(dag_id, conf=..., label=...)` runs a DAG (`airflow dags test` here).
    Returns what happened, read back from the service, the registry, the bucket and the warehouse."""
    from ml import features as F
    from ml import registry, storage, warehouse
    from ml.predict import read_ahead_features
    from ml.serving import advisor, replay
    from ml.serving.bandit import Bandit, default_state_uri

    schema = F.load_schema(config["schema_path"])
    key_columns = list(schema.entity_keys)  # a key within a day: (sensor_id, hour)
    models = registry.connect(config["registry"])
    aliases = models.aliases()
    champion, challenger, bad = aliases["champion"], aliases["previous"], shuffled_candidate(models)
    if challenger is None:
        raise SystemExit("no previous champion to serve as the challenger")
    static_day, hybrid_day, bad_day = days
    state_uri = ((config.get("serving") or {}).get("bandit") or {}).get("state_uri") or default_state_uri(
        config["storage"]["bucket"])
    monitoring = config["monitoring"]
    out: dict = {"champion": champion, "challenger": challenger, "bad": bad, "served": []}

    def forecast(day: str) -> list[dict]:
        return read_ahead_features(storage.join(config["storage"]["forecast"], f"dt={day}"), schema).to_pylist()

    def serve(service, day: str, n: int, what: str) -> dict:
        # the same ranking of keys every day (ranking_seed), new draws for every replay (seed)
        instances = replay.zipf_requests(forecast(day), n, key_columns=key_columns, s=ZIPF_S, ranking_seed=seed,
                                         seed=seed + 1 + len(out["served"]))
        result = replay.send(service.url, instances, service.api_key)
        say(f"    {day}, {what}: {_answered(result)}")
        out["served"].append({"day": day, "what": what, **result})
        service.wait_logged(sum(sum(r["paths"].values()) for r in out["served"]))
        return result

    def land(day: str) -> None:
        landed = replay.land_labels(config["storage"]["landing"], day, seed=seed, sensors=sensors,
                                    schema_path=config["schema_path"])
        say(f"    late labels for {day} landed: {landed['rows']} rows, {landed['label_rate']:.1%} congested "
            f"({landed['uri']})")

    print("\n" + "=" * 78 + "\nOnline: the prediction service, the advisor, the bandit and the closed loop\n" + "=" * 78)
    # serving.challengers: the service serves it beside the champion, the monitoring DAG's bandit learns it
    os.environ["PRODML_SERVE_CHALLENGERS"] = challenger
    say("▶ python -m ml.serving (as `make serve`) in a child process, API and admin keys generated for it; "
        f"challenger {challenger} (PRODML_SERVE_CHALLENGERS) — log: {(logs / 'serving.log')}")
    with replay.LocalService(log_path=logs / "serving.log") as service:
        health = service.health()
        say(f"✓ {service.url}/healthz: champion {health['champion']}, models {health['versions']}, head "
            f"{health['head']['rows']} rows for {health['head']['dates']} by {health['head']['model_version']}")

        say(f"▶ replay a day of Zipf(s={ZIPF_S})-peaked requests over the forecast keys of {static_day} "
            "(batch_prediction precomputed every key: static serving)")
        serve(service, static_day, requests[0], "every key precomputed")
        key_space = len(forecast(static_day))  # every (sensor, hour) of a day
        say(f"✓ prediction log flushed to the warehouse: {service.health()['prediction_log']['written']} rows")

        say(f"▶ the serving advisor on the logged requests: python -m ml.serving.advisor --days 1 "
            f"--key-space {key_space} --write")
        advised = subprocess.run([sys.executable, "-m", "ml.serving.advisor", "--days", "1", "--key-space",
                                  str(key_space), "--write"], cwd=ROOT, capture_output=True, text=True, check=True)
        print("\n".join("      " + line for line in advised.stdout.splitlines()))
        advice = advisor.read_advice(config["advisor"]["advice_uri"])
        out["advice"] = {k: advice[k] for k in ("recommendation", "peakedness", "head_size", "head_share",
                                                "cardinality", "key_space")}

        run("batch_prediction", conf={"target_date": hybrid_day}, label=f"-{hybrid_day}-advised-head")
        service.reload()
        health = service.health()
        say(f"✓ the service reloaded: head {health['head']['rows']} rows for {health['head']['dates']}")
        say(f"▶ {hybrid_day}: the advised head is precomputed, the tail is computed on demand and routed by "
            f"the Thompson-sampling bandit between {champion} and {challenger} (both from the prior so far)")
        serve(service, hybrid_day, requests[1], "advised head precomputed")

        for day in (static_day, hybrid_day):
            land(day)
        end = (dt.date.fromisoformat(hybrid_day) + dt.timedelta(days=1)).isoformat() + "T00:00:00+00:00"
        say(f"▶ monitoring learns the bandit's rewards from the late labels (window_end {end}: the run after "
            f"{hybrid_day}, in the simulation's time; the service stamps served_at with this machine's clock)")
        run("monitoring", conf={"window_end": end}, label="-bandit")
        state = Bandit.load(state_uri)
        if state is None:
            say(f"✗ the monitoring run stored no bandit state at {state_uri}; see {logs}/monitoring-bandit.log")
            raise SystemExit(1)
        shares = state.shares()
        print(f"      {'version':<8} {'role':<10} {'right':>6} {'wrong':>6} {'P(best)':>8} {'share':>6}  stopped")
        best = state.p_best()
        for version, arm in state.arms.items():
            role = "champion" if version == state.champion else "challenger"
            stopped = (arm["stopped"] or {}).get("reason", "")
            print(f"      {version:<8} {role:<10} {arm['successes']:>6} {arm['failures']:>6} "
                  f"{best.get(version, 0.0):>8.3f} {shares[version]:>6.1%}  {stopped}")
        out["bandit"] = {"shares": shares, "arms": state.arms}
        say(f"✓ the bandit's state is stored at {state_uri} (and its shares in the warehouse table bandit_shares); "
            "the service re-reads it every serving.bandit.reload_s")

        blessing = models.read_attachment(bad, "blessing")
        say(f"▶ a bad model: {bad}, trained on shuffled labels, was rejected by the gate ("
            f"{'; '.join(blessing.get('reasons', []))[:160]}); a person tries to move the champion to it: "
            f"python -m ml.registry rollback --version {bad}")
        refused = subprocess.run([sys.executable, "-m", "ml.registry", "rollback", "--version", bad, "--reason",
                                  "demo: wrong version typed"], cwd=ROOT, capture_output=True, text=True)
        if refused.returncode == 0:
            raise RuntimeError(f"the registry restored {bad}, which the gate failed, without --force")
        say(f"✓ refused: {refused.stderr.strip()[:160]}")
        say(f"▶ ... and forces it by mistake: python -m ml.registry rollback --version {bad} --force")
        subprocess.run([sys.executable, "-m", "ml.registry", "rollback", "--version", bad, "--force", "--reason",
                        "demo: wrong version typed"], cwd=ROOT, capture_output=True, text=True, check=True)
        service.reload()
        health = service.health()
        say(f"✓ the service follows the registry: champion {health['champion']}, head {health['head']['rows']} rows "
            f"(no batch predictions by {bad}: the tail answers everything)")
        # The quality figures judge a version from min_labelled labelled predictions on; the bandit
        # keeps routing part of the tail to the challenger, so serve until the champion has that many.
        # How much it routes to the bad champion depends on when the service re-reads the bandit's
        # state (every reload_s), so a slow machine needs more rounds: bounded, and said if short.
        need, answered = monitoring["quality"]["min_labelled"], 0
        for _ in range(12):
            answered += serve(service, bad_day, requests[2], f"champion {bad}")["versions"].get(bad, 0)
            if answered >= need:
                break
        else:
            raise SystemExit(f"{bad} answered only {answered} of the {need} requests monitoring needs to judge it "
                             "(monitoring.quality.min_labelled) in 12 rounds: the bandit routed it almost nothing")
        out["service_shares"] = service.route_shares()
        say(f"✓ {bad} answered {answered} requests (monitoring judges from {need}); the tail split the service "
            "exports (/metrics prodml_route_share): " + ", ".join(
                f"{v} {s:.1%}" for v, s in sorted(out["service_shares"].items())))
        land(bad_day)

        ends = window_ends(dt.datetime.now(dt.UTC), monitoring["window_minutes"],
                           monitoring["rollback"]["consecutive_windows"])
        say(f"▶ monitoring, hourly windows ending {', '.join(f'{e:%H:%M}' for e in ends)} UTC (quality from the "
            f"late labels of the last {monitoring['lookback_hours']} h; {len(ends)} bad windows in a row confirm a "
            "breach: monitoring.rollback.consecutive_windows)")
        out["windows"] = []
        for i, end in enumerate(ends, start=1):
            run("monitoring", conf={"window_end": end.isoformat()}, label=f"-window-{i}")
            with warehouse.connect(config["warehouse"]) as wh:
                verdict = wh.run_sql_file("monitoring_verdicts", {"model_version": bad, "until": end,
                                                                  "limit": 1}).to_pylist()
                why = [a["message"] for a in wh.run_sql_file("recent_alerts", {"limit": 50}).to_pylist()
                       if a["source"] == "monitoring.window_bad"][:1]
            judged = verdict and verdict[0]["window_end"] == end  # else the newest judged one is older
            bad_window = bool(judged and verdict[0]["breached"])
            out["windows"].append(bad_window)
            say(f"    window ending {end:%H:%M}: " + (why[0][:200] if bad_window and why else "bad" if bad_window
                                                     else "judged good" if judged else "no evidence"))
        after = models.aliases()
        out["aliases_after"] = after
        with warehouse.connect(config["warehouse"]) as wh:
            audit = wh.run_sql_file("rollback_audit_recent", {"limit": 1}).to_pylist()
        out["audit"] = audit[0] if audit else None
        if after["champion"] == bad or not audit:
            say(f"✗ no automatic rollback: champion {after['champion']}; see {logs}/monitoring-window-*.log")
            raise SystemExit(1)
        a = audit[0]
        say(f"✓ closed loop: champion {a['from_version']} → {a['to_version']}; rollback_audit: {a['action']} by "
            f"{a['actor']}, windows {a['windows']}: {a['reason']}")

        service.reload()
        serve(service, bad_day, max(1, requests[2] // 10), "after the rollback")
        logged = service.health()["prediction_log"]
    out["exit_code"], out["logged"] = service.returncode, logged
    say(f"✓ service stopped (SIGINT, exit code {service.returncode}); prediction log: {logged['written']} rows "
        f"written, {logged['dropped']} dropped")
    print(online_summary(out))
    return out


def online_summary(out: dict) -> str:
    """The online part in a few lines, from what `online` read back."""
    lines = ["", "Online (from the service's answers, the stored advice and bandit state, rollback_audit):", "",
             f"{'day':<11} {'traffic':<26} {'requests':>8} {'head':>5} {'tail':>5}  answered by"]
    for r in out["served"]:
        n = sum(r["paths"].values()) or 1
        lines.append(f"{r['day']:<11} {r['what']:<26} {r['requests']:>8} {r['paths'].get('head', 0) / n:>5.0%} "
                     f"{r['paths'].get('tail', 0) / n:>5.0%}  "
                     + ", ".join(f"{v} {c}" for v, c in sorted(r["versions"].items())))
    a, audit = out["advice"], out["audit"]
    lines += [
        "",
        f"advisor      {a['recommendation']}: the {a['head_size']:,} most requested of {a['key_space']:,} keys take "
        f"{a['head_share']:.0%} of the requests (peakedness {a['peakedness']:.3f})",
        "bandit       tail shares after the late labels: "
        + ", ".join(f"{v} {s:.0%}" for v, s in out["bandit"]["shares"].items()),
        f"closed loop  {out['bad']} made champion by hand → {sum(out['windows'])} bad windows in a row → rolled back "
        f"to {audit['to_version']} by {audit['actor']} (rollback_audit)",
        f"service      stopped with exit code {out['exit_code']}; {out['logged']['written']:,} predictions logged, "
        f"{out['logged']['dropped']} dropped",
    ]
    return "\n".join(lines)


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
    online(config)
    say(f"demo finished in {time.monotonic() - total:.0f}s")


if __name__ == "__main__":
    main()
