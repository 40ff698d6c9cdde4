"""Local model registry: immutable versions in a folder, a `champion` alias moved atomically.

Layout under `root` (the local stand-in for Vertex AI Model Registry + version aliases):

    versions/v0001/model/            copy of the SavedModel directory (read-only)
    versions/v0001/metadata.json     version, created_at, metrics, data_range, schema_hash,
                                     parent_version, plus the caller's extra keys (read-only)
    versions/v0001/attachments/      <name>.json payloads and other files (attach_file), written
                                     once each (blessings, statistics, reference values)
    aliases.json                     {"champion": "v0003" | null, "previous": ... }
    history.jsonl                    one line per alias move, append-only
    .lock                            fcntl.flock: register/promote/rollback/attach never interleave

Crash safety: a version appears by `os.rename` of a fully written temp folder; aliases.json is
replaced by `os.replace` of an fsynced temp file, so readers see the old or the new aliases,
never a torn file. Leftover temp files/folders of a killed process are removed under the lock.

Fault injection: `_fault_point(name)` is called between the steps of every alias move. When the
environment variable PRODML_FAULT_POINT equals `name` the process SIGKILLs itself there, so
tests can check that a crash at any step leaves a consistent registry. Names (see FAULT_POINTS):
`<action>.after_read_aliases`, `<action>.after_write_temp`, `<action>.after_replace`,
`<action>.after_history_append`, with action = promote | rollback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import sys
import uuid
from pathlib import Path

from ml.storage import to_path, to_uri

ALIASES = ("champion", "previous")
RESERVED = ("version", "created_at", "path", "uri", "aliases", "attachments")
FAULT_POINTS = tuple(
    f"{action}.{step}"
    for action in ("promote", "rollback")
    for step in ("after_read_aliases", "after_write_temp", "after_replace", "after_history_append")
)
_VERSION = re.compile(r"^v(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_TMP_PREFIX = ".tmp-"


class RegistryError(RuntimeError):
    pass


def _fault_point(name: str) -> None:
    """Test hook: SIGKILL this process at step `name` if PRODML_FAULT_POINT == name; else nothing."""
    if os.environ.get("PRODML_FAULT_POINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------- helpers


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _version_id(number: int) -> str:
    return f"v{number:04d}"


def _normalise_version(version: str) -> str:
    """'v0003', 'v3' and '3' all name version v0003."""
    match = _VERSION.match(version) or re.match(r"^(\d+)$", version)
    if not match:
        raise RegistryError(f"{version!r} is neither a version (v0003) nor an alias {ALIASES}")
    return _version_id(int(match.group(1)))


def _versions_dir(root: Path) -> Path:
    return Path(root) / "versions"


def _version_numbers(root: Path) -> list[int]:
    folder = _versions_dir(root)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name)))


@contextlib.contextmanager
def _locked(root: Path):
    """Exclusive flock on root/.lock; the kernel releases it even if the process is killed."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    # Makes a rename/replace inside `path` durable, not only the file contents.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(folder: Path, data: bytes) -> Path:
    """Write `data` to a fsynced temp file in `folder` (same filesystem, so rename is atomic)."""
    tmp = folder / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def _make_read_only(path: Path) -> None:
    """Signal immutability: files r--r--r--, folders r-xr-xr-x (root still can write; tools won't)."""
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o444)
        for name in dirnames:
            os.chmod(Path(dirpath) / name, 0o555)
    os.chmod(path, 0o555)


def _remove_tree(path: Path) -> None:
    for dirpath, _, _ in os.walk(path):
        os.chmod(dirpath, stat.S_IRWXU)
    shutil.rmtree(path)


def _clean_leftovers(root: Path) -> None:
    """Remove temp files/folders left by a killed process (only called under the lock)."""
    for pattern in ("", "versions/", "versions/v*/attachments/"):
        for path in root.glob(f"{pattern}{_TMP_PREFIX}*"):
            _remove_tree(path) if path.is_dir() else path.unlink()


def _read_aliases(root: Path) -> dict:
    path = Path(root) / "aliases.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    return {name: stored.get(name) for name in ALIASES}


