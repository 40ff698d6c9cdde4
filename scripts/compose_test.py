"""`make compose-test`: the local stack (docker-compose.yaml) built, started and used for real, then
torn down, on success and on failure.

1. `docker-compose config -q` and the static checks of tests/compose/;
2. build the image, start the stack on free ports (its own env file and project name, so a stack
   started with `make up` is left alone), wait until every component is healthy;
3. simulate three weeks of traffic (40 sensors) ending yesterday into the stack's data volume;
4. through the REST API: unpause `static_training` and let the scheduler run it (a model is trained,
   gated and promoted), then unpause `batch_prediction` and trigger it with a `target_date`; every
   run must succeed, and the warehouse must hold sensors × 24 rows per scored date;
5. `airflow backfill create` inside the scheduler container over a scored and a new date: every run
   succeeds and no date holds a duplicate row;
   the prediction service (prodml-serving) then serves the champion: /healthz, a request without a
   key refused (401), one with the stack's API key answered from the precomputed head;
6. the browser test (tests/ui/) against the stack: log in, DAG list, graph, trigger, run, task log;
7. every container's log into artifacts/compose-test/compose.log, then `docker-compose down -v`.

Artefacts: artifacts/compose-test/ (timings.json, compose.log, screenshots/). Options: --keep leaves
the stack running (debugging; `docker-compose -p prodml-compose-test --env-file
artifacts/compose-test/env down -v` removes it), --no-build uses the image as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "compose-test"
ENV_FILE = ARTIFACTS / "env"
PROJECT = "prodml-compose-test"
COMPOSE = os.environ.get("COMPOSE", "docker-compose").split()
SENSORS = 40
SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "prodml-serving")
TIMINGS: dict[str, float] = {}


def say(message: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Step:
    """Times a step into TIMINGS and says when it starts and ends."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        say(f"▶ {self.name}")
        self.started = time.monotonic()
        return self

    def __exit__(self, kind, value, tb):
        TIMINGS[self.name] = round(time.monotonic() - self.started, 1)
        say(f"{'✓' if kind is None else '✗'} {self.name} ({TIMINGS[self.name]:.0f} s)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose(*args: str, capture: bool = False, timeout: float = 1800, check: bool = True,
            merge_stderr: bool = True) -> str:
    """Runs docker-compose on the test project; with `capture`, returns its stdout (and stderr, unless
    `merge_stderr` is False: then stderr only goes into the error message)."""
    argv = [*COMPOSE, "-p", PROJECT, "--env-file", str(ENV_FILE), "-f", str(ROOT / "docker-compose.yaml"), *args]
    result = subprocess.run(argv, cwd=ROOT, text=True, timeout=timeout,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=(subprocess.STDOUT if merge_stderr else subprocess.PIPE) if capture else None)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {result.returncode}:\n{(result.stdout or '')[-3000:]}"
                           f"{(result.stderr or '')[-3000:]}")
    return result.stdout or ""


def in_scheduler(*argv: str, timeout: float = 600, merge_stderr: bool = True) -> str:
    return compose("exec", "-T", "airflow-scheduler", *argv, capture=True, timeout=timeout,
                   merge_stderr=merge_stderr)


def json_in_scheduler(code: str) -> dict:
    """Runs Python `code` in the scheduler container; the last line of its stdout that is a JSON object.
    Stderr (TensorFlow's or a library's warnings, at any time up to exit) is kept out of the parse."""
    out = in_scheduler("python", "-c", code, merge_stderr=False)
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON object in the output of python -c {code!r}:\n{out[-2000:]}")


def env_value(key: str) -> str:
    for line in ENV_FILE.read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise KeyError(key)


