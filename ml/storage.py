"""The storage backend: one interface over the "bucket" for every URI the profile names.

`file://` (or a bare path) on the local profile, `gs://` on the gcp profile, both through fsspec
(gcsfs for Cloud Storage): fsspec is the filesystem layer pyarrow, pandas and Beam-adjacent tools
already speak, gcsfs is kept by the same maintainers, and it honours `STORAGE_EMULATOR_HOST`, so the
gcp profile runs against the GCS emulator in tests with no code change. The filesystem is chosen
by the URI the profile gives, here and nowhere else: no `ml/` function branches on the scheme.

Interface: read / write (atomic put) / exists / glob / list, directory copy in and out
(`put_dir`, `get_dir`), `local_copy` (a local path to read a file or folder that TensorFlow or a
two-pass reader needs on disk) and `staged_output` (write a folder locally, publish it on exit),
plus the two conditional writes the bucket registry needs: `create_once` and `replace_if`
(compare-and-swap on an object generation; on a local folder, on the file's identity under a lock).
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

import fsspec
from fsspec.implementations.local import LocalFileSystem


class PreconditionFailed(RuntimeError):
    """A conditional write lost: the object changed (or exists) since the caller read it."""


def is_local(uri: str) -> bool:
    return urlparse(str(uri)).scheme in ("", "file")


def to_path(uri: str | Path) -> Path:
    """file:///x/y or /x/y → Path('/x/y'). Raises for remote URIs (use `local_copy`)."""
    uri = str(uri)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "":
        return Path(uri)
    raise ValueError(f"{uri} is not a local URI; read it through ml.storage (local_copy, open)")


def join(uri: str, *parts: str) -> str:
    return "/".join([str(uri).rstrip("/"), *[p.strip("/") for p in parts]])


def to_uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def name(uri: str) -> str:
    """The last path element of a URI or path."""
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(fsspec filesystem, path inside it) for `uri`. Listings are never served from a cache:
    other processes write the bucket between our calls."""
    fs, path = fsspec.core.url_to_fs(str(uri))
    fs.invalidate_cache()
    return fs, path


def _local(fs) -> bool:
    return isinstance(fs, LocalFileSystem)


def _full(fs, path: str, like: str) -> str:
    """A path fsspec returned, as a URI of the same kind as `like` (bare paths stay bare)."""
    if _local(fs):
        return f"file://{path}" if str(like).startswith("file://") else path
    return fs.unstrip_protocol(path)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def isdir(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.isdir(path)


def glob(pattern: str) -> list[str]:
    """Sorted URIs (bare paths for bare-path patterns) matching `pattern` (`*`, `?`, `[..]`)."""
    fs, path = filesystem(pattern)
    return sorted(_full(fs, p, pattern) for p in fs.glob(path))


def listdir(uri: str) -> list[str]:
    """Sorted URIs directly under `uri` (empty if it does not exist)."""
    fs, path = filesystem(uri)
    if not fs.isdir(path):
        return []
    return sorted(_full(fs, p, uri) for p in fs.ls(path, detail=False) if p.rstrip("/") != path.rstrip("/"))


def open(uri: str, mode: str = "rb", **kwargs):  # noqa: A001 - the storage API's own open
    fs, path = filesystem(uri)
    if "w" in mode and _local(fs):
        fs.makedirs(fs._parent(path), exist_ok=True)
    return fs.open(path, mode, **kwargs)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode()


def write_bytes(uri: str, data: bytes) -> str:
    """Atomic put: readers see the old object or the new one, never a part (a local file is
    written to a temp name and renamed; a Cloud Storage upload is atomic by itself)."""
    fs, path = filesystem(uri)
    if _local(fs):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}-{target.name}"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    else:
        fs.pipe_file(path, data)
    return uri


def write_text(uri: str, text: str) -> str:
    return write_bytes(uri, text.encode())


def makedirs(uri: str) -> None:
    """Create a folder (local); object stores have no folders, so nothing to do there."""
    fs, path = filesystem(uri)
    fs.makedirs(path, exist_ok=True)


def put_file(local_path: str | Path, uri: str) -> str:
    fs, path = filesystem(uri)
    if _local(fs):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).parent / f".tmp-{uuid.uuid4().hex}"
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, path)
    else:
        fs.put_file(str(local_path), path)
    return uri


def put_dir(local_dir: str | Path, uri: str) -> str:
    """Copy a local folder's files to `uri/...` (the folder's layout kept)."""
    local_dir = Path(local_dir)
    for file in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        put_file(file, join(uri, file.relative_to(local_dir).as_posix()))
    return uri


def get_dir(uri: str, local_dir: str | Path) -> Path:
    """Copy every object under `uri` into `local_dir` (layout kept); return `local_dir`."""
    fs, path = filesystem(uri)
    local_dir = Path(local_dir)
    base = path.rstrip("/")
    for found in fs.find(base):
        target = local_dir / found[len(base):].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(found, str(target))
    return local_dir


@contextlib.contextmanager
def local_copy(uri: str):
    """A local path holding the file or folder `uri`: the path itself on a local filesystem, else
    a temporary download removed on exit. For readers that need a real file (TensorFlow's
    SavedModel loader, the validator's two passes)."""
    fs, path = filesystem(uri)
    if _local(fs):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="prodml-") as tmp:
        if fs.isdir(path):
            yield get_dir(uri, Path(tmp) / name(uri))
        else:
            target = Path(tmp) / name(uri)
            fs.get_file(path, str(target))
            yield target


