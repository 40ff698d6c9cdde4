"""The error every data check raises: it names the file, the row (header = 1), the field and the rule.

(The checks themselves live in `ml.validate`.)"""

from __future__ import annotations

from dataclasses import dataclass

from ml.errors import PermanentError


@dataclass
class DataError(PermanentError, ValueError):
    file: str
    rule: str
    field: str | None = None
    row: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        where = self.file + (f", row {self.row}" if self.row is not None else "")
        what = f"field {self.field!r}: " if self.field else ""
        return f"{where}: {what}{self.rule}" + (f" ({self.detail})" if self.detail else "")
