"""Basic schema checks of landed files: expected columns present, none unexpected, types parse.

Errors name file, row and field. (The full Great Expectations suite builds on this.)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from ml import features as F
from ml.storage import to_path


@dataclass
class DataError(ValueError):
    file: str
    rule: str
    field: str | None = None
    row: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        where = self.file + (f", row {self.row}" if self.row is not None else "")
        what = f"field {self.field!r}: " if self.field else ""
        return f"{where}: {what}{self.rule}" + (f" ({self.detail})" if self.detail else "")


def _parse(value: str, type_: str):
    if type_ == "int":
        int(value)
    elif type_ == "float":
        float(value)


def check_file(path: str, schema: F.Schema) -> int:
    """Raise DataError at the first problem; return the number of data rows. Rows are numbered as in
    the file (header = row 1)."""
    file = str(to_path(path))
    try:
        with open(file, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise DataError(file, "file is empty (no header)")
            expected = schema.columns
            missing = [c for c in expected if c not in header]
            if missing:
                raise DataError(file, "expected column is missing", field=missing[0], row=1,
                                detail=f"missing: {', '.join(missing)}")
            unexpected = [c for c in header if c not in expected]
            if unexpected:
                raise DataError(file, "unexpected column", field=unexpected[0], row=1,
                                detail=f"unexpected: {', '.join(unexpected)}")
            types = {f.name: f.type for f in schema.features} | {schema.label: "int"}
            index = {name: header.index(name) for name in expected}
            rows = 0
            for rows, record in enumerate(reader, start=1):
                if len(record) != len(header):
                    raise DataError(file, f"row has {len(record)} fields, header has {len(header)}",
                                    row=rows + 1)
                for name, i in index.items():
                    value = record[i]
                    if value == "":
                        continue
                    try:
                        _parse(value, types[name])
                    except ValueError:
                        raise DataError(file, f"value is not of type {types[name]}", field=name,
                                        row=rows + 1, detail=repr(value)) from None
    except UnicodeDecodeError as exc:
        raise DataError(file, "file is not valid UTF-8", detail=str(exc)) from None
    if rows == 0:
        raise DataError(file, "file has a header but no rows")
    return rows
