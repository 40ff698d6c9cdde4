"""Drift on real public data (tests/ml/realdata.py), with the package's default thresholds: a random
half against the other half raises nothing; one numeric column scaled by 1.3 and one category's
share doubled are each flagged, and nothing else is."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from ml import drift as D
from tests.ml import realdata

pytestmark = pytest.mark.slow  # whole real data sets: the fast tier (and make mutate) skips them

CASES = {  # data set → (numeric column scaled by 1.3, (categorical column, value whose share doubles))
    "diamonds": ("price", ("cut", "Good")),
    "flights": ("distance", ("carrier", "AA")),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def halves(request, tmp_path_factory):
    name = request.param
    df = realdata.frame(name).reset_index(drop=True)
    half = np.random.default_rng(0).random(len(df)) < 0.5
    folder = tmp_path_factory.mktemp(name)
    reference_csv = realdata.write_csv(df[half], folder / "reference.csv")
    reference = D.build_reference([reference_csv], realdata.schema_path(name))
    return name, df[~half].reset_index(drop=True), reference, folder, df[half]


def _check(name, frame, reference, path):
    return D.check_drift(reference, [realdata.write_csv(frame, path)], realdata.schema_path(name))


def test_a_random_half_raises_no_alarm(halves):
    name, current, reference, folder, _ = halves
    result = _check(name, current, reference, folder / "same.csv")
    assert result["ok"], [(s["feature"], s["metric"], s["value"], s["threshold"]) for s in result["breaches"]]
    ks = [s["value"] for s in result["scores"] if s["metric"] == "ks"]
    assert ks and max(ks) < 0.02  # two halves of one data set: sampling noise only


def test_a_numeric_column_scaled_by_1_3_is_flagged_and_nothing_else(halves):
    name, current, reference, folder, reference_rows = halves
    column = CASES[name][0]
    scaled = current.copy()
    scaled[column] = (scaled[column] * 1.3).round().astype(scaled[column].dtype)
    result = _check(name, scaled, reference, folder / "scaled.csv")
    assert result["drifted"] == [column], result["breaches"]
    # the stored KS is the textbook two-sample statistic on these very rows
    ref_values = reference_rows[column].to_numpy(float)
    ks = next(s["value"] for s in result["scores"] if s["feature"] == column and s["slice"] == "all"
              and s["metric"] == "ks")
    assert ks == pytest.approx(ks_2samp(ref_values, scaled[column].to_numpy(float)).statistic, abs=1e-3)


def test_one_categorys_share_doubled_is_flagged_and_nothing_else(halves):
    name, current, reference, folder, _ = halves
    column, value = CASES[name][1]
    changed = current.copy()
    share = (changed[column] == value).mean()
    others = np.flatnonzero((changed[column] != value).to_numpy())
    relabel = np.random.default_rng(1).choice(others, size=int(round(share * len(changed))), replace=False)
    changed.loc[relabel, column] = value  # only this column changes: the rows stay what they were
    assert abs((changed[column] == value).mean() - 2 * share) < 1e-3
    result = _check(name, changed, reference, folder / "doubled.csv")
    assert result["drifted"] == [column], result["breaches"]