class Api:
    """The stack's REST API (/api/v2) as user admin, with a bearer token."""

    def __init__(self, base: str, password: str):
        self.base, self.password, self.token = base, password, None

    def _request(self, method: str, path: str, body: dict | None = None, retry: bool = True) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        # One api-server worker also serves the tasks' execution API: a poll may meet a 5xx or a dropped
        # connection under load. Reads and PATCH are idempotent, so they are retried (and said); POST is not.
        attempts = 3 if retry and method in ("GET", "PATCH") else 1
        for attempt in range(1, attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as exc:
                error = RuntimeError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}")
                if exc.code < 500:
                    raise error from None
            except (OSError, ValueError) as exc:  # URLError, reset, timeout; a truncated JSON body
                error = RuntimeError(f"{method} {path}: {type(exc).__name__}: {exc}")
            if attempt < attempts:
                say(f"    (retrying {method} {path} in 3 s: {error})")
                time.sleep(3)
        raise error

    def login(self) -> None:
        self.token = None
        self.token = self._request("POST", "/auth/token", {"username": "admin", "password": self.password})[
            "access_token"]

    def get(self, path: str, retry: bool = True) -> dict:
        return self._request("GET", path, retry=retry)

    def post(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def patch(self, path: str, body: dict) -> dict:
        return self._request("PATCH", path, body)

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def wait_runs(self, dag_id: str, expect: int, timeout: float, run_type: str | None = None) -> list[dict]:
        """Wait until at least `expect` runs (of `run_type`) exist and all are finished; all must succeed."""
        deadline, last = time.monotonic() + timeout, None
        while True:
            runs = [r for r in self.runs(dag_id) if run_type is None or r["run_type"] == run_type]
            states = sorted((r["dag_run_id"], r["state"]) for r in runs)
            if states != last:
                say(f"    {dag_id}: {', '.join(f'{rid} {state}' for rid, state in states) or 'no runs yet'}")
                last = states
            if len(runs) >= expect and all(r["state"] in ("success", "failed") for r in runs):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id}: runs not finished after {timeout:.0f} s: {states}")
            time.sleep(5)
        failed = [r for r in runs if r["state"] != "success"]
        if failed:
            details, logs = {}, []
            for r in failed:
                tasks = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{r['dag_run_id']}/taskInstances")["task_instances"]
                details[r["dag_run_id"]] = {t["task_id"]: t["state"] for t in tasks}
                logs += [self.task_log_tail(dag_id, r["dag_run_id"], t) for t in tasks if t["state"] == "failed"]
            raise RuntimeError(f"{dag_id}: runs failed: {details}\n" + "\n".join(logs))
        return runs

    def task_log_tail(self, dag_id: str, run_id: str, task: dict, lines: int = 25) -> str:
        """The end of a task's log, for the failure message: CI shows only the end of this script's output."""
        try:
            content = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task['task_id']}/logs/"
                               f"{task['try_number']}?full_content=true&map_index={task.get('map_index', -1)}")
        except RuntimeError as exc:  # what _request raises for HTTP and connection errors
            return f"--- {run_id} {task['task_id']}: log not readable ({exc})"
        entries = content.get("content") or []
        text = [e if isinstance(e, str) else " ".join(str(e.get(k)) for k in ("level", "event", "error_detail")
                                                        if e.get(k)) for e in entries]
        return f"--- {run_id} {task['task_id']} try {task['try_number']} (last {lines} log lines):\n" + "\n".join(
            line[:400] for line in text[-lines:])


def wait_healthy(api: Api, timeout: float = 600) -> None:
    """Docker's healthchecks of the api-server and the scheduler, and the heartbeats of every
    component in /api/v2/monitor/health (the dag-processor's and triggerer's docker checks run once
    a minute; they are checked at the end)."""
    deadline = time.monotonic() + timeout
    while True:
        health = {s: container_health(s) for s in ("airflow-apiserver", "airflow-scheduler")}
        try:
            monitor = api.get("/api/v2/monitor/health", retry=False)  # this loop is the retry
            components = {k: v.get("status") for k, v in monitor.items()}
        except (RuntimeError, OSError):
            components = {}
        if all(v == "healthy" for v in health.values()) and components and all(
                v == "healthy" for v in components.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"stack not healthy after {timeout:.0f} s: {health} {components}")
        time.sleep(3)


def container_health(service: str) -> str:
    cid = compose("ps", "-q", service, capture=True).strip()
    if not cid:
        return "absent"
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}"
                          "{{end}}", cid], capture_output=True, text=True).stdout.split()
    return out[1] if len(out) > 1 else (out[0] if out else "unknown")


def predictions(dates: list[str]) -> dict[str, dict]:
    code = ("import json; from ml import config, warehouse; wh = warehouse.connect(config.load()['warehouse']); "
            f"rows = {{d: wh.run_sql_file('prediction_counts', {{'target_date': d}}).to_pylist() for d in {dates!r}}}; "
            "wh.close(); print(json.dumps({d: (r[0] if r else {'n_rows': 0}) for d, r in rows.items()}, default=str))")
    return json_in_scheduler(code)