@contextlib.contextmanager
def local_files(pattern: str):
    """Local paths of the files matching `pattern` (downloaded to a temporary folder, removed on
    exit, when they live in a bucket): TensorFlow's readers read local disk at disk speed every
    epoch, whatever the store behind the profile."""
    found = glob(pattern)
    fs, _ = filesystem(pattern)
    if _local(fs):
        yield [to_path(f) for f in found]
        return
    with tempfile.TemporaryDirectory(prefix="prodml-") as tmp:
        paths = []
        for i, uri in enumerate(found):  # numbered: shards of two folders may share a name
            target = Path(tmp) / f"{i:05d}-{name(uri)}"
            fs.get_file(filesystem(uri)[1], str(target))
            paths.append(target)
        yield paths


_CACHE: dict[str, Path] = {}


def cached_copy(uri: str) -> Path:
    """A local path of the file or folder `uri` that lives as long as this process (the path itself
    on a local filesystem): for a SavedModel, whose assets TensorFlow may read after loading."""
    fs, path = filesystem(uri)
    if _local(fs):
        return Path(path)
    if uri not in _CACHE:
        tmp = Path(tempfile.mkdtemp(prefix="prodml-cache-"))
        atexit.register(shutil.rmtree, tmp, True)
        _CACHE[uri] = get_dir(uri, tmp / name(uri)) if fs.isdir(path) else _get_file(fs, path, tmp / name(uri))
    return _CACHE[uri]


def _get_file(fs, path: str, target: Path) -> Path:
    fs.get_file(path, str(target))
    return target


@contextlib.contextmanager
def staged_output(uri: str):
    """A local folder to write into; its files are published under `uri` when the block ends
    without an error (directly the target folder on a local filesystem)."""
    fs, path = filesystem(uri)
    if _local(fs):
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="prodml-") as tmp:
        yield Path(tmp)
        put_dir(tmp, uri)


def size_bytes(uri: str) -> int:
    """Total size of a file or of every file under a folder."""
    fs, path = filesystem(uri)
    return int(fs.du(path, total=True))


# ------------------------------------------------------------------ conditional writes


def generation(uri: str) -> str | None:
    """An opaque token that changes with every write of `uri` (None if it does not exist):
    the object generation on Cloud Storage, a content hash locally (read under the same lock
    `replace_if` writes under)."""
    fs, path = filesystem(uri)
    if _local(fs):
        target = Path(path)
        return hashlib.sha256(target.read_bytes()).hexdigest() if target.exists() else None
    try:
        return str(fs.info(path)["generation"])
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _local_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with builtins.open(path.parent / f".{path.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield



@functools.lru_cache(maxsize=1)
def _gcs_client():
    """One google-cloud-storage client per process (it honours STORAGE_EMULATOR_HOST itself)."""
    from google.cloud import storage as gcs

    return gcs.Client()


def _gcs_blob(path: str):
    """The google-cloud-storage blob for a gcsfs path: conditional writes need the client's
    `if_generation_match` (gcsfs has no precondition API)."""
    bucket, _, key = path.partition("/")
    return _gcs_client().bucket(bucket).blob(key)


def replace_if(uri: str, data: bytes, expected: str | None) -> str:
    """Write `data` only if `uri` is still at generation `expected` (None: only if it does not
    exist); PreconditionFailed otherwise. Returns the new generation."""
    fs, path = filesystem(uri)
    if _local(fs):
        target = Path(path)
        with _local_lock(target):
            if generation(uri) != expected:
                raise PreconditionFailed(f"{uri} changed since generation {expected}")
            write_bytes(uri, data)
            return generation(uri)
    from google.api_core.exceptions import PreconditionFailed as GcsPreconditionFailed

    blob = _gcs_blob(path)
    try:
        blob.upload_from_string(data, if_generation_match=0 if expected is None else int(expected))
    except GcsPreconditionFailed as exc:
        raise PreconditionFailed(f"{uri} changed since generation {expected}") from exc
    return str(blob.generation)


def create_once(uri: str, data: bytes) -> str:
    """Write `uri` only if it does not exist yet; PreconditionFailed if it does."""
    return replace_if(uri, data, None)
