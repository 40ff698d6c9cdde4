"""The bucket registry: the model registry of the gcp profile, kept in Cloud Storage.

Same API and records as the folder registry (`ml.registry`), on object-store primitives only
(`ml.storage`), because a bucket has no locks, renames or hard links:

    models/<uuid>/                    the SavedModel folder, uploaded before its version exists
    versions/v0001/metadata.json      version, created_at, metrics, ..., model_uri — written with
                                      create-once: the version appears complete or not at all, and
                                      two registrants racing for v0001 cannot both win (the loser
                                      takes the next number; its model already lies elsewhere)
    versions/v0001/attachments/<n>    blessings, reference statistics and values, create-once
    aliases.json                      {"champion", "previous", "history": [alias moves]} — replaced
                                      only if its object generation is still the one read
                                      (compare-and-swap), so the alias and its history move together

Runs on any storage backend (tests use a local folder and the GCS emulator). Registry versions
are mirrored to Vertex AI Model Registry by the DAG (prodml_airflow.vertex): version vNNNN is
uploaded as a Vertex model version with the version labelled, and champion/previous move there
after they moved here; the bucket stays the source of truth.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

from ml import storage
from ml.registry import ALIASES, RESERVED, RegistryError, _normalise_version, _version_id

_VERSION = re.compile(r"/versions/v(\d+)/metadata\.json$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_RACES = 20  # compare-and-swap retries before giving up (each lost race means another writer won)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _json(payload) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode()


class BucketRegistry:
    kind = "bucket"

    def __init__(self, root: str):
        self.root = str(root).rstrip("/")

    def __repr__(self) -> str:
        return f"BucketRegistry({self.root!r})"

    # ------------------------------------------------------------ layout

    def _uri(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    def _metadata_uri(self, version: str) -> str:
        return self._uri("versions", version, "metadata.json")

    def _version_numbers(self) -> list[int]:
        found = storage.glob(self._uri("versions", "v*", "metadata.json"))
        return sorted(int(m.group(1)) for uri in found if (m := _VERSION.search(uri)))

    def _read_aliases_doc(self) -> tuple[dict, str | None]:
        """(the aliases document, its generation) — generation first: content read after it is at
        least as new, so a compare-and-swap on that generation never overwrites an unseen move."""
        uri = self._uri("aliases.json")
        gen = storage.generation(uri)
        if gen is None:
            return {"champion": None, "previous": None, "history": []}, None
        return json.loads(storage.read_text(uri)), gen

    def _resolve(self, version_or_alias: str) -> str:
        if version_or_alias in ALIASES:
            version = self.aliases()[version_or_alias]
            if version is None:
                raise RegistryError(f"alias {version_or_alias!r} is not set in registry {self.root}")
        else:
            version = _normalise_version(version_or_alias)
        if not storage.exists(self._metadata_uri(version)):
            raise RegistryError(f"unknown version {version_or_alias!r} in registry {self.root}")
        return version

    # ------------------------------------------------------------ API (as ml.registry)

    def register(self, model_dir: str, metadata: dict) -> str:
        if not storage.isdir(str(model_dir)):
            raise RegistryError(f"model directory {model_dir} does not exist")
        clash = sorted(set(metadata) & set(RESERVED))
        if clash:
            raise RegistryError(f"metadata keys {clash} are set by the registry")
        model_uri = self._uri("models", uuid.uuid4().hex, "model")
        with storage.local_copy(str(model_dir)) as local:
            storage.put_dir(local, model_uri)
        number = max(self._version_numbers(), default=0) + 1
        for _ in range(MAX_RACES):
            version = _version_id(number)
            record = {"version": version, "created_at": _now(), "metrics": {}, "data_range": {},
                      "schema_hash": None, "parent_version": None, **metadata, "model_uri": model_uri}
            try:
                storage.create_once(self._metadata_uri(version), _json(record))
                return version
            except storage.PreconditionFailed:  # another registrant took this number
                number = max(self._version_numbers(), default=number) + 1
        raise RegistryError(f"could not allocate a version number in {self.root} after {MAX_RACES} races")

    def aliases(self) -> dict:
        doc, _ = self._read_aliases_doc()
        return {name: doc.get(name) for name in ALIASES}

    def history(self) -> list[dict]:
        return list(self._read_aliases_doc()[0].get("history", []))

    def _record(self, version: str, current: dict) -> dict:
        record = json.loads(storage.read_text(self._metadata_uri(version)))
        record["path"] = record["uri"] = record["model_uri"]
        record["aliases"] = [name for name, v in current.items() if v == version]
        return record

    def get(self, version_or_alias: str = "champion") -> dict:
        version = self._resolve(version_or_alias)
        record = self._record(version, self.aliases())
        found = storage.glob(self._uri("versions", version, "attachments", "*.json"))
        record["attachments"] = sorted(storage.name(u).removesuffix(".json") for u in found)
        return record

    def list_versions(self) -> list[dict]:
        current = self.aliases()
        out = []
        for number in self._version_numbers():
            record = self._record(_version_id(number), current)
            record.pop("path"), record.pop("uri")
            out.append(record)
        return out

    def _move_champion(self, action: str, target: str | None, reason: str) -> dict:
        for _ in range(MAX_RACES):
            doc, gen = self._read_aliases_doc()
            current = {name: doc.get(name) for name in ALIASES}
            wanted = target
            if wanted is None:
                wanted = current["previous"]
                if wanted is None:
                    raise RegistryError(f"nothing to roll back to: no previous champion in {self.root}")
            wanted = self._resolve(wanted)
            if wanted == current["champion"]:
                return current  # already there: a retried task must not flip the aliases again
            new = {"champion": wanted, "previous": current["champion"]}
            entry = {"at": _now(), "action": action, "alias": "champion", "from": current["champion"],
                     "to": wanted, "reason": reason}
            try:
                storage.replace_if(self._uri("aliases.json"),
                                   _json({**new, "history": [*doc.get("history", []), entry]}), gen)
                return new
            except storage.PreconditionFailed:  # another move landed in between: decide again
                continue
        raise RegistryError(f"aliases of {self.root} kept changing: gave up after {MAX_RACES} attempts")

    def promote(self, version: str, reason: str = "") -> dict:
        return self._move_champion("promote", version, reason)

    def rollback(self, version: str | None = None, reason: str = "") -> dict:
        return self._move_champion("rollback", version, reason)

    def _attach_bytes(self, version: str, filename: str, data: bytes) -> str:
        uri = self._uri("versions", self._resolve(version), "attachments", filename)
        try:
            storage.create_once(uri, data)
        except storage.PreconditionFailed:
            raise RegistryError(f"attachment {filename!r} already exists for {version}") from None
        return uri

    def attach(self, version: str, name: str, payload: dict) -> str:
        if not _NAME.match(name):
            raise RegistryError(f"invalid attachment name {name!r}")
        return self._attach_bytes(version, f"{name}.json", _json(payload))

    def attach_file(self, version: str, name: str, source_path) -> str:
        if not _NAME.match(name) or name.endswith(".json"):
            raise RegistryError(f"invalid attachment file name {name!r} (JSON payloads go through attach)")
        with storage.open(str(source_path), "rb") as handle:
            return self._attach_bytes(version, name, handle.read())

    def read_attachment(self, version_or_alias: str, name: str) -> dict:
        uri = self._uri("versions", self._resolve(version_or_alias), "attachments", f"{name}.json")
        if not storage.exists(uri):
            raise RegistryError(f"no attachment {name!r} for {version_or_alias}")
        return json.loads(storage.read_text(uri))

    def attachment_uri(self, version_or_alias: str, name: str) -> str:
        uri = self._uri("versions", self._resolve(version_or_alias), "attachments", name)
        if not _NAME.match(name) or not storage.exists(uri):
            raise RegistryError(f"no attachment file {name!r} for {version_or_alias}")
        return uri