def serving_call(path: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    """One request to the stack's prediction service: (status, JSON body)."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{env_value('SERVING_PORT')}{path}", headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read()
    try:
        return status, json.loads(answer or b"{}")
    except ValueError:  # e.g. a proxy's or server's plain-text error page: report it, do not crash on it
        return status, {"body": answer[:500].decode(errors="replace")}


def check_serving(date: str) -> None:
    """The service follows the champion and its batch predictions (it polls both), then answers a
    key of `date` from the head, with the key from the env file; without a key it refuses."""
    deadline = time.monotonic() + 180
    while True:
        try:
            status, health = serving_call("/healthz")
        except OSError:
            status, health = 0, {}
        if status == 200 and health.get("champion") and date in (health.get("head") or {}).get("dates", []):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the prediction service did not load the champion and {date}'s head: {health}")
        time.sleep(3)
    code = ("import json; from ml import config, storage; from ml.features import load_schema; "
            "from ml.predict import read_ahead_features; c = config.load(); "
            f"rows = read_ahead_features(storage.join(c['storage']['forecast'], 'dt={date}'), "
            "load_schema(c['schema_path'])); print(json.dumps(rows.slice(0, 1).to_pylist()[0], default=str))")
    instance = json_in_scheduler(code)
    status, refused = serving_call("/predict", {"instances": [instance]})
    if status != 401:
        raise AssertionError(f"/predict without a key: expected 401, got {status} {refused}")
    status, answer = serving_call("/predict", {"instances": [instance]}, key=env_value("PRODML_API_KEYS").split(",")[0])
    prediction = (answer.get("predictions") or [{}])[0]
    say(f"    /predict {instance['sensor_id']} {date} {instance['hour']}h: {status} {prediction}")
    if status != 200 or prediction.get("path") != "head" or prediction.get("model_version") != health["champion"]:
        raise AssertionError(f"expected a head answer by {health['champion']}: {status} {answer}")


def check_predictions(dates: list[str]) -> None:
    found = predictions(dates)
    for date in dates:
        row = found[date]
        say(f"    predictions {date}: {row['n_rows']} rows, {row.get('n_keys')} distinct (sensor, hour), "
            f"model {row.get('model_version')}")
        if not row["n_rows"] == row.get("n_keys") == SENSORS * 24:
            raise AssertionError(f"{date}: expected {SENSORS * 24} rows, one per (sensor, hour): {row}")


def run(args) -> None:
    today = dt.datetime.now(dt.UTC).date()
    day = lambda n: (today + dt.timedelta(days=n)).isoformat()  # noqa: E731

    with Step("validate the compose file and the static checks (tests/compose)"):
        subprocess.run([*COMPOSE, "--env-file", str(ENV_FILE), "-f", str(ROOT / "docker-compose.yaml"), "config",
                        "-q"], cwd=ROOT, check=True)
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/compose"],
                       cwd=ROOT, check=True)
    if not args.no_build:
        with Step("build the image"):
            compose("build")
    with Step("start the stack"):
        compose("up", "-d")
    api = Api(f"http://127.0.0.1:{env_value('AIRFLOW_PORT')}", env_value("AIRFLOW_ADMIN_PASSWORD"))
    with Step("wait until every component is healthy"):
        wait_healthy(api)
        api.login()
        deadline = time.monotonic() + 300
        while {d["dag_id"] for d in api.get("/api/v2/dags")["dags"]} < {"static_training", "batch_prediction"}:
            if time.monotonic() > deadline:
                raise TimeoutError("the dag-processor did not parse the DAGs in 300 s")
            time.sleep(3)
        errors = api.get("/api/v2/importErrors")
        if errors["total_entries"]:
            raise AssertionError(f"DAG import errors: {errors['import_errors']}")
    with Step(f"simulate 21 days x {SENSORS} sensors ending {day(-1)} (forecasts to {day(6)})"):
        in_scheduler("python", "-m", "ml.simulate", "--out", "/data/bucket", "--start-date", day(-21),
                     "--days", "21", "--seed", "3", "--sensors", str(SENSORS))
    with Step("static_training through the scheduler: validate, drift, transform, train, gate, promote"):
        api.patch("/api/v2/dags/static_training", {"is_paused": False})
        deadline = time.monotonic() + 60  # unpausing schedules the latest weekly tick
        while not api.runs("static_training") and time.monotonic() < deadline:
            time.sleep(3)
        if not api.runs("static_training"):
            api.post("/api/v2/dags/static_training/dagRuns", {"logical_date": f"{day(0)}T00:00:00Z"})
        api.wait_runs("static_training", expect=1, timeout=1800)
        api.patch("/api/v2/dags/static_training", {"is_paused": True})
    with Step(f"batch_prediction: unpaused, today's scheduled run ({day(0)}); triggered with target_date "
              f"{day(1)}"):
        api.patch("/api/v2/dags/batch_prediction", {"is_paused": False})
        api.post("/api/v2/dags/batch_prediction/dagRuns", {"logical_date": None, "conf": {"target_date": day(1)}})
        runs = api.wait_runs("batch_prediction", expect=2, timeout=900)
        # unpausing schedules today's 00:00 run (an Asset run, if any, also scores today: the day after the
        # newest landed day)
        check_predictions([day(1)] + ([day(0)] if any(r["run_type"] != "manual" for r in runs) else []))
    with Step(f"backfill {day(-1)}..{day(0)} inside the scheduler container ({day(0)} already scored)"):
        in_scheduler("airflow", "backfill", "create", "--dag-id", "batch_prediction", "--from-date", day(-1),
                     "--to-date", day(0), "--max-active-runs", "1", "--reprocess-behavior", "completed")
        api.wait_runs("batch_prediction", expect=2, timeout=900, run_type="backfill")
        check_predictions([day(-1), day(0), day(1)])  # replaced, never duplicated
    with Step(f"prediction service: /healthz, 401 without a key, a {day(1)} key answered from the head"):
        check_serving(day(1))
    with Step("browser test (tests/ui): log in, DAG list, graph, trigger, run, task log"):
        env = {**os.environ, "PRODML_UI_URL": api.base, "PRODML_UI_USER": "admin",
               "PRODML_UI_PASSWORD": env_value("AIRFLOW_ADMIN_PASSWORD"), "PRODML_UI_TARGET_DATE": day(2),
               "PRODML_UI_ARTIFACTS": str(ARTIFACTS / "screenshots")}
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ui"], cwd=ROOT,
                       env=env, check=True)
    with Step("every component still healthy (docker healthchecks)"):
        deadline = time.monotonic() + 180
        while (health := {s: container_health(s) for s in SERVICES}) and any(
                v != "healthy" for v in health.values()):
            if time.monotonic() > deadline:
                raise AssertionError(f"unhealthy: {health}")
            time.sleep(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--no-build", action="store_true", help="use the image as it is")
    args = parser.parse_args(argv)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ports = {k: str(free_port()) for k in ("AIRFLOW_PORT", "POSTGRES_PORT", "AIRFLOW_WORKER_LOG_PORT",
                                           "AIRFLOW_TRIGGERER_LOG_PORT", "AIRFLOW_SCHEDULER_HEALTH_PORT",
                                           "SERVING_PORT")}
    subprocess.run([str(ROOT / "scripts" / "compose_env.sh"), str(ENV_FILE), *(f"{k}={v}" for k, v in ports.items())],
                   check=True)
    say(f"project {PROJECT}, ports {ports}, artefacts {ARTIFACTS.relative_to(ROOT)}/")
    started, status, failure = time.monotonic(), 1, ""
    try:
        run(args)
        status = 0
    except Exception as exc:  # report, then tear down
        failure = f"{type(exc).__name__}: {exc}"
        say(f"✗ FAILED: {failure}")
    finally:
        with Step("collect the logs"):
            (ARTIFACTS / "compose.log").write_text(compose("logs", "--no-color", "--timestamps", capture=True,
                                                           check=False))
        if args.keep:
            say("--keep: the stack is still running")
        else:
            with Step("tear down (docker-compose down -v)"):
                (ARTIFACTS / "teardown.log").write_text(compose("down", "-v", "--remove-orphans", capture=True,
                                                                check=False, timeout=300))
        TIMINGS["total"] = round(time.monotonic() - started, 1)
        (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
        say(f"{'passed' if status == 0 else 'FAILED'} in {TIMINGS['total']:.0f} s; timings: "
            f"{ARTIFACTS.relative_to(ROOT)}/timings.json, logs: {ARTIFACTS.relative_to(ROOT)}/compose.log")
        if failure:  # again at the very end: CI keeps only the last lines of the output
            say(f"✗ why: {failure}")
    return status


if __name__ == "__main__":
    sys.exit(main())
