"""ml.embeddings: the sensor embeddings for the TensorBoard projector, exported with each model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml import embeddings
from ml import features as F

SCHEMA = """
name: roads
label: {name: y, values: [0, 1]}
features:
  - {name: sensor, type: string, kind: categorical, known: ahead, open_vocabulary: true, transform: hash, hash_bins: 16}
  - {name: code, type: string, kind: categorical, known: ahead, transform: hash, hash_bins: 4}
  - {name: speed, type: float, kind: numeric, known: ahead, transform: normalize}
"""
SENSORS = [f"S{i:04d}" for i in range(40)] + ["tab\there"]


def read_projector(folder: Path, feature: str) -> tuple[list[str], list[list[str]], np.ndarray]:
    header, *rows = (folder / feature / "metadata.tsv").read_text().splitlines()
    vectors = np.loadtxt(folder / feature / "vectors.tsv", delimiter="\t", ndmin=2)
    return header.split("\t"), [r.split("\t") for r in rows], vectors


def check_rows_match_vocabulary_and_weights(model, schema, stats: dict, folder: Path, feature: str) -> int:
    """Every observed value has one metadata row, in the statistics' order, and its vectors.tsv
    row is the embedding layer's row for the value's hash bucket."""
    header, rows, vectors = read_projector(folder, feature)
    assert header == [feature, "bucket"]
    values = [str(v) for v in stats["vocabulary"][feature]]
    assert [r[0] for r in rows] == [v.replace("\t", " ") for v in values]
    assert vectors.shape[0] == len(rows)
    hashing = model.get_layer(f"{feature}_hash")
    weights = model.get_layer(f"{feature}_embedding").get_weights()[0]
    buckets = np.asarray(hashing(np.array([[v] for v in values], dtype=object))).ravel()
    assert [int(r[1]) for r in rows] == buckets.tolist()
    np.testing.assert_allclose(vectors, weights[buckets], rtol=1e-5, atol=1e-6)
    assert vectors.shape[1] == weights.shape[1]
    return len(rows)


@pytest.fixture(scope="module")
def model_and_schema(tmp_path_factory):
    import keras

    from ml.trainer import build_model

    path = tmp_path_factory.mktemp("schema") / "roads.yaml"
    path.write_text(SCHEMA)
    schema = F.load_schema(str(path))
    stats = {"numeric": {"speed": {"mean": 50.0, "var": 100.0}}, "vocabulary": {"sensor": SENSORS, "code": ["a"]}}
    keras.utils.set_random_seed(2)
    return build_model(schema, stats, [4], 0.01), schema, stats


def test_only_open_vocabulary_hashed_features_are_projected(model_and_schema):
    _, schema, _ = model_and_schema
    assert [f.name for f in embeddings.projected_features(schema)] == ["sensor"]


def test_vectors_rows_match_the_vocabulary_and_the_layer_weights(model_and_schema, tmp_path):
    model, schema, stats = model_and_schema
    assert embeddings.export_projector(model, schema, stats, str(tmp_path)) == ["sensor"]
    assert check_rows_match_vocabulary_and_weights(model, schema, stats, tmp_path, "sensor") == len(SENSORS)
    config = (tmp_path / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "sensor/vectors.tsv"' in config and 'metadata_path: "sensor/metadata.tsv"' in config


def test_no_observed_values_no_files(model_and_schema, tmp_path):
    model, schema, stats = model_and_schema
    assert embeddings.export_projector(model, schema, {**stats, "vocabulary": {}}, str(tmp_path)) == []
    assert not list(tmp_path.iterdir())


def test_the_trained_champion_carries_its_sensor_embeddings(trained_model):
    """The session's model (static_training through Airflow): the trainer wrote the projector files
    inside the model folder, so every registered version carries them."""
    import json

    import keras

    model_dir = Path(trained_model["model_dir"])
    schema = F.load_schema(trained_model["schema_path"])
    stats = json.loads((Path(trained_model["eval_pattern"]).parents[1] / "stats.json").read_text())
    model = keras.saving.load_model(model_dir / "model.keras", custom_objects=F.custom_objects())
    rows = check_rows_match_vocabulary_and_weights(model, schema, stats, model_dir / "embeddings", "sensor_id")
    assert rows == len(stats["vocabulary"]["sensor_id"]) > 0
    report = json.loads((model_dir.parent / "training.json").read_text())
    assert report["embeddings"] == ["sensor_id"]
