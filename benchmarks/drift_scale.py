"""Drift at scale: `ml.drift` (build the reference from a CSV, check a current CSV against it, as
`python -m ml.drift --reference R.csv --current C.csv` does) against the floor measured in the
same run: reading both CSVs with pyarrow, plus a histogram per numeric column and value counts per
categorical column. Aim: drift time <= 1.5x the floor.

Synthetic data, generated once into benchmarks/.data/drift-scale-<rows>/: 20 columns (12 numeric:
normal, lognormal, Pareto, Cauchy, small integers with ties, nulls mixed in; 8 categorical of
cardinality 3..1000, one used as the slice) plus a 0/1 label; the current CSV has two shifted columns.

    python -m benchmarks.drift_scale [--rows 1000000] [--repeat 1]
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa

from benchmarks import common
from benchmarks.common import figure, print_table, timed, write_result

NUMERIC, CATEGORICAL = 12, 8
CARDINALITY = (3, 4, 7, 12, 24, 60, 200, 1000)


def _schema_text() -> str:
    lines = ["name: drift_scale", "version: 1", "keys: []", "label: {name: label, type: int, values: [0, 1]}",
             "row_count: [1, 100000000]", "features:"]
    for i in range(NUMERIC):
        type_ = "int" if i % 4 == 3 else "float"
        lines.append(f"  - {{name: n{i}, type: {type_}, kind: numeric, known: ahead, presence: 0.0, "
                     "transform: normalize}")
    for i in range(CATEGORICAL):
        lines.append(f"  - {{name: c{i}, type: string, kind: categorical, known: ahead, presence: 0.0, "
                     "open_vocabulary: true, transform: lookup}")
    return "\n".join(lines) + "\n"


def _numeric(rng, i: int, n: int, shift: float) -> pa.Array:
    kind = i % 4
    if kind == 0:
        x = rng.normal(10 + shift, 3, n)
    elif kind == 1:
        x = rng.lognormal(1 + shift / 10, 0.8, n)
    elif kind == 2:
        x = rng.pareto(1.5, n) if i % 8 == 2 else rng.standard_cauchy(n)
    else:
        return pa.array(rng.poisson(3 + shift, n), mask=rng.random(n) < 0.02)
    return pa.array(np.round(x, 4), mask=rng.random(n) < 0.02)


def _table(rng, n: int, shifted: bool) -> pa.Table:
    columns = {}
    for i in range(NUMERIC):
        columns[f"n{i}"] = _numeric(rng, i, n, 1.0 if shifted and i == 0 else 0.0)
    for i, k in enumerate(CARDINALITY):
        p = 1 / np.arange(1, k + 1) ** (1.2 if shifted and i == 1 else 1.0)
        codes = rng.choice(k, n, p=p / p.sum())
        columns[f"c{i}"] = pa.DictionaryArray.from_arrays(codes, pa.array([f"v{j}" for j in range(k)])).cast(pa.string())
    columns["label"] = pa.array((rng.random(n) < 0.15).astype(np.int64))
    return pa.table(columns)


def data(rows: int, folder=None) -> dict:
    """Reference and current CSVs of `rows` rows each and their schema, generated once."""
    import pyarrow.csv as pacsv

    folder = folder or common.DATA / f"drift-scale-{rows}"
    paths = {"schema": folder / "schema.yaml", "reference": folder / "reference.csv", "current": folder / "current.csv"}
    if not (folder / "_DONE").exists():
        folder.mkdir(parents=True, exist_ok=True)
        paths["schema"].write_text(_schema_text())
        rng = np.random.default_rng(17)
        pacsv.write_csv(_table(rng, rows, False), paths["reference"])
        pacsv.write_csv(_table(rng, rows, True), paths["current"])
        (folder / "_DONE").write_text("ok\n")
    return paths


def floor(paths: dict) -> int:
    """Read both CSVs with pyarrow (schema types) and histogram / count every column."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from ml import features as F

    schema = F.load_schema(str(paths["schema"]))
    types = F.arrow_types(schema)
    rows = 0
    for name in ("reference", "current"):
        table = pacsv.read_csv(paths[name], convert_options=pacsv.ConvertOptions(column_types=types))
        for f in schema.features:
            if f.is_numeric:
                x = pc.cast(table.column(f.name), pa.float64()).to_numpy(zero_copy_only=False)
                np.histogram(x[np.isfinite(x)], bins=40)
            else:
                pc.value_counts(table.column(f.name))
        rows += table.num_rows
    return rows


def drift(paths: dict, config: dict) -> dict:
    from ml import drift as D

    reference = D.build_reference([paths["reference"]], paths["schema"], config)
    return D.check_drift(reference, [paths["current"]], paths["schema"], config=config)


def run(rows: int = 1_000_000, repeat: int = 1, folder=None) -> dict:
    paths = data(rows, folder)
    config = {"slice_by": "c1"}
    t_floor, _, _ = timed(lambda: floor(paths), repeat=repeat, warmup=1)
    t_drift, _, result = timed(lambda: drift(paths, config), repeat=repeat)
    ratio = t_drift / t_floor
    fig = figure(f"drift {rows:,} x 20 vs read+histograms", t_floor, t_drift, 2 * rows, aim=round(1 / 1.5, 3),
                 baseline="pyarrow read of both CSVs + histogram/value counts per column",
                 ours="ml.drift: build reference + check (exact KS/W1, slices, label, leakage)",
                 note=f"drift / floor = {ratio:.2f}x (aim <= 1.5x); drifted: {', '.join(result['drifted'])}")
    out = {"rows": rows, "floor_s": t_floor, "drift_s": t_drift, "drift_over_floor": ratio,
           "within_aim": ratio <= 1.5, "drifted": result["drifted"], "scores": len(result["scores"]),
           "figures": [fig]}
    print_table("drift at scale", [fig])
    write_result("drift_scale", out)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    return run(rows=args.rows, repeat=args.repeat)


if __name__ == "__main__":
    main()
