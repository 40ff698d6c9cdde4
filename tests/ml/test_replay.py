"""Replay helpers: Zipf-peaked requests over a forecast day (the known head, the same ranking every
day) and a day's late labels landed as the simulator lands them."""

from __future__ import annotations

import numpy as np
import pytest

from ml import landing, simulate, storage
from ml.config import PROJECT_ROOT
from ml.serving import advisor
from ml.serving.replay import land_labels, zipf_requests

SCHEMA = str(PROJECT_ROOT / "include/schemas/traffic.yaml")
KEYS = ["sensor_id", "hour"]


def day_rows(date: str, sensors: int = 50) -> list[dict]:
    return [{"sensor_id": f"S{s:04d}", "date": date, "hour": h, "lanes": s % 3 + 1}
            for s in range(1, sensors + 1) for h in range(24)]


def test_requests_follow_zipf_over_a_seeded_ranking_of_the_keys():
    rows = day_rows("2026-11-21")
    drawn = zipf_requests(rows, 20_000, key_columns=KEYS, s=1.0, ranking_seed=7, seed=1)
    assert len(drawn) == 20_000
    given = {id(row) for row in rows}
    assert all(id(r) in given for r in drawn)  # the rows themselves, not copies
    counts = advisor.count_keys((r["sensor_id"], r["hour"]) for r in drawn)
    pmf = 1.0 / np.arange(1, len(rows) + 1)
    pmf /= pmf.sum()
    top = advisor.ranked(counts)
    # the most requested key takes about pmf[0] (~13.8 % of 1200 keys under s = 1)
    assert counts[top[0]] / 20_000 == pytest.approx(pmf[0], rel=0.1)
    head, share = advisor.head(counts, 0.8)
    known = int(np.searchsorted(np.cumsum(pmf), 0.8) + 1)
    assert abs(len(head) - known) <= 0.1 * known and share >= 0.8
    assert advisor.peakedness(counts.values()) > 0.15  # the advisor calls it peaked: hybrid


def test_the_ranking_is_the_same_every_day_and_the_draws_differ():
    monday = zipf_requests(day_rows("2026-11-21"), 5000, key_columns=KEYS, s=1.1, ranking_seed=7, seed=1)
    tuesday = zipf_requests(day_rows("2026-11-22"), 5000, key_columns=KEYS, s=1.1, ranking_seed=7, seed=2)
    assert {r["date"] for r in tuesday} == {"2026-11-22"}

    def top(drawn, k=5):
        return advisor.ranked(advisor.count_keys((r["sensor_id"], r["hour"]) for r in drawn))[:k]

    assert top(monday, 3) == top(tuesday, 3)  # the popular keys stay popular
    assert [r["hour"] for r in monday] != [r["hour"] for r in tuesday]
    other = zipf_requests(day_rows("2026-11-21"), 5000, key_columns=KEYS, s=1.1, ranking_seed=8, seed=1)
    assert top(other, 3) != top(monday, 3)  # another ranking seed, other popular keys
    same = zipf_requests(day_rows("2026-11-21"), 5000, key_columns=KEYS, s=1.1, ranking_seed=7, seed=1)
    assert same == monday  # reproducible


def test_flat_traffic_with_s_zero_and_nothing_to_draw():
    drawn = zipf_requests(day_rows("2026-11-21", sensors=10), 24_000, key_columns=KEYS, s=0.0, ranking_seed=1, seed=1)
    assert advisor.peakedness(advisor.count_keys((r["sensor_id"], r["hour"]) for r in drawn).values()) < 0.01
    assert zipf_requests([], 10, key_columns=KEYS, s=1.0, ranking_seed=1, seed=1) == []
    assert zipf_requests(day_rows("2026-11-21"), 0, key_columns=KEYS, s=1.0, ranking_seed=1, seed=1) == []


def test_landed_labels_are_the_simulators_day_with_the_marker(tmp_path):
    bucket = tmp_path / "bucket"
    landing_uri = storage.to_uri(bucket / "landing")
    assert landing.complete_partitions(landing_uri) == {}
    landed = land_labels(landing_uri, "2026-11-21", seed=42, sensors=30, schema_path=SCHEMA)
    assert landed["rows"] == 30 * 24 and 0 < landed["label_rate"] < 1
    files = landing.complete_partitions(landing_uri)["2026-11-21"]
    reference = tmp_path / "reference"
    simulate.simulate(str(reference), "2026-11-21", 1, 42, sensors=30, forecast_days=0, schema_path=SCHEMA)
    expected = sorted((reference / "landing" / "dt=2026-11-21").glob("*.csv"))
    assert [storage.to_path(f).read_bytes() for f in sorted(files)] == [p.read_bytes() for p in expected]
    assert not (bucket / "ground_truth.json").exists()  # the story's ground truth is not overwritten