def _resolve(root: Path, version_or_alias: str) -> str:
    """Version id named by `version_or_alias`; RegistryError if it names nothing registered."""
    if version_or_alias in ALIASES:
        version = _read_aliases(root)[version_or_alias]
        if version is None:
            raise RegistryError(f"alias {version_or_alias!r} is not set in registry {root}")
    else:
        version = _normalise_version(version_or_alias)
    if not (_versions_dir(root) / version / "metadata.json").exists():
        raise RegistryError(f"unknown version {version_or_alias!r} in registry {root}")
    return version


# ---------------------------------------------------------------- public API


def register(root, model_dir, metadata: dict) -> str:
    """Copy `model_dir` into a new immutable version; return its id ('v0001', 'v0002', ...).

    `metadata` may hold metrics, data_range, schema_hash, parent_version and any other
    JSON-serialisable keys; version and created_at are set here. Registering the same model
    twice makes two versions: versions are never reused or overwritten.
    """
    root, model_dir = Path(root), to_path(model_dir)
    if not model_dir.is_dir():
        raise RegistryError(f"model directory {model_dir} does not exist")
    clash = sorted(set(metadata) & set(RESERVED))
    if clash:
        raise RegistryError(f"metadata keys {clash} are set by the registry")
    with _locked(root):
        _clean_leftovers(root)
        versions = _versions_dir(root)
        versions.mkdir(exist_ok=True)
        # Monotonic: versions are never deleted, so max + 1 never reuses a number.
        version = _version_id(max(_version_numbers(root), default=0) + 1)
        record = {
            "version": version,
            "created_at": _now(),
            "metrics": {},
            "data_range": {},
            "schema_hash": None,
            "parent_version": None,
            **metadata,
        }
        text = json.dumps(record, indent=2, sort_keys=True, default=str)  # fail before copying
        tmp = versions / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        shutil.copytree(model_dir, tmp / "model")
        (tmp / "metadata.json").write_text(text + "\n")
        (tmp / "attachments").mkdir()  # stays writable: it only ever gets new files (attach)
        _make_read_only(tmp / "model")
        os.chmod(tmp / "metadata.json", 0o444)
        final = versions / version
        if final.exists():  # rename() would silently replace an *empty* folder: refuse explicitly
            _remove_tree(tmp)
            raise RegistryError(f"version {version} already exists in {root}")
        os.rename(tmp, final)  # atomic: the version appears complete or not at all
        _fsync_dir(versions)
        os.chmod(final, 0o555)
    return version


def aliases(root) -> dict:
    """{'champion': version | None, 'previous': version | None}."""
    return _read_aliases(Path(root))


def history(root) -> list[dict]:
    """Alias moves, oldest first."""
    path = Path(root) / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def get(root, version_or_alias: str = "champion") -> dict:
    """Metadata of a version (or of the version an alias points to), with its model path and URI."""
    root = Path(root)
    version = _resolve(root, version_or_alias)
    folder = _versions_dir(root) / version
    record = json.loads((folder / "metadata.json").read_text())
    record["path"] = str(folder / "model")
    record["uri"] = to_uri(folder / "model")
    record["aliases"] = [name for name, v in _read_aliases(root).items() if v == version]
    record["attachments"] = sorted(p.stem for p in (folder / "attachments").glob("*.json"))
    return record


def list_versions(root) -> list[dict]:
    """Metadata of every version, oldest first, each with the aliases pointing at it."""
    root = Path(root)
    current = _read_aliases(root)
    out = []
    for number in _version_numbers(root):
        version = _version_id(number)
        record = json.loads((_versions_dir(root) / version / "metadata.json").read_text())
        record["aliases"] = [name for name, v in current.items() if v == version]
        out.append(record)
    return out


def _move_champion(root: Path, action: str, target: str | None, reason: str) -> dict:
    """Shared by promote and rollback: champion := target, previous := old champion, log it."""
    with _locked(root):
        _clean_leftovers(root)
        current = _read_aliases(root)
        _recover_history(root, current)
        _fault_point(f"{action}.after_read_aliases")
        if target is None:  # rollback to the previous alias
            target = current["previous"]
            if target is None:
                raise RegistryError(f"nothing to roll back to: no previous champion in {root}")
        target = _resolve(root, target)
        if target == current["champion"]:
            return current  # already there: a retried task must not flip the aliases again
        new = {"champion": target, "previous": current["champion"]}
        tmp = _write_temp(root, (json.dumps(new, indent=2) + "\n").encode())
        _fault_point(f"{action}.after_write_temp")
        os.replace(tmp, root / "aliases.json")
        _fsync_dir(root)
        _fault_point(f"{action}.after_replace")
        _append_history(root, {"at": _now(), "action": action, "alias": "champion",
                                "from": current["champion"], "to": target, "reason": reason})
        _fault_point(f"{action}.after_history_append")
        return new


