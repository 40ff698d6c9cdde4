"""API keys: where they come from (a small interface: the environment locally, Secret Manager on
gcp) and how a request's key is checked (constant time, never logged).

A request carries its key as `Authorization: Bearer <key>` or `X-API-Key: <key>`. No key → 401;
a key that matches none → 403. The presented key is compared with every configured key through
`hmac.compare_digest`, without stopping at the first match, so the time taken says nothing about
which key (or which prefix) matched. Keys never reach a log line, an error message or a metric.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from typing import Protocol


class KeySource(Protocol):
    def keys(self) -> tuple[bytes, ...]:
        """The currently valid keys (an empty tuple refuses every request)."""


def _split(text: str) -> tuple[bytes, ...]:
    return tuple(k.strip().encode() for k in text.replace("\n", ",").split(",") if k.strip())


class EnvKeys:
    """Comma-separated keys in an environment variable (read at every call: a restart-free rotation
    in tests and in `make serve` sessions costs nothing, it is one dict lookup)."""

    def __init__(self, variable: str):
        self.variable = variable

    def keys(self) -> tuple[bytes, ...]:
        return _split(os.environ.get(self.variable, ""))

    def __repr__(self) -> str:  # never the keys themselves
        return f"EnvKeys({self.variable})"


class SecretManagerKeys:
    """Keys in a Secret Manager secret version (comma- or newline-separated), cached for `ttl_s`, so a
    rotated secret reaches the service within `ttl_s` without a request paying for the call."""

    def __init__(self, secret: str, ttl_s: float = 300.0, client=None):
        self.secret = secret  # projects/P/secrets/S/versions/latest
        self.ttl_s = ttl_s
        self._client = client
        self._cached: tuple[bytes, ...] = ()
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _fetch(self) -> tuple[bytes, ...]:
        if self._client is None:
            from google.cloud import secretmanager

            self._client = secretmanager.SecretManagerServiceClient()
        response = self._client.access_secret_version(request={"name": self.secret})
        return _split(response.payload.data.decode())

    def keys(self) -> tuple[bytes, ...]:
        if time.monotonic() - self._fetched_at > self.ttl_s:
            with self._lock:
                if time.monotonic() - self._fetched_at > self.ttl_s:
                    self._cached = self._fetch()
                    self._fetched_at = time.monotonic()
        return self._cached

    def __repr__(self) -> str:
        return f"SecretManagerKeys({self.secret})"


def key_source(section: dict) -> KeySource:
    """{source: env, env: VAR} or {source: secret_manager, secret: projects/.../versions/latest}."""
    source = section.get("source", "env")
    if source == "env":
        return EnvKeys(section["env"])
    if source == "secret_manager":
        return SecretManagerKeys(section["secret"], float(section.get("ttl_s", 300)))
    raise ValueError(f"api key source must be env or secret_manager, not {source!r}")


def presented_key(headers) -> str | None:
    """The key a request carries (Authorization: Bearer, else X-API-Key), or None."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def matches(presented: str, keys: tuple[bytes, ...]) -> bool:
    """Whether `presented` equals one of `keys`, comparing with all of them in constant time."""
    candidate = presented.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate, key)
    return found


def check(headers, source: KeySource) -> int | None:
    """None if the request may pass; 401 (no key) or 403 (a key that matches none) otherwise."""
    presented = presented_key(headers)
    if presented is None:
        return 401
    return None if matches(presented, source.keys()) else 403
