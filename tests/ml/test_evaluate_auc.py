"""The project's one AUC (ml.evaluate.auc) against its textbook definitions: scikit-learn's
roc_auc_score and the Mann–Whitney U statistic from scipy, with ties, both given and not given
the sorted scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score

from ml.evaluate import auc


@pytest.mark.parametrize("case", ["continuous", "ties", "few_values", "perfect", "inverted"])
def test_auc_equals_roc_auc_and_mann_whitney(case):
    rng = np.random.default_rng(len(case))
    y = rng.random(5000) < 0.2
    scores = {"continuous": rng.normal(size=5000) + y, "ties": np.round(rng.normal(size=5000) + y, 1),
              "few_values": rng.integers(0, 3, 5000) + y * rng.integers(0, 2, 5000),
              "perfect": y + rng.random(5000) * 0.5, "inverted": -(y + rng.random(5000) * 0.5)}[case]
    expected = roc_auc_score(y, scores)
    u = mannwhitneyu(scores[y], scores[~y]).statistic / (y.sum() * (~y).sum())
    assert auc(y, scores) == pytest.approx(expected, abs=1e-12) == pytest.approx(u, abs=1e-12)
    assert auc(y, scores, sorted_scores=np.sort(scores)) == pytest.approx(expected, abs=1e-12)


def test_auc_is_none_without_both_classes():
    assert auc(np.zeros(10), np.arange(10)) is None and auc(np.ones(10), np.arange(10)) is None
