"""B5 online serving: bounded load on the loopback interface against `ml.serving` and a naive service.

Each server runs in its own process (uvicorn, one worker, as `make serve` runs it); the load comes
from this process with aiohttp's client, open loop: request i is sent at t0 + i / rate whatever
the answers do, a fixed number of requests, so every run stops by itself (aiohttp: httpx's async
pool stalls at a few hundred requests in flight). Latency is measured from
the moment a request is sent to its answer; "achieved" is the rate the client actually sent at
(on 2 busy cores the client shares the CPUs with the server).

- ours: `ml.serving` on the model trained by the DAGs' code (benchmarks.batch_prediction's
  cached model), registered and promoted, with `batch_prediction`'s table for day D (the head:
  every sensor-hour of D) in DuckDB; head hits ask for day D's keys, tail misses for day D+1's;
- ours without the prediction log: the same server with the log writer's `append` switched to a
  no-op by a route only the benchmark adds; blocks with and without the log alternate in one
  server, so a change in the machine's load hits both alike;
- naive: a FastAPI endpoint that calls the SavedModel once per request (`model.serve`, a sync
  handler on uvicorn's thread pool): no head, no batching.

    python -m benchmarks.serving_bench [--sensors 400] [--requests 4000] [--rate 1000] [--light-rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import ROOT, SCHEMA, figure, print_table, write_result

KEY = "bench-key-0123456789"
START = "2026-11-02"


# ------------------------------------------------------------------ the world the servers read


def prepare(folder: Path, sensors: int, model_rows: int | None = None) -> dict:
    """Forecasts for D and D+1, the trained model as champion, batch predictions for D."""
    from benchmarks.batch_prediction import EVALUATION, trained_model
    from ml import config as C
    from ml import features as F
    from ml import predict, registry, simulate
    from ml.prediction_job import predict_to_warehouse

    os.environ["PRODML_DATA"] = str(folder)
    config = C.load("local")
    schema = F.load_schema(str(SCHEMA))
    model = trained_model(model_rows) if model_rows else trained_model()
    bucket = config["storage"]["bucket"]
    from benchmarks.common import quiet_stdout

    with quiet_stdout():
        simulate.simulate(bucket, START, 1, seed=5, sensors=sensors, forecast_days=1)
    reg = registry.connect(config["registry"])
    version = reg.register(model["model_dir"], {"metrics": {}})
    reg.promote(version, "benchmark")
    day, next_day = START, (dt.date.fromisoformat(START) + dt.timedelta(days=1)).isoformat()
    predict_to_warehouse(target_date=day, registry_config=config["registry"], forecast_uri=config["storage"]["forecast"],
                         schema_path=str(SCHEMA), warehouse_config=config["warehouse"], evaluation=EVALUATION,
                         batch_size=4096, run_id="bench")

    def rows(date: str) -> list[dict]:
        table = predict.read_ahead_features(f"{config['storage']['forecast']}/dt={date}", schema)
        return table.to_pylist()

    return {"config": config, "version": version, "model_dir": reg.get("champion")["path"],
            "head": rows(day), "tail": rows(next_day), "day": day, "next_day": next_day}


# ------------------------------------------------------------------ the servers (child processes)


def _naive_app(model_dir: str):
    import numpy as np
    import tensorflow as tf
    from fastapi import Body, FastAPI

    from ml import features as F
    from ml import predict

    schema = F.load_schema(str(SCHEMA))
    model = predict.load_model(model_dir)
    app = FastAPI()

    @app.post("/predict")
    def predict_(body: dict = Body(...)):  # noqa: B008 - FastAPI's way to take the raw JSON
        instances = body["instances"]
        columns = {f.name: [inst.get(f.name) for inst in instances] for f in schema.model_inputs}
        inputs = F.to_model_inputs(schema, columns)
        scores = np.asarray(model.serve({k: tf.constant(v) for k, v in inputs.items()})).ravel()
        return {"predictions": [{"score": float(s)} for s in scores]}

    return app


def serve(kind: str, data: str, port: int, model_dir: str, overrides: dict | None = None) -> None:
    """Child process: run one server until killed."""
    import logging

    import uvicorn

    os.environ["PRODML_DATA"] = data
    os.environ["PRODML_API_KEYS"] = KEY
    logging.basicConfig(level=logging.WARNING)
    if kind == "naive":
        app = _naive_app(model_dir)
    else:
        from ml import config as C
        from ml.serving.__main__ import build

        # the profile's settings, as `make serve` runs them (poll off: nothing changes during a run)
        app, _ = build(C.load("local"), port=port, poll_s=3600, **(overrides or {}))
        writer = app.state.service.log_writer
        real_append = writer.append

        @app.post("/bench/prediction-log/{state}")
        async def toggle_log(state: str):  # the benchmark's switch, not part of the service
            writer.append = real_append if state == "on" else (lambda entries: None)
            if state == "off":  # ship what the last "on" block queued now, not during the "off" block
                await asyncio.get_running_loop().run_in_executor(None, writer.flush)
            return {"prediction_log": state}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(kind: str, world: dict, data: Path, overrides: dict | None = None):
    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.serving_bench", "--serve", kind, "--data", str(data),
                             "--port", str(port), "--model-dir", world["model_dir"],
                             "--overrides", json.dumps(overrides or {})], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    import urllib.error

    probe = urllib.request.Request(f"{url}/predict", data=json.dumps({"instances": [world["head"][0]]}).encode(),
                                   headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {proc.stderr.read()[-3000:]}")
        try:
            with urllib.request.urlopen(probe, timeout=5) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{kind} server did not start in 180 s")
        time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


# ------------------------------------------------------------------ the load


def _bodies(rows: list[dict], n: int, batch: int = 1) -> list[bytes]:
    return [json.dumps({"instances": [rows[(i * batch + j) % len(rows)] for j in range(batch)]}).encode()
            for i in range(n)]


async def _open_loop(url: str, bodies: list[bytes], rate: float, max_in_flight: int) -> dict:
    import aiohttp

    loop = asyncio.get_running_loop()
    latencies, errors, paths, sent = [], 0, {}, []
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base_url=url, connector=connector, headers=headers, timeout=timeout) as client:
        t0 = loop.time() + 0.1

        async def one(i: int):
            nonlocal errors
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(loop.time())
            started = time.perf_counter()
            try:
                async with client.post("/predict", data=bodies[i]) as r:
                    body = await r.read()
                    ok = r.status == 200
                latencies.append(time.perf_counter() - started)
                if ok:
                    path = json.loads(body)["predictions"][0].get("path", "naive")
                    paths[path] = paths.get(path, 0) + 1
            except Exception:
                latencies.append(time.perf_counter() - started)
                ok = False
            errors += not ok

        begun = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(bodies))))
        wall = time.perf_counter() - begun
    lat = sorted(latencies)
    span = max(sent) - min(sent) if len(sent) > 1 else 0.0

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    return {"requests": len(bodies), "offered_rps": rate, "sent_rps": round((len(sent) - 1) / span, 1) if span else None,
            "completed_rps": round(len(bodies) / wall, 1), "p50_ms": round(pct(0.50), 3), "p99_ms": round(pct(0.99), 3),
            "max_ms": round(lat[-1] * 1000, 3), "mean_ms": round(statistics.fmean(lat) * 1000, 3),
            "errors": errors, "paths": paths}


def load(url: str, rows: list[dict], n: int, rate: float, max_in_flight: int = 256, warmup: int = 200) -> dict:
    if warmup:
        asyncio.run(_open_loop(url, _bodies(rows[::-1], warmup), min(rate, 500), max_in_flight))
    return asyncio.run(_open_loop(url, _bodies(rows, n), rate, max_in_flight))


# ------------------------------------------------------------------ the benchmark


def _line(name: str, r: dict) -> str:
    return (f"  {name:<40} offered {r['offered_rps']:>5.0f}/s  sent {r['sent_rps'] or 0:>5.0f}/s  "
            f"done {r['completed_rps']:>5.0f}/s  p50 {r['p50_ms']:>8.2f} ms  p99 {r['p99_ms']:>8.2f} ms  "
            f"max {r['max_ms']:>8.1f} ms  errors {r['errors']}")


def run(sensors: int = 400, requests: int = 4000, rate: float = 1000, light_rate: float = 100,
        log_repeat: int = 3, overrides: dict | None = None, model_rows: int | None = None) -> dict:
    """Head hits, tail misses and the naive service at `rate` and at `light_rate` (a quarter of the
    requests), then the head load at `rate` with the prediction log on and off, alternated."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    results: dict = {}
    light_n = max(200, requests // 4)
    try:
        world = prepare(tmp, sensors, model_rows)
        head, tail = world["head"], world["tail"]
        print(f"\n== B5 online serving: {sensors} sensors ({len(head)} head keys for {world['day']}, "
              f"{len(tail)} tail keys for {world['next_day']}), model {world['version']}; open-loop load from "
              f"aiohttp on loopback, {requests} requests at {rate:.0f}/s, {light_n} at {light_rate:.0f}/s; "
              f"{os.cpu_count()} CPUs shared by client and server; load average {os.getloadavg()[0]:.1f}")
        with server("ours", world, tmp, overrides) as url:
            for label, rows, r, n in (("head", head, rate, requests), ("tail", tail, rate, requests),
                                      ("head_light", head, light_rate, light_n),
                                      ("tail_light", tail, light_rate, light_n)):
                results[label] = load(url, rows, n, r)
                what = "head hits" if label.startswith("head") else "tail misses (micro-batched)"
                print(_line(f"ml.serving {what} @ {r:.0f}/s", results[label]), flush=True)
            # The prediction log's cost: head blocks at `rate` with the log on and off, alternated.
            results["head_log_on"], results["head_log_off"] = [], []
            for i in range(2 * log_repeat):
                state = "off" if i % 2 == 0 else "on"
                with urllib.request.urlopen(urllib.request.Request(f"{url}/bench/prediction-log/{state}",
                                                                   method="POST"), timeout=30):
                    pass
                results[f"head_log_{state}"].append(load(url, head, requests, rate, warmup=0))
        with server("naive", world, tmp) as url:
            for label, r, n in (("naive", rate, requests), ("naive_light", light_rate, light_n)):
                results[label] = load(url, tail, n, r)
                print(_line(f"naive model.serve per request @ {r:.0f}/s", results[label]), flush=True)
        on = statistics.median(r["p99_ms"] for r in results["head_log_on"])
        off = statistics.median(r["p99_ms"] for r in results["head_log_off"])
        # A block disturbed by the machine (another job starting) is an outlier the median ignores;
        # when most blocks of a setting disagree with their median (> 1.5x off it), nothing is measured.
        agreeing = {k: sum(m / 1.5 <= r["p99_ms"] <= m * 1.5 for r in results[k])
                    for k, m in (("head_log_on", on), ("head_log_off", off))}
        noisy = any(n <= len(results[k]) / 2 for k, n in agreeing.items())
        print(f"  prediction log, head hits @ {rate:.0f}/s, p99 median of {len(results['head_log_on'])} blocks on / "
              f"{len(results['head_log_off'])} off: on {on:.2f} ms, off {off:.2f} ms ({(on / off - 1) * 100:+.1f} %); "
              f"on {[r['p99_ms'] for r in results['head_log_on']]}, off {[r['p99_ms'] for r in results['head_log_off']]}"
              + ("  NOISY: most blocks of a setting are >1.5x off its median, the difference is not measured"
                 if noisy else ""))
        results["log_noisy"] = noisy
        from ml import warehouse as W

        with W.connect(world["config"]["warehouse"]) as wh:
            results["logged_rows"] = wh.query("SELECT COUNT(*) AS n FROM prodml.prediction_log").to_pylist()[0]["n"]
    finally:
        from benchmarks.batch_prediction import _writable

        _writable(tmp)  # the registry makes versions read-only
        shutil.rmtree(tmp, ignore_errors=True)

    def p99_figure(name, base, ours, aim=None, ours_label=""):
        return figure(name, results[base]["p99_ms"] / 1000, results[ours]["p99_ms"] / 1000, None, aim=aim,
                      baseline="naive: model.serve per request", ours=ours_label)

    figures = [
        p99_figure(f"B5 p99 @ {rate:.0f}/s: head hit vs naive", "naive", "head", 100, "ml.serving head (in memory)"),
        p99_figure(f"B5 p99 @ {rate:.0f}/s: tail miss vs naive", "naive", "tail", 10, "ml.serving tail (micro-batched)"),
        p99_figure(f"B5 p99 @ {light_rate:.0f}/s: head hit vs naive", "naive_light", "head_light", None,
                   "ml.serving head (in memory)"),
        p99_figure(f"B5 p99 @ {light_rate:.0f}/s: tail miss vs naive", "naive_light", "tail_light", None,
                   "ml.serving tail (micro-batched)"),
    ]
    # The head aims on every head block at `rate` with the log on (the first run and the on blocks).
    head_runs = [results["head"], *results["head_log_on"]]
    head_p99 = statistics.median(r["p99_ms"] for r in head_runs)
    done = statistics.median(r["completed_rps"] for r in head_runs)
    sustained = done >= 0.95 * rate and all(r["errors"] == 0 for r in head_runs)
    overhead = on / off - 1
    results["aims"] = {"rate": rate, "head_p99_ms_median": head_p99, "head_done_rps_median": done,
                       "head_sustained": sustained, "head_p99_under_10ms": head_p99 < 10,
                       "log_p99_on_ms": on, "log_p99_off_ms": off, "log_p99_overhead": round(overhead, 4),
                       "log_p99_overhead_under_5pct": None if noisy else overhead < 0.05}
    print_table("B5 ratios (p99 latency, naive s / ml.serving s)", figures)
    log_verdict = "not measured (noisy)" if noisy else ("ok" if overhead < 0.05 else "MISS")
    print(f"  head hits @ {rate:.0f}/s over {len(head_runs)} blocks (median): {done:.0f}/s done (sustained: {sustained}), "
          f"p99 {head_p99:.2f} ms (aim < 10 ms: {'ok' if head_p99 < 10 else 'MISS'}); prediction log: p99 "
          f"{overhead * 100:+.1f} % (aim < 5 %: {log_verdict}); {results['logged_rows']} rows logged; "
          f"load average {os.getloadavg()[0]:.1f}")
    results["figures"] = figures
    write_result("serving", {"sensors": sensors, "requests": requests, "rate": rate, "light_rate": light_rate,
                             **results})
    return results


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sensors", type=int, default=400)
    parser.add_argument("--requests", type=int, default=4000, help="requests per run at --rate")
    parser.add_argument("--rate", type=float, default=1000, help="offered load (requests/s)")
    parser.add_argument("--light-rate", type=float, default=100, help="the light load (a quarter of the requests)")
    parser.add_argument("--log-repeat", type=int, default=3)
    parser.add_argument("--serve", choices=("ours", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--max-wait-ms", type=float, default=None,
                        help="the micro-batcher's max wait (default: the profile's serving.max_wait_ms)")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.data, args.port, args.model_dir, json.loads(args.overrides))
        return None
    overrides = {} if args.max_wait_ms is None else {"max_wait_ms": args.max_wait_ms}
    return run(args.sensors, args.requests, args.rate, args.light_rate, args.log_repeat, overrides)


if __name__ == "__main__":
    main()
