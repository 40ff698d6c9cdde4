"""The feature contract, built from `include/schemas/<name>.yaml`.

This is the only module that knows feature names, types, domains and the transform. The
transform is a stack of Keras preprocessing layers adapted from training statistics and
placed *inside* the exported model, so the SavedModel takes raw features and training and
serving run the same graph (what tensorflow-transform gives TFX, without its pins).

TensorFlow is imported inside the functions that need it: validation, drift and the DAG
files use this module without paying for it.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from ml.errors import PermanentError

KNOWN_WHEN = ("ahead", "event", "after")
TRANSFORMS = ("lookup", "hash", "normalize", "none")
# Column names travel into SQL (the predictions table), TFRecord feature keys and file names.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BIGQUERY_TYPES = {"string": "STRING", "int": "INT64", "float": "FLOAT64"}


class SchemaError(PermanentError, ValueError):
    pass


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # string | int | float
    kind: str  # categorical | numeric | key
    known: str  # ahead | event | after
    presence: float = 1.0
    vocabulary: tuple | None = None
    open_vocabulary: bool = False
    range: tuple | None = None
    pattern: str | None = None
    transform: str = "none"
    hash_bins: int = 0

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"


@dataclass(frozen=True)
class Schema:
    name: str
    features: tuple[Feature, ...]
    label: str
    label_values: tuple = (0, 1)
    keys: tuple[str, ...] = ()
    split_key: str | None = None
    partition_column: str | None = None
    slices: tuple[str, ...] = ()
    row_count: tuple[int, int] = (1, 10**12)
    path: str = ""
    digest: str = ""
    by_name: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def columns(self) -> list[str]:
        """Every expected column of a landed file, label last (a schema may have no label)."""
        return [f.name for f in self.features] + ([self.label] if self.label else [])

    @property
    def model_inputs(self) -> list[Feature]:
        """Features the model reads: known ahead of the prediction and transformed."""
        return [f for f in self.features if f.transform != "none"]

    @property
    def entity_keys(self) -> tuple[str, ...]:
        """The keys that name one predicted entity within a partition (e.g. a sensor and an hour
        within a date): the schema's keys without the partition column."""
        return tuple(k for k in self.keys if k != self.partition_column)

    @property
    def prediction_column(self) -> str:
        """The predicted label's column in the `predictions` table: predicted_<label>."""
        return f"predicted_{self.label or 'label'}"

    @property
    def slice_features(self) -> list[Feature]:
        """The declared slice columns (evaluation and drift are reported per value of each)."""
        return [self.feature(name) for name in self.slices]

    @property
    def record_features(self) -> list[Feature]:
        """What a transformed TFRecord carries besides the label: the model inputs, and the slice
        columns that are not inputs (so evaluation can slice by the raw value; the trainer's parse
        spec leaves them out)."""
        inputs = self.model_inputs
        names = {f.name for f in inputs}
        return inputs + [f for f in self.slice_features if f.name not in names]

    def feature(self, name: str) -> Feature:
        try:
            return self.by_name[name]
        except KeyError:
            raise SchemaError(f"{self.path}: no feature named {name!r}") from None


def _parse_feature(raw: dict, where: str) -> Feature:
    missing = {"name", "type", "kind", "known"} - set(raw)
    if missing:
        raise SchemaError(f"{where}: missing {', '.join(sorted(missing))}")
    if raw["type"] not in ("string", "int", "float"):
        raise SchemaError(f"{where}: type must be string, int or float, not {raw['type']!r}")
    if raw["known"] not in KNOWN_WHEN:
        raise SchemaError(f"{where}: known must be one of {KNOWN_WHEN}, not {raw['known']!r}")
    transform = raw.get("transform", "none")
    if transform not in TRANSFORMS:
        raise SchemaError(f"{where}: transform must be one of {TRANSFORMS}, not {transform!r}")
    # Availability: a model input must be known when the prediction is made.
    if transform != "none" and raw["known"] != "ahead":
        raise SchemaError(
            f"{where}: feature {raw['name']!r} is known only {raw['known']!r} the event, "
            "so it cannot be a model input (set transform: none)"
        )
    if transform == "hash" and int(raw.get("hash_bins", 0)) < 2:
        raise SchemaError(f"{where}: transform hash needs hash_bins >= 2")
    return Feature(
        name=raw["name"],
        type=raw["type"],
        kind=raw["kind"],
        known=raw["known"],
        presence=float(raw.get("presence", 1.0)),
        vocabulary=tuple(raw["vocabulary"]) if raw.get("vocabulary") is not None else None,
        open_vocabulary=bool(raw.get("open_vocabulary", False)),
        range=tuple(raw["range"]) if raw.get("range") is not None else None,
        pattern=raw.get("pattern"),
        transform=transform,
        hash_bins=int(raw.get("hash_bins", 0)),
    )