def _append_history(root: Path, entry: dict) -> None:
    # One O_APPEND write per line: concurrent or killed writers never interleave a line.
    fd = os.open(root / "history.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _recover_history(root: Path, current: dict) -> None:
    """A process killed between replacing aliases.json and appending its history line leaves the
    alias moved but unrecorded: restore the missing line (under the lock) before the next move."""
    last = history(root)[-1]["to"] if (root / "history.jsonl").exists() and history(root) else None
    if current["champion"] is not None and current["champion"] != last:
        _append_history(root, {"at": _now(), "action": "recovered", "alias": "champion", "from": last,
                               "to": current["champion"],
                               "reason": "alias moved by an interrupted promotion; history line restored"})


def promote(root, version: str, reason: str = "") -> dict:
    """Make `version` the champion (the old champion becomes `previous`); return the aliases."""
    return _move_champion(Path(root), "promote", version, reason)


def rollback(root, version: str | None = None, reason: str = "") -> dict:
    """Make `version` (default: the `previous` alias) the champion; return the aliases.

    The champion rolled back from becomes `previous`. Note that calling rollback() twice
    without a version flips back: callers that may retry should pass the version explicitly.
    """
    return _move_champion(Path(root), "rollback", version, reason)


def attach(root, version: str, name: str, payload: dict) -> str:
    """Write `versions/<v>/attachments/<name>.json` once (RegistryError if it exists); return its path.

    Versions are immutable; attachments add records that come after registration (a blessing,
    reference statistics) without rewriting anything.
    """
    root = Path(root)
    if not _NAME.match(name):
        raise RegistryError(f"invalid attachment name {name!r}")
    data = (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode()
    return _attach_once(root, version, f"{name}.json", lambda folder: _write_temp(folder, data))


def _attach_once(root: Path, version: str, filename: str, make_temp) -> str:
    """Link the temp file `make_temp(folder)` writes to `attachments/<filename>` under the registry
    lock: an atomic create-once (RegistryError if the name exists), read-only afterwards."""
    with _locked(root):
        _clean_leftovers(root)
        folder = _versions_dir(root) / _resolve(root, version) / "attachments"
        final = folder / filename
        tmp = make_temp(folder)
        try:
            os.link(tmp, final)  # atomic create-once: fails if the name exists
        except FileExistsError:
            raise RegistryError(f"attachment {filename!r} already exists for {version}") from None
        finally:
            tmp.unlink()
        os.chmod(final, 0o444)
    return str(final)


def read_attachment(root, version_or_alias: str, name: str) -> dict:
    """The payload of an attachment; RegistryError if it was never attached."""
    root = Path(root)
    path = _versions_dir(root) / _resolve(root, version_or_alias) / "attachments" / f"{name}.json"
    if not path.exists():
        raise RegistryError(f"no attachment {name!r} for {version_or_alias}")
    return json.loads(path.read_text())


def attach_file(root, version: str, name: str, source_path) -> str:
    """Copy `source_path` to `versions/<v>/attachments/<name>` once (RegistryError if it exists);
    return its path. The file counterpart of `attach` (e.g. reference values as Parquet): same
    lock, same create-once `os.link` of a fsynced temp file, read-only afterwards."""
    if not _NAME.match(name) or name.endswith(".json"):
        raise RegistryError(f"invalid attachment file name {name!r} (JSON payloads go through attach)")

    def copy(folder: Path) -> Path:
        tmp = folder / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        shutil.copyfile(to_path(source_path), tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        return tmp

    return _attach_once(Path(root), version, name, copy)


def attachment_path(root, version_or_alias: str, name: str) -> Path:
    """Where the file attachment `name` of a version lies; RegistryError if it was never attached."""
    root = Path(root)
    path = _versions_dir(root) / _resolve(root, version_or_alias) / "attachments" / name
    if not _NAME.match(name) or not path.is_file():
        raise RegistryError(f"no attachment file {name!r} for {version_or_alias}")
    return path


# ---------------------------------------------------------------- the registry backend


class FolderRegistry:
    """The folder registry above as an object: the local profile's registry backend. Same methods
    as `ml.bucket_registry.BucketRegistry` (the gcp profile's), so callers hold either."""

    kind = "local"

    def __init__(self, root):
        self.root = str(root)

    def __repr__(self) -> str:
        return f"FolderRegistry({self.root!r})"

    def register(self, model_dir, metadata: dict) -> str:
        return register(self.root, model_dir, metadata)

    def aliases(self) -> dict:
        return aliases(self.root)

    def history(self) -> list[dict]:
        return history(self.root)

    def get(self, version_or_alias: str = "champion") -> dict:
        return get(self.root, version_or_alias)

    def list_versions(self) -> list[dict]:
        return list_versions(self.root)

    def promote(self, version: str, reason: str = "") -> dict:
        return promote(self.root, version, reason)

    def rollback(self, version: str | None = None, reason: str = "") -> dict:
        return rollback(self.root, version, reason)

    def attach(self, version: str, name: str, payload: dict) -> str:
        return attach(self.root, version, name, payload)

    def attach_file(self, version: str, name: str, source_path) -> str:
        return attach_file(self.root, version, name, source_path)

    def read_attachment(self, version_or_alias: str, name: str) -> dict:
        return read_attachment(self.root, version_or_alias, name)

    def attachment_uri(self, version_or_alias: str, name: str) -> str:
        return str(attachment_path(self.root, version_or_alias, name))


KINDS = ("local", "bucket")


def connect(section: dict):
    """The registry backend the profile's `registry:` section names: {kind: local, root: <folder>}
    (FolderRegistry) or {kind: bucket, root: gs://<bucket>/registry} (BucketRegistry). The one
    place the kind is read."""
    kind = section.get("kind", "local")
    if kind == "local":
        return FolderRegistry(section["root"])
    if kind == "bucket":
        from ml.bucket_registry import BucketRegistry

        return BucketRegistry(section["root"])
    raise RegistryError(f"registry kind must be one of {KINDS}, not {kind!r}")


# ---------------------------------------------------------------- CLI


def _table(records: list[dict]) -> str:
    rows = [("VERSION", "ALIASES", "CREATED", "AUC", "PARENT")]
    for r in records:
        auc = r.get("metrics", {}).get("auc")
        rows.append((r["version"], ",".join(r["aliases"]) or "-", r["created_at"],
                     f"{auc:.4f}" if isinstance(auc, (int, float)) else "-", r.get("parent_version") or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.registry", description="Local model registry.")
    parser.add_argument("--root", help="registry folder (default: the profile's registry.root)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="all versions")
    show = sub.add_parser("show", help="one version's metadata")
    show.add_argument("version", nargs="?", default="champion", help="version or alias (default champion)")
    back = sub.add_parser("rollback", help="move champion back (default: to the previous champion)")
    back.add_argument("--version")
    back.add_argument("--reason", default="manual rollback (CLI)")
    back.add_argument("--force", action="store_true", help="restore a version even though the gate failed it")
    sub.add_parser("history", help="alias moves")
    args = parser.parse_args(argv)

    if args.root:
        section = {"kind": "local", "root": args.root}
    else:
        from ml import config  # an entry point: the only place here that reads the profile

        section = config.load()["registry"]
    reg = connect(section)
    try:
        if args.command == "list":
            records = reg.list_versions()
            print(_table(records) if records else "no versions registered")
        elif args.command == "show":
            print(json.dumps(reg.get(args.version), indent=2, sort_keys=True))
        elif args.command == "rollback":
            if args.version and not args.force:
                from ml import gate  # gate imports this module

                gate.check_restorable(reg, args.version)
            print(json.dumps(reg.rollback(args.version, args.reason)))
        elif args.command == "history":
            for entry in reg.history():
                line = f"{entry['at']}  {entry['action']:<8}  {entry['from'] or '-'} -> {entry['to']}"
                print(f"{line}  {entry['reason']}".rstrip())
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the imported module's main: errors raised through ml.gate are ml.registry's classes, not
    # this __main__ copy's, and `except RegistryError` must catch them.
    from ml import registry

    sys.exit(registry.main())
