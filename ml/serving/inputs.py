"""Request checking: a `/predict` body against the feature contract, before anything is scored.

An instance is one row of the forecast table (`forecast/dt=D/*.csv`): every feature the schema
says is known ahead, with its type and domain. Everything wrong with a request is a `BadInput`
that names the field (`instances[3].hour`) and maps to a 4xx; nothing here raises anything else,
so bad input can never become a 500.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from ml import features as F


class BadInput(ValueError):
    """A request the service refuses: HTTP `status`, the offending `field`, a readable reason."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status

    def payload(self) -> dict:
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True)
class _Check:
    name: str
    type: str
    nullable: bool
    vocabulary: frozenset | None
    vocabulary_text: str
    range: tuple | None
    pattern: re.Pattern | None


def _vocabulary_text(values) -> str:
    values = list(values)
    if all(isinstance(v, int) for v in values) and values == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(str(v) for v in values)


class InstanceChecker:
    """Checks instances against the schema's known-ahead features (built once per schema)."""

    def __init__(self, schema: F.Schema, max_instances: int):
        self.schema = schema
        self.max_instances = max_instances
        self.checks = []
        for f in schema.features:
            if f.known != "ahead":
                continue
            closed = f.vocabulary is not None and not f.open_vocabulary
            self.checks.append(_Check(
                name=f.name, type=f.type, nullable=f.presence < 1.0,
                vocabulary=frozenset(f.vocabulary) if closed else None,
                vocabulary_text=_vocabulary_text(f.vocabulary) if closed else "",
                range=f.range if f.is_numeric else None,
                pattern=re.compile(f.pattern) if f.pattern else None))
        self.names = frozenset(c.name for c in self.checks)
        self.not_ahead = {f.name: f.known for f in schema.features if f.known != "ahead"}
        if schema.label:
            self.not_ahead[schema.label] = "after"

    def parse(self, body: bytes) -> list[dict]:
        """The request body → its instances, checked; BadInput on the first problem."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadInput("body", f"malformed JSON: {exc}", 400) from None
        if not isinstance(payload, dict) or "instances" not in payload:
            raise BadInput("instances", 'the body must be a JSON object {"instances": [...]}', 400)
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadInput("instances", "must be a non-empty list of objects", 400)
        if len(instances) > self.max_instances:
            raise BadInput("instances", f"{len(instances)} instances in one request; at most "
                                        f"{self.max_instances}", 413)
        for i, instance in enumerate(instances):
            self.check(instance, f"instances[{i}]")
        return instances

    def check(self, instance, where: str) -> None:
        if not isinstance(instance, dict):
            raise BadInput(where, "an instance must be a JSON object of feature: value")
        extra = instance.keys() - self.names
        if extra:
            name = sorted(extra)[0]
            if name in self.not_ahead:
                raise BadInput(f"{where}.{name}", f"known only {self.not_ahead[name]!r} the event, so it "
                                                  "cannot be a serving input")
            raise BadInput(f"{where}.{name}", "unexpected field (not a feature of the schema "
                                              f"{self.schema.name!r})")
        for c in self.checks:
            field = f"{where}.{c.name}"
            if c.name not in instance:
                raise BadInput(field, "missing feature")
            value = instance[c.name]
            if value is None:
                if not c.nullable:
                    raise BadInput(field, "must not be null")
                continue
            if c.type == "string":
                if not isinstance(value, str):
                    raise BadInput(field, f"expected a string, got {type(value).__name__}")
            elif c.type == "int":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise BadInput(field, f"expected an integer, got {type(value).__name__}")
            else:
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise BadInput(field, f"expected a number, got {type(value).__name__}")
                if not math.isfinite(value):
                    raise BadInput(field, "must be a finite number")
            if c.vocabulary is not None and value not in c.vocabulary:
                raise BadInput(field, f"unknown {c.name} {value!r} (expected one of {c.vocabulary_text})")
            if c.range is not None and not c.range[0] <= value <= c.range[1]:
                raise BadInput(field, f"{value!r} is outside the range [{c.range[0]}, {c.range[1]}]")
            if c.pattern is not None and not c.pattern.fullmatch(value):
                raise BadInput(field, f"{value!r} does not match {c.pattern.pattern}")