def _check_columns(raw: dict, names: list[str], label: str, path) -> None:
    """Every column the schema names elsewhere (keys, split_key, partition_column, slices) is one
    of its features, and every name can be a SQL column and a TFRecord key."""
    for name in [*names, *([label] if label else [])]:
        if not IDENTIFIER.match(str(name)):
            raise SchemaError(f"{path}: column name {name!r} must be letters, digits and underscores "
                              "(it becomes a warehouse column): rename it in the schema and the data")
    known = set(names)
    for field_name in ("keys", "slices"):
        value = raw.get(field_name) or []
        if not isinstance(value, list):
            raise SchemaError(f"{path}: {field_name} must be a list of feature names, not {value!r}")
        for column in value:
            if column not in known:
                raise SchemaError(f"{path}: {field_name} names {column!r}, which is not a feature of the schema "
                                  f"(features: {', '.join(names)})")
    for field_name in ("split_key", "partition_column"):
        column = raw.get(field_name)
        if column is not None and column not in known:
            raise SchemaError(f"{path}: {field_name} is {column!r}, which is not a feature of the schema "
                              f"(features: {', '.join(names)})")
    partition = raw.get("partition_column")
    if partition is not None and partition not in (raw.get("keys") or []):
        raise SchemaError(f"{path}: partition_column {partition!r} must also be one of the keys")


def entity_key(values) -> str:
    """One entity's key values (in `Schema.entity_keys` order) as the canonical string that the
    warehouse tables share (`entity_key` in predictions and prediction_log): a compact JSON list,
    so any key types and any number of key columns fit one column with one meaning."""
    return json.dumps(list(values), separators=(",", ":"), default=str)


@lru_cache(maxsize=16)
def load_schema(path: str | Path) -> Schema:
    """The schema file at `path` (a local path or a bucket URI: Dataflow and Vertex read it there)."""
    from ml import storage

    source = str(path)
    text = storage.read_text(source)
    path = Path(source)
    raw = yaml.safe_load(text)
    features = tuple(_parse_feature(f, f"{path}: features[{i}]") for i, f in enumerate(raw["features"]))
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise SchemaError(f"{path}: duplicate feature names")
    label = raw.get("label") or {}
    _check_columns(raw, names, label.get("name", ""), path)
    return Schema(
        name=raw.get("name", path.stem),
        features=features,
        label=label.get("name", ""),
        label_values=tuple(label.get("values", (0, 1))),
        keys=tuple(raw.get("keys", ())),
        split_key=raw.get("split_key"),
        partition_column=raw.get("partition_column"),
        slices=tuple(raw.get("slices", ())),
        row_count=tuple(raw.get("row_count", (1, 10**12))),
        path=source,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
        by_name={f.name: f for f in features},
    )


# ---------------------------------------------------------------- Arrow / NumPy side (no TF)


def arrow_types(schema: Schema) -> dict:
    """Column → pyarrow type for reading CSVs strictly (a type error names the column)."""
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64()}
    out = {f.name: types[f.type] for f in schema.features}
    if schema.label:
        out[schema.label] = pa.int64()
    return out


# Number syntax shared by validation (a value that does not match is a type failure) and by the
# lenient reader below (such a value becomes NULL). Surrounding whitespace is trimmed first.
INT_RE = r"^[+-]?[0-9]+$"
FLOAT_RE = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


