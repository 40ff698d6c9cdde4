"""The reference: statistics of the champion's training data, built at promotion and stored with
the model version. Two registry attachments, written once each:

  reference_stats           JSON: the statistics (ml/drift/statistics.py) and the binning config
                            they were built with; no thresholds (those come from the caller's
                            config at every check, see ml/drift/config.py)
  reference_values.parquet  the values of the monitored columns and the slice column, so KS and
                            W1 are computed exactly on raw values at every check

Above `reference_max_rows` rows the Parquet file holds a seeded uniform sample of m rows
(without replacement); counts, bins and summaries in the JSON stay exact (computed on every row).
Sampling error (Dvoretzky–Kiefer–Wolfowitz, with Massart's constant): the sample's CDF is within
eps = sqrt(ln(2 / alpha) / (2 m)) of the full reference's everywhere with probability >= 1 - alpha,
so KS moves by at most eps: 0.0021 at m = 1,000,000 and alpha = 1e-4 (sampling without
replacement only tightens it). W1 has no distribution-free bound (a heavy tail can hide outside
the sample); its error shrinks like 1/sqrt(m) for finite-variance data.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ml import features as F
from ml.drift.config import DriftError, monitored
from ml.drift.config import binning as drift_binning
from ml.drift.statistics import Profile, measure, numeric_arrays, read_table, slice_rows, sorted_values

ATTACHMENT = "reference_stats"
VALUES_ATTACHMENT = "reference_values.parquet"
FORMAT = 2  # 1: thresholds frozen in, equal-width bins, no values (rebuild those)


def dkw_bound(rows: int, alpha: float = 1e-4) -> float:
    """Largest CDF error of a uniform sample of `rows` with probability >= 1 - alpha (DKW)."""
    return math.sqrt(math.log(2 / alpha) / (2 * rows))


def build_reference(data, schema_path, config: dict | None = None) -> dict:
    """{"format", "stats", "config" (binning), "schema_digest", "values" (Arrow table)} of the
    training data (an Arrow table or CSV paths). Thresholds are not part of it."""
    schema = F.load_schema(str(schema_path))
    binning = drift_binning(schema, config)
    table = data if isinstance(data, pa.Table) else read_table(data, schema)
    profile = measure(table, schema, binning)
    values = value_table(table, schema, binning)
    reference = {"format": FORMAT, "stats": profile.stats, "config": binning, "schema_digest": schema.digest,
                 "values": values}
    if values.num_rows == table.num_rows:  # not sampled: the sorted values at hand are the stored ones
        reference["sorted"] = profile.values
    return reference


def value_table(table: pa.Table, schema: F.Schema, binning: dict) -> pa.Table:
    """The monitored columns and the slice column; a seeded uniform sample above the row cap."""
    names = [f.name for f in monitored(schema) if f.name in table.column_names]
    slice_by = binning.get("slice_by")
    if slice_by and slice_by in table.column_names and slice_by not in names:
        names.append(slice_by)
    values = table.select(names)
    cap = int(binning["reference_max_rows"])
    if values.num_rows > cap:
        rng = np.random.default_rng(int(binning["sample_seed"]))
        values = values.take(np.sort(rng.choice(values.num_rows, cap, replace=False)))
    return values


def storable(reference: dict) -> dict:
    """The JSON part of a reference."""
    return {k: reference[k] for k in ("format", "stats", "config", "schema_digest")}


def save_reference(reference: dict, path) -> str:
    """Write the reference as `<path>` (JSON) and `<stem>.values.parquet` beside it."""
    from ml import storage

    with storage.open(_values_beside(path), "wb") as handle:
        pq.write_table(reference["values"], handle)
    storage.write_text(str(path), json.dumps(storable(reference)))
    return str(path)


def store_reference(models, version: str, data, schema_path, config: dict | None = None) -> dict:
    """Build the reference of `data` and attach it to model `version` of the registry `models`
    (`ml.registry.connect`): values first, so stats never exist without their values."""
    reference = build_reference(data, schema_path, config)
    with tempfile.TemporaryDirectory(prefix="drift-ref-") as tmp:
        values = Path(tmp) / VALUES_ATTACHMENT
        pq.write_table(reference["values"], values)
        models.attach_file(version, VALUES_ATTACHMENT, values)
    path = models.attach(version, ATTACHMENT, storable(reference))
    return {"version": version, "path": str(path), "rows": reference["stats"]["rows"],
            "values_rows": reference["values"].num_rows}


def load_reference(source, version_or_alias: str = "champion") -> dict:
    """A reference from a registry (`ml.registry.connect`; + version/alias) or from a JSON file saved
    by `save_reference`; DriftError if it predates stored values (rebuild or re-promote)."""
    from ml import registry, storage

    if isinstance(source, (str, Path)):
        reference, values = json.loads(storage.read_text(str(source))), _values_beside(source)
    else:
        reference = source.read_attachment(version_or_alias, ATTACHMENT)
        try:
            values = source.attachment_uri(version_or_alias, VALUES_ATTACHMENT)
        except registry.RegistryError:
            values = None
    if reference.get("format") != FORMAT or values is None or not storage.exists(values):
        raise DriftError(f"reference {source} ({version_or_alias}) has no stored values or an older format: "
                         "build it again (python -m ml.drift --save-reference, or re-promote the model)")
    stats = reference["stats"]
    wanted = [n for n, s in stats["features"].items() if s.get("kind") == "numeric" and not s.get("missing")]
    slice_by = reference["config"].get("slice_by")
    with storage.open(values, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        columns = parquet.schema_arrow.names
        wanted = [n for n in dict.fromkeys([*wanted, slice_by]) if n in columns]
        reference["values"] = parquet.read(columns=wanted)
    return reference


def reference_profile(reference: dict) -> Profile:
    """The reference as a check compares it: stats + sorted values per (slice, numeric feature)."""
    if "sorted" in reference:
        return Profile(reference["stats"], reference["sorted"])
    stats, values = reference["stats"], reference["values"]
    numeric = [n for n, s in stats["features"].items() if s.get("kind") == "numeric"]
    slices = slice_rows(values, reference["config"].get("slice_by"))
    return Profile(stats, sorted_values(numeric_arrays(values, numeric), slices))


def _values_beside(path) -> str:
    """reference.json → reference.values.parquet, for a path or a URI."""
    text = str(path)
    return text[:-5] + ".values.parquet" if text.endswith(".json") else text + ".values.parquet"
