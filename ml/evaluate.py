"""Model evaluation: AUC and cost-weighted error, overall and per slice, on the eval split.

Evaluation runs the *exported serving model* on raw features read from the eval TFRecords, so
the numbers describe exactly the graph that will serve.
"""

from __future__ import annotations

import numpy as np


def auc(labels, scores, sorted_scores=None) -> float | None:
    """Area under the ROC curve = the Mann–Whitney U statistic / (n_pos · n_neg): the share of
    (positive, negative) pairs the score orders correctly, ties counting one half. None if one
    class is absent.

    Computed as U = Σ over positives p of (#scores < p + ½ #scores == p) − n_pos²/2 (the positives'
    pairs among themselves sum to exactly n_pos²/2): the positives sorted and two binary searches,
    no ranking of the pooled sample. `sorted_scores`: all of `scores`, already sorted (saves a sort)."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = np.sort(scores[labels])
    n_pos, n_neg = positives.size, labels.size - positives.size
    if n_pos == 0 or n_neg == 0:
        return None
    everything = np.sort(scores) if sorted_scores is None else sorted_scores
    below = np.searchsorted(everything, positives, side="left")
    tied = np.searchsorted(everything, positives, side="right") - below
    u = below.sum(dtype=np.float64) + 0.5 * tied.sum(dtype=np.float64) - n_pos * n_pos / 2
    return float(u / (n_pos * n_neg))


def decision_threshold(cost_false_negative: float, cost_false_positive: float) -> float:
    """Bayes-optimal threshold for calibrated probabilities: flag when p·c_fn > (1-p)·c_fp."""
    return cost_false_positive / (cost_false_positive + cost_false_negative)


def cost_weighted_error(labels, scores, cost_false_negative: float, cost_false_positive: float) -> float:
    """Share of the total misclassification weight lost, each positive weighing c_fn and each
    negative c_fp, at the cost-optimal threshold. 0 is perfect; always-negative scores c_fn·P/(c_fn·P+c_fp·N)."""
    labels = np.asarray(labels).astype(bool).ravel()
    predicted = np.asarray(scores).ravel() >= decision_threshold(cost_false_negative, cost_false_positive)
    weights = np.where(labels, cost_false_negative, cost_false_positive)
    wrong = predicted != labels
    return float((weights * wrong).sum() / weights.sum()) if weights.size else 0.0


def metrics(labels, scores, cost_false_negative: float, cost_false_positive: float) -> dict:
    labels = np.asarray(labels).ravel()
    return {
        "auc": auc(labels, scores),
        "cost_weighted_error": cost_weighted_error(labels, scores, cost_false_negative, cost_false_positive),
        "positive_rate": float(labels.mean()) if labels.size else 0.0,
        "mean_score": float(np.mean(scores)) if labels.size else 0.0,
        "n": int(labels.size),
    }


def sliced_metrics(labels, scores, slices, cost_false_negative: float, cost_false_positive: float) -> dict:
    slices = np.asarray(slices).ravel()
    return {
        str(value): metrics(labels[slices == value], scores[slices == value], cost_false_negative,
                            cost_false_positive)
        for value in sorted(set(slices.tolist()))
    }


def read_eval_examples(pattern: str, schema) -> tuple[dict, np.ndarray]:
    """Eval TFRecords → (raw model-input and slice columns shaped (n, 1), labels)."""
    import tensorflow as tf

    from ml import features as F
    from ml import storage

    with storage.local_files(pattern) as files:
        ds = tf.data.TFRecordDataset([str(f) for f in files])
        ds = ds.batch(65536).map(lambda b: tf.io.parse_example(b, F.feature_spec(schema, with_slices=True)))
        parts = [{k: v.numpy() for k, v in batch.items()} for batch in ds]
    if not parts:
        return {}, np.zeros(0)
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    labels = columns.pop(schema.label).ravel()
    return columns, labels


def slice_columns(schema, slice_by) -> list[str]:
    """The columns evaluation slices by: the profile's `evaluation.slice_by` (a name, a list, or
    unset = the schema's `slices`); each must travel in the eval TFRecords: one of the schema's
    declared slices or a model input."""
    from ml.features import SchemaError

    wanted = list(schema.slices) if slice_by is None else ([slice_by] if isinstance(slice_by, str) else list(slice_by))
    carried = {f.name for f in schema.record_features}
    unknown = [name for name in wanted if name not in carried]
    if unknown:
        raise SchemaError(f"evaluation.slice_by names {unknown}, which the schema {schema.path} neither declares "
                          f"in `slices` ({list(schema.slices)}) nor uses as a model input: add them to the "
                          "schema's slices (the transform then carries them in the eval data) or change "
                          "evaluation.slice_by")
    return wanted


def evaluate(model_dir: str, eval_pattern: str, schema_path: str, cost_false_negative: float,
             cost_false_positive: float, slice_by=None, batch_size: int = 8192) -> dict:
    """Metrics of the model on the eval TFRecords, overall and per value of each slice column
    (`slice_columns`: read from the raw values the TFRecords carry, a model input or not)."""
    from ml import features as F
    from ml.predict import load_model, score_columns

    schema = F.load_schema(schema_path)
    slices = slice_columns(schema, slice_by)
    columns, labels = read_eval_examples(eval_pattern, schema)
    if labels.size == 0:
        raise ValueError(f"no eval rows match {eval_pattern}: cannot evaluate a candidate on nothing")
    inputs = {f.name: columns[f.name] for f in schema.model_inputs}
    scores = score_columns(load_model(model_dir), inputs, batch_size)
    result = metrics(labels, scores, cost_false_negative, cost_false_positive)
    result["threshold"] = decision_threshold(cost_false_negative, cost_false_positive)
    if slices:
        result["slices"] = {}
        for name in slices:
            values = np.array([v.decode() if isinstance(v, bytes) else v for v in columns[name].ravel()])
            result["slices"][name] = sliced_metrics(labels, scores, values, cost_false_negative, cost_false_positive)
    return result