def read_header(file, data: bytes | None = None) -> list[str]:
    """The column names of one CSV file, or of its bytes (a UTF-8 BOM and surrounding spaces removed)."""
    import csv
    import io

    if data is not None:
        handle = io.StringIO(data[:data.find(b"\n") + 1 or None].decode("utf-8-sig", errors="replace"))
        return [name.strip() for name in next(csv.reader(handle), [])]
    with open(file, newline="", encoding="utf-8-sig", errors="replace") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def parse_numbers(column, type_: str, ok=None):
    """Strings → int64/float64 by the schema's number syntax; anything else (empty, "abc", "nan",
    "1_000") becomes NULL. Used where data is measured, not judged (validation judges).
    `ok`: a boolean mask of the values already known to match the syntax (saves the regex)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(column)
    if ok is None:
        ok = pc.fill_null(pc.match_substring_regex(text, INT_RE if type_ == "int" else FLOAT_RE), False)
    numbers = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
    if type_ == "int":  # "+5" is an int by the schema's syntax; Arrow's int parser refuses the sign
        return pc.cast(numbers, pa.int64())
    return numbers


def read_csv_files(files, schema: Schema, bad_values: str = "raise", open_file=None):
    """CSV files → one Arrow table, each column typed by the schema (columns a file lacks, e.g. the
    label in a known-ahead table, are simply absent); empty fields are nulls. This is the project's
    one schema-typed CSV reader.

    bad_values="raise": a value of the wrong type raises ValueError naming file, column and row;
    bad_values="null": it becomes NULL (for measuring data, e.g. drift, that validation judges).
    open_file: how to open a file (default: `ml.storage.open`; Beam's FileSystems.open on workers)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from ml import storage

    if bad_values not in ("raise", "null"):
        raise ValueError(f"bad_values must be 'raise' or 'null', not {bad_values!r}")
    types = arrow_types(schema)
    tables = []
    for file in files:
        # Through the storage backend (local folder or bucket) unless the caller brings its opener.
        with (open_file or storage.open)(file) as handle:
            data = handle.read()
        source = pa.BufferReader(data)
        header = read_header(file, data)
        present = {k: v for k, v in types.items() if k in header}
        read_as = present if bad_values == "raise" else {k: pa.string() for k in present}
        try:
            table = pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(
                column_types=read_as, null_values=[""], strings_can_be_null=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"{file}: {exc}") from None
        if bad_values == "null":
            for name, target in present.items():
                if target != pa.string():
                    i = table.column_names.index(name)
                    kind = "int" if target == pa.int64() else "float"
                    table = table.set_column(i, name, parse_numbers(table.column(i), kind))
        tables.append(table)
    return pa.concat_tables(tables, promote_options="default")


SPLIT_BUCKETS = 1000  # keys are hashed into this many buckets; whole buckets go to eval
NULL_KEY = b"\xff"  # a missing key's bytes: not valid UTF-8, so no real value hashes as it does


class SplitError(SchemaError):
    """The split key cannot give an eval share near the configured one (a few values hold most
    rows): choose another `split_key` (or none, for a row hash) or another tolerance. Retrying
    cannot help."""


def split_buckets(keys):
    """The split bucket of each row: crc32(str(key)) mod SPLIT_BUCKETS. A missing key is a value
    of its own (all rows without a key share one bucket). `keys`: any sequence or Arrow array."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    elif not isinstance(keys, pa.Array):
        keys = pa.array(list(keys) if not hasattr(keys, "dtype") else keys)
    # Hash each distinct value once (dictionary-encoded), then index: no Python per row.
    encoded = pc.dictionary_encode(keys, null_encoding="encode")
    hashes = [zlib.crc32(NULL_KEY if v is None else str(v).encode()) % SPLIT_BUCKETS
              for v in encoded.dictionary.to_pylist()]
    return np.asarray(hashes, dtype=np.int64)[encoded.indices.to_numpy(zero_copy_only=False)]


def row_contents(table, schema: Schema):
    """One string per row: the row's values in schema order (a missing value as NUL), the key that
    hashes rows when the schema has no `split_key` (equal rows share a bucket; reruns agree)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = [pc.cast(table.column(name), pa.string()) for name in schema.columns if name in table.column_names]
    return pc.binary_join_element_wise(*columns, "\x1f", null_handling="replace", null_replacement="\x00")


def table_split_buckets(table, schema: Schema):
    """The split bucket of each row of `table`: of its `split_key` value, else of its content."""
    keys = table.column(schema.split_key) if schema.split_key else row_contents(table, schema)
    return split_buckets(keys)


def choose_eval_buckets(rows_per_bucket, eval_fraction: float) -> list[int]:
    """The buckets that make the eval split, balanced by rows. Walk the buckets in hash order and
    take each one that still fits under `eval_fraction` of all rows; then, if one more bucket
    brings the eval rows closer to the target, take the closest. With many small keys this is
    close to the plain hash split (mostly the first buckets); a key holding many rows stays in
    train unless it is the best way to the target. Same counts → same buckets."""
    counts = [int(n) for n in rows_per_bucket]
    target = eval_fraction * sum(counts)
    taken, chosen = 0, []
    for bucket, rows in enumerate(counts):
        if rows and taken + rows <= target:
            taken += rows
            chosen.append(bucket)
    taken_buckets = set(chosen)
    left = [b for b, rows in enumerate(counts) if rows and b not in taken_buckets]
    best = min(left, key=lambda b: abs(taken + counts[b] - target), default=None)
    if best is not None and abs(taken + counts[best] - target) < abs(taken - target):
        chosen = sorted([*chosen, best])
    return chosen


def check_eval_share(rows_per_bucket, eval_buckets: list[int], eval_fraction: float, tolerance: float,
                     split_key: str | None) -> float:
    """The realised eval share of `eval_buckets`; SplitError when it is outside [eval_fraction /
    tolerance, eval_fraction * tolerance] (no rows: no check, 0.0)."""
    import numpy as np

    counts = np.asarray(rows_per_bucket, dtype=np.int64)
    rows = int(counts.sum())
    share = int(counts[list(eval_buckets)].sum()) / rows if rows else 0.0
    if rows and not eval_fraction / tolerance <= share <= eval_fraction * tolerance:
        key = f"split_key {split_key!r}" if split_key else "the row hash (no split_key)"
        raise SplitError(
            f"{key} puts {share:.1%} of {rows} rows in eval, not about {eval_fraction:.0%} (allowed "
            f"{eval_fraction / tolerance:.1%}..{eval_fraction * tolerance:.1%}; its largest hash bucket holds "
            f"{counts.max() / rows:.1%} of the rows): a few values hold most rows. Choose a split_key with "
            "more, evenly used values, or remove split_key to split by row hash")
    return share


def split_bucket(keys, eval_fraction: float):
    """The plain hash split of `keys` (True = eval): bucket < eval_fraction * SPLIT_BUCKETS, a
    function of each key alone. The transform balances by rows instead (`choose_eval_buckets`, its
    buckets recorded in summary.json); this rule is for held-out rows outside a transform run."""
    return split_buckets(keys) < int(round(eval_fraction * SPLIT_BUCKETS))


# ------------------------------------------------------------------ TensorFlow / Keras side


def _tf_dtype(feature: Feature):
    import tensorflow as tf

    if feature.type == "string":
        return tf.string
    if feature.transform == "none":  # a slice column carried as written
        return tf.float32 if feature.type == "float" else tf.int64
    if feature.transform == "normalize" or feature.type == "float":
        return tf.float32
    return tf.int64


def feature_spec(schema: Schema, with_label: bool = True, with_slices: bool = False) -> dict:
    """tf.io.parse_example spec for TFRecords of raw model inputs (+ label, + the slice columns
    that are not model inputs: `Schema.record_features`)."""
    import tensorflow as tf

    spec = {}
    for f in (schema.record_features if with_slices else schema.model_inputs):
        dtype = _tf_dtype(f)
        default = {tf.string: "", tf.float32: float("nan"), tf.int64: -1}[dtype]
        spec[f.name] = tf.io.FixedLenFeature([1], dtype, default_value=default)
    if with_label:
        spec[schema.label] = tf.io.FixedLenFeature([1], tf.int64, default_value=0)
    return spec


def serving_input_dtypes(schema: Schema) -> dict:
    """Feature → NumPy dtype the exported model expects for raw serving inputs."""
    import numpy as np

    out = {}
    for f in schema.model_inputs:
        if f.type == "string":
            out[f.name] = object
        elif f.transform == "normalize" or f.type == "float":
            out[f.name] = np.float32
        else:
            out[f.name] = np.int64
    return out


def to_model_inputs(schema: Schema, columns: dict) -> dict:
    """Raw columns (lists, NumPy or Arrow arrays, nulls allowed) → arrays shaped (n, 1) with the
    model's input dtypes. Missing numerics become NaN, missing categoricals the OOV marker;
    the model itself imputes and looks up, so this is only a type conversion (no transform)."""
    import numpy as np
    import pyarrow as pa

    out = {}
    for name, dtype in serving_input_dtypes(schema).items():
        values = columns[name]
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            if dtype is object:
                values = np.asarray(values.cast(pa.string()).fill_null("").to_pylist(), dtype=object)
            elif dtype == np.float32:
                values = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
            else:
                values = values.cast(pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)
        values = np.asarray(values, dtype=object if dtype is object else None)
        if dtype is object:
            values = np.array(["" if v is None else str(v) for v in values], dtype=object)
        elif dtype == np.float32:  # None → NaN: the model imputes the training mean
            values = np.array([np.nan if v is None else v for v in values.tolist()], dtype=np.float64)
            values = values.astype(np.float32)
        else:  # None → -1: the lookup layers map it to the OOV bucket
            values = np.array([-1 if v is None else v for v in values.tolist()], dtype=np.int64)
        out[name] = values.reshape(-1, 1)
    return out


def _register_layers():
    import keras

    @keras.saving.register_keras_serializable(package="prodml")
    class FillNaN(keras.layers.Layer):
        """Missing numeric values (NaN) → the training mean. Part of the shared transform."""

        def __init__(self, value: float = 0.0, **kwargs):
            super().__init__(**kwargs)
            self.value = float(value)

        def call(self, x):
            return keras.ops.where(keras.ops.isnan(x), keras.ops.full_like(x, self.value), x)

        def get_config(self):
            return {**super().get_config(), "value": self.value}

    return FillNaN


@lru_cache(maxsize=1)
def custom_objects() -> dict:
    fill_nan = _register_layers()
    return {"prodml>FillNaN": fill_nan}


def preprocessing(schema: Schema, stats: dict):
    """Keras inputs (raw features) and the transformed, concatenated feature tensor.

    `stats` comes from the Beam transform: {"numeric": {name: {"mean", "var"}},
    "vocabulary": {name: [values]}}. Vocabularies fixed in the schema win over observed ones.
    """
    import keras

    fill_nan = custom_objects()["prodml>FillNaN"]
    inputs, encoded = {}, []
    for f in schema.model_inputs:
        dtype = {"string": "string", "int": "int64", "float": "float32"}[f.type]
        if f.transform == "normalize":
            dtype = "float32"
        x = keras.Input(shape=(1,), name=f.name, dtype=dtype)
        inputs[f.name] = x
        if f.transform == "normalize":
            s = stats["numeric"][f.name]
            filled = fill_nan(s["mean"], name=f"{f.name}_fill")(x)
            encoded.append(keras.layers.Normalization(mean=s["mean"], variance=max(s["var"], 1e-12),
                                                      name=f"{f.name}_norm")(filled))
        elif f.transform == "lookup":
            vocab = list(f.vocabulary) if f.vocabulary else list(stats["vocabulary"][f.name])
            layer_cls = keras.layers.StringLookup if f.type == "string" else keras.layers.IntegerLookup
            if f.type != "string":
                vocab = [int(v) for v in vocab]
            encoded.append(layer_cls(vocabulary=vocab, num_oov_indices=1, output_mode="one_hot",
                                     name=f"{f.name}_lookup")(x))
        elif f.transform == "hash":
            hashed = keras.layers.Hashing(num_bins=f.hash_bins, name=f"{f.name}_hash")(x)
            emb = keras.layers.Embedding(f.hash_bins, 8, name=f"{f.name}_embedding")(hashed)
            encoded.append(keras.layers.Flatten(name=f"{f.name}_flat")(emb))
    features = keras.layers.Concatenate(name="transformed_features")(encoded)
    return inputs, features
