"""URIs of the "bucket": file:// (local profile, or a bare path) and gs:// (gcp profile).

Local URIs map to paths; gs:// goes through tf.io.gfile / Beam's FileSystems in the
components that read it, so this module only needs the local mapping.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse


def is_local(uri: str) -> bool:
    return urlparse(str(uri)).scheme in ("", "file")


def to_path(uri: str | Path) -> Path:
    """file:///x/y or /x/y → Path('/x/y'). Raises for remote URIs."""
    uri = str(uri)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "":
        return Path(uri)
    raise ValueError(f"{uri} is not a local URI; open it with tf.io.gfile or Beam FileSystems")


def join(uri: str, *parts: str) -> str:
    return "/".join([str(uri).rstrip("/"), *[p.strip("/") for p in parts]])


def to_uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()
