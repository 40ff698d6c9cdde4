"""Serving advisor: static, dynamic or hybrid serving, read from the request log.

The course's rule: precompute (static serving) when the key space is small; compute on demand
(dynamic) when it is large and requests spread evenly over it; when it is large but *peaked* (a
few keys carry most requests), precompute the head and compute the long tail on demand (hybrid).

From the request keys (the `prediction_log` table, or any list of keys) the advisor measures
- cardinality K: distinct keys requested;
- peakedness: the normalised inverse entropy 1 - H/log(K) of the request shares (0: every key
  equally requested; 1: one key takes everything; K = 1 counts as 1);
- the head: the fewest most-requested keys that together cover `target_share` of the requests,
and prices the three ways to serve them in rows stored vs model calls a day (costs from the
profile's `advisor:` section). `batch_prediction` precomputes exactly the advised head: the
advice is stored as JSON in the bucket and `advised_keys` turns it into the `keys` argument of
`ml.prediction_job.predict_to_warehouse` (None = every key, as without an advice).

    python -m ml.serving.advisor [--days 7] [--write] [--json]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import math
import sys
from collections.abc import Iterable, Mapping

from ml import storage

FORMAT = 1
CHOICES = ("static", "dynamic", "hybrid")


def count_keys(keys: Iterable) -> dict:
    """{key: requests} of a sequence of request keys (any hashable: tuples, strings)."""
    return dict(collections.Counter(keys))


def entropy(counts: Iterable[int]) -> float:
    """Shannon entropy (nats) of the distribution the counts describe; zero counts are ignored."""
    values = [c for c in counts if c > 0]
    total = sum(values)
    if total == 0:
        return 0.0
    return -sum(c / total * math.log(c / total) for c in values)


def peakedness(counts: Iterable[int]) -> float | None:
    """1 - H/log(K): 0 for requests spread evenly over the K keys, towards 1 as a few keys take
    them all; 1.0 for a single key, None for no request."""
    values = [c for c in counts if c > 0]
    if not values:
        return None
    if len(values) == 1:
        return 1.0
    return max(0.0, round(1.0 - entropy(values) / math.log(len(values)), 12))  # 0, not 1e-15, when even


def ranked(counts: Mapping) -> list:
    """Keys by requests, most requested first (ties broken by the key, so the order is stable)."""
    return sorted((k for k, c in counts.items() if c > 0), key=lambda k: (-counts[k], _sortable(k)))


def _sortable(key):
    return tuple(map(str, key)) if isinstance(key, tuple) else (str(key),)


def head(counts: Mapping, target_share: float) -> tuple[list, float]:
    """(the fewest most-requested keys covering at least `target_share` of requests, the share
    they cover). target_share 0 → no key; 1 → every requested key."""
    if not 0.0 <= target_share <= 1.0:
        raise ValueError(f"target_share must be in [0, 1], not {target_share}")
    order = ranked(counts)
    total = sum(counts[k] for k in order)
    if total == 0 or target_share == 0.0:
        return [], 0.0
    covered = 0
    for n, key in enumerate(order, start=1):
        covered += counts[key]
        if covered >= target_share * total - 1e-9 * total:
            return order[:n], covered / total
    return order, 1.0


def advise(counts: Mapping, *, days: float, target_share: float, max_static_keys: int, min_peakedness: float,
           cost_per_stored_row: float, cost_per_online_call: float, key_space: int | None = None,
           key_columns: list[str] | None = None) -> dict:
    """The advice for requests `counts` ({key: requests}) observed over `days` days.

    Recommendation: static when the key space (`key_space`, default the keys seen) is at most
    `max_static_keys`; otherwise hybrid when peakedness >= `min_peakedness`, else dynamic.
    Costs per day: a precomputed row costs `cost_per_stored_row` (batch scoring plus storage of
    one row for one day), an on-demand answer `cost_per_online_call`. The static option stores
    every key of the key space; the hybrid one the head; the dynamic one nothing.

    `head_keys`: what batch prediction should precompute: None = every key (static), [] = none
    (dynamic), else the head's keys as {column: value} dicts when `key_columns` names the
    columns of tuple keys (the keys as given otherwise)."""
    if days <= 0:
        raise ValueError(f"days must be > 0, not {days}")
    requests = sum(c for c in counts.values() if c > 0)
    cardinality = sum(1 for c in counts.values() if c > 0)
    space = max(int(key_space or 0), cardinality)
    per_day = requests / days
    head_keys, head_share = head(counts, target_share)
    peak = peakedness(counts.values())

    def option(rows: int, hit_share: float) -> dict:
        calls = per_day * (1.0 - hit_share)
        return {"rows_stored": rows, "model_calls_per_day": calls, "hit_share": hit_share,
                "storage_cost_per_day": rows * cost_per_stored_row,
                "compute_cost_per_day": calls * cost_per_online_call,
                "cost_per_day": rows * cost_per_stored_row + calls * cost_per_online_call}

    options = {"static": option(space, 1.0), "dynamic": option(0, 0.0),
               "hybrid": option(len(head_keys), head_share)}
    if cardinality == 0:
        choice, reason = "static", "no requests logged: keep precomputing every key"
    elif space <= max_static_keys:
        choice, reason = "static", f"key space {space} <= {max_static_keys}: precompute every key"
    elif peak >= min_peakedness:
        choice, reason = "hybrid", (f"key space {space} > {max_static_keys} and peaked ({peak:.3f} >= "
                                    f"{min_peakedness}): precompute the {len(head_keys)} keys that take "
                                    f"{head_share:.1%} of requests, compute the tail on demand")
    else:
        choice, reason = "dynamic", (f"key space {space} > {max_static_keys} and flat ({peak:.3f} < "
                                     f"{min_peakedness}): compute every request on demand")
    # Cost-optimal head, for comparison: precompute a key when its daily requests cost more
    # on demand than one stored row (requests/day x call cost > row cost).
    break_even = cost_per_stored_row / cost_per_online_call if cost_per_online_call > 0 else math.inf
    optimal = [k for k in ranked(counts) if counts[k] / days > break_even]
    keys = {"static": None, "dynamic": [], "hybrid": head_keys}[choice]
    return {
        "format": FORMAT, "recommendation": choice, "reason": reason,
        "requests": requests, "days": days, "requests_per_day": per_day,
        "cardinality": cardinality, "key_space": space, "entropy_nats": entropy(counts.values()),
        "peakedness": peak, "target_share": target_share, "head_size": len(head_keys), "head_share": head_share,
        "break_even_requests_per_day": break_even, "cost_optimal_head_size": len(optimal),
        "costs": {"cost_per_stored_row": cost_per_stored_row, "cost_per_online_call": cost_per_online_call},
        "options": options, "cheapest": min(options, key=lambda name: options[name]["cost_per_day"]),
        "key_columns": key_columns,
        "head_keys": None if keys is None else [_as_record(k, key_columns) for k in keys],
    }


def _as_record(key, key_columns):
    if key_columns and isinstance(key, tuple):
        return dict(zip(key_columns, key, strict=True))
    return key


# ------------------------------------------------------------------ request log and storage

def counts_from_log(warehouse, *, since: dt.datetime, until: dt.datetime) -> dict:
    """{entity key values (a tuple, in the schema's entity_keys order): requests} served in
    [since, until), from the `prediction_log` table's `entity_key` (ml.features.entity_key)."""
    rows = warehouse.run_sql_file("request_key_counts", {"since": since, "until": until}).to_pylist()
    return {tuple(json.loads(r["entity_key"])): int(r["requests"]) for r in rows}


def write_advice(advice: dict, uri: str) -> str:
    """Store the advice (atomic put) where batch prediction reads it."""
    return storage.write_text(uri, json.dumps(advice, indent=1, sort_keys=True, default=str) + "\n")


def read_advice(uri: str) -> dict | None:
    """The stored advice, or None when there is none."""
    if not storage.exists(uri):
        return None
    return json.loads(storage.read_text(uri))


def advised_keys(uri: str) -> list[dict] | None:
    """What batch prediction precomputes: None = every key (no advice, or static), [] = none
    (dynamic), else the head's keys as {column: value} dicts."""
    advice = read_advice(uri)
    return None if advice is None else advice.get("head_keys")


def refresh(warehouse, *, until: dt.datetime, days: float, min_requests: int, advice_uri: str, target_share: float,
            max_static_keys: int, min_peakedness: float, cost_per_stored_row: float, cost_per_online_call: float,
            key_columns: list[str], key_space: int | None = None) -> dict:
    """Advise from the last `days` of the request log and store it at `advice_uri`, unless fewer
    than `min_requests` were logged (a thin log would advise a tiny head): then the stored
    advice stays. `key_columns`: the schema's entity keys (the head's keys are stored as
    {column: value} records). {"written": bool, **advice}."""
    counts = counts_from_log(warehouse, since=until - dt.timedelta(days=days), until=until)
    advice = advise(counts, days=days, target_share=target_share, max_static_keys=max_static_keys,
                    min_peakedness=min_peakedness, cost_per_stored_row=cost_per_stored_row,
                    cost_per_online_call=cost_per_online_call, key_space=key_space, key_columns=list(key_columns))
    advice["window"] = {"since": (until - dt.timedelta(days=days)).isoformat(), "until": until.isoformat()}
    written = advice["requests"] >= min_requests
    if written:
        write_advice(advice, advice_uri)
    return {"written": written, **advice}


# ------------------------------------------------------------------ CLI


def table(advice: dict) -> str:
    """The trade-off as a text table."""
    lines = [f"requests {advice['requests']:,} over {advice['days']:g} days ({advice['requests_per_day']:,.0f}/day); "
             f"cardinality {advice['cardinality']:,} of {advice['key_space']:,} keys; "
             f"peakedness {advice['peakedness'] if advice['peakedness'] is None else round(advice['peakedness'], 3)}; "
             f"head {advice['head_size']:,} keys = {advice['head_share']:.1%} of requests "
             f"(target {advice['target_share']:.0%})",
             f"{'option':<8} {'rows stored':>12} {'calls/day':>12} {'hit share':>9} {'storage/day':>12} "
             f"{'compute/day':>12} {'total/day':>12}"]
    for name in CHOICES:
        o = advice["options"][name]
        mark = " <- advised" if name == advice["recommendation"] else ""
        lines.append(f"{name:<8} {o['rows_stored']:>12,} {o['model_calls_per_day']:>12,.0f} {o['hit_share']:>9.1%} "
                     f"{o['storage_cost_per_day']:>12.4f} {o['compute_cost_per_day']:>12.4f} "
                     f"{o['cost_per_day']:>12.4f}{mark}")
    lines.append(f"advice: {advice['recommendation']}: {advice['reason']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from ml import config, warehouse

    parser = argparse.ArgumentParser(prog="python -m ml.serving.advisor", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, help="request-log window, days back from --until (default: profile)")
    parser.add_argument("--until", help="end of the window, ISO time (default: now)")
    parser.add_argument("--keys", help="a CSV of request keys (the schema's keys without the partition column) "
                                       "instead of the log")
    parser.add_argument("--key-space", type=int, help="every key that could be requested (default: those seen)")
    parser.add_argument("--write", action="store_true", help="store the advice where batch_prediction reads it")
    parser.add_argument("--json", action="store_true", help="print JSON (head keys left out)")
    args = parser.parse_args(argv)
    cfg = config.load()
    section = cfg["advisor"]
    from ml import features

    key_columns = list(features.load_schema(cfg["schema_path"]).entity_keys)
    days = args.days or section["window_days"]
    until = dt.datetime.fromisoformat(args.until) if args.until else dt.datetime.now(dt.UTC)
    if until.tzinfo is None:
        until = until.replace(tzinfo=dt.UTC)
    settings = {k: section[k] for k in ("target_share", "max_static_keys", "min_peakedness", "cost_per_stored_row",
                                        "cost_per_online_call")}
    if args.keys:
        import pyarrow.csv as pacsv

        with storage.open(args.keys) as handle:
            keys = pacsv.read_csv(handle).select(key_columns).to_pylist()
        counts = count_keys(tuple(k[c] for c in key_columns) for k in keys)
    else:
        with warehouse.connect(cfg["warehouse"]) as wh:
            wh.ensure_tables()
            counts = counts_from_log(wh, since=until - dt.timedelta(days=days), until=until)
    advice = advise(counts, days=days, key_space=args.key_space, key_columns=key_columns, **settings)
    if args.write:
        write_advice(advice, section["advice_uri"])
    if args.json:
        print(json.dumps({k: v for k, v in advice.items() if k != "head_keys"}, indent=1, default=str))
    else:
        print(table(advice))
        if args.write:
            print(f"advice stored at {section['advice_uri']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
