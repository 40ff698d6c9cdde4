"""Run gcp-storage-emulator with GCS generation preconditions (run with the `.emulators/` venv).

    .emulators/bin/python tests/gcp/gcs_emulator.py start --port 9023 --in-memory -q

The emulator ignores `ifGenerationMatch` and friends, which the bucket registry's compare-and-swap
alias move relies on. This launcher wraps the emulator's handlers before serving, following the
GCS JSON API (https://cloud.google.com/storage/docs/request-preconditions):

- `ifGenerationMatch=g`: the live object's generation must be g; g=0 means "only if no live
  object exists". `ifGenerationNotMatch=g`: it must not be g (0: "only if an object exists").
- `ifMetagenerationMatch` / `ifMetagenerationNotMatch`: same on the metageneration (no object:
  Match fails, NotMatch passes).
- A failed precondition is HTTP 412 (`conditionNotMet`); on reads (object GET / media download)
  a failed *NotMatch* is 304 Not Modified instead. Malformed values are 400.
- Writes (media / multipart / XML upload, copy, rewrite and compose destinations) are checked
  atomically with the write itself, against the object as it is at that moment. A resumable
  upload is checked when it is initiated and again when it is finalized (the session remembers
  its conditions), so a writer that slipped in between still makes it fail.
- Delete and metadata patch are checked before they run; reads check the object they read.

Also fixed here: every write gets a new generation strictly greater than any before (the
emulator uses the wall clock, which can repeat or go back), and a new generation starts at
metageneration 1. The emulator serves one request at a time (http.server.HTTPServer), and a lock
makes check-and-write one step even if that changes.
"""

from __future__ import annotations

import contextvars
import functools
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus

from gcp_storage_emulator import server as gcs_server
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.storage import Storage

QUERY_PARAMS = ("ifGenerationMatch", "ifGenerationNotMatch",
                "ifMetagenerationMatch", "ifMetagenerationNotMatch")
# XML API spelling (PUT /bucket/object).
XML_HEADERS = {"x-goog-if-generation-match": "ifGenerationMatch",
               "x-goog-if-metageneration-match": "ifMetagenerationMatch"}

_conditions: contextvars.ContextVar[dict | None] = contextvars.ContextVar("conditions", default=None)
_resumable_conditions: dict[str, dict] = {}  # upload_id -> conditions given when it was initiated
_lock = threading.RLock()
_last_generation = 0


class PreconditionFailed(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.PRECONDITION_FAILED):
        super().__init__(message)
        self.status = status


class BadPrecondition(Exception):
    pass


def _parse(request) -> dict[str, int]:
    found = {}
    for name in QUERY_PARAMS:
        if name in request.query:
            found[name] = request.query[name][0]
    for header, name in XML_HEADERS.items():
        value = request.get_header(header)
        if value is not None:
            found.setdefault(name, value)
    try:
        return {name: int(value) for name, value in found.items()}
    except ValueError as exc:
        raise BadPrecondition(f"invalid precondition value: {exc}") from None


def check(conditions: dict[str, int] | None, obj: dict | None, *, read: bool = False) -> None:
    """Raise PreconditionFailed unless the live object `obj` (None: none) meets `conditions`."""
    if not conditions:
        return
    generation = int(obj["generation"]) if obj else 0
    metageneration = int(obj["metageneration"]) if obj else None
    not_match = HTTPStatus.NOT_MODIFIED if read else HTTPStatus.PRECONDITION_FAILED
    if "ifGenerationMatch" in conditions and generation != conditions["ifGenerationMatch"]:
        raise PreconditionFailed(f"ifGenerationMatch={conditions['ifGenerationMatch']}, "
                                 f"generation is {generation}")
    if "ifGenerationNotMatch" in conditions and generation == conditions["ifGenerationNotMatch"]:
        raise PreconditionFailed(f"ifGenerationNotMatch={conditions['ifGenerationNotMatch']}", not_match)
    if "ifMetagenerationMatch" in conditions and metageneration != conditions["ifMetagenerationMatch"]:
        raise PreconditionFailed(f"ifMetagenerationMatch={conditions['ifMetagenerationMatch']}, "
                                 f"metageneration is {metageneration}")
    if ("ifMetagenerationNotMatch" in conditions and metageneration is not None
            and metageneration == conditions["ifMetagenerationNotMatch"]):
        raise PreconditionFailed(f"ifMetagenerationNotMatch={conditions['ifMetagenerationNotMatch']}",
                                 not_match)


def _live(storage, bucket, name) -> dict | None:
    try:
        return storage.get_file_obj(bucket, name)
    except NotFound:
        return None


def _next_generation() -> int:
    global _last_generation
    _last_generation = max(time.time_ns(), _last_generation + 1)
    return _last_generation


_original_create_file = Storage.create_file
_original_delete_file = Storage.delete_file


def create_file(self, bucket_name, file_name, content, file_obj, file_id=None):
    """Every write: check the request's conditions against the live object, then a new generation."""
    with _lock:
        if bucket_name in self.buckets:
            check(_conditions.get(), _live(self, bucket_name, file_name))
        generation = _next_generation()
        file_obj["generation"] = str(generation)
        file_obj["metageneration"] = "1"
        file_obj["id"] = f"{bucket_name}/{file_name}/{generation}"
        if isinstance(file_obj.get("mediaLink"), str):
            base = file_obj["mediaLink"].split("?")[0]
            file_obj["mediaLink"] = f"{base}?generation={generation}&alt=media"
        return _original_create_file(self, bucket_name, file_name, content, file_obj, file_id)


def delete_file(self, bucket_name, file_name):
    with _lock:
        if bucket_name in self.buckets:
            obj = _live(self, bucket_name, file_name)
            if obj is not None:  # a missing object stays a 404
                check(_conditions.get(), obj)
        return _original_delete_file(self, bucket_name, file_name)


def _object_name(request) -> str | None:
    if "name" in request.query:
        return request.query["name"][0]
    if request.params and request.params.get("object_id"):
        return request.params["object_id"]
    data = request.data
    if isinstance(data, dict):
        return (data.get("meta") or {}).get("name") or data.get("name")
    return None


def _fail(response, status: HTTPStatus, message: str) -> None:
    response.status = status
    if status is HTTPStatus.NOT_MODIFIED:
        return
    reason = "conditionNotMet" if status is HTTPStatus.PRECONDITION_FAILED else "invalid"
    response.json({"error": {"code": status.value, "message": message,
                             "errors": [{"domain": "global", "reason": reason, "message": message}]}})


def with_preconditions(handler, kind: str):
    """Wrap one emulator handler; kind: write | resumable | delete | patch | read."""

    @functools.wraps(handler)
    def wrapped(request, response, storage, *args, **kwargs):
        with _lock:
            try:
                upload_id = (request.query.get("upload_id") or [None])[0]
                if kind == "resumable" and upload_id:
                    conditions = _resumable_conditions.get(upload_id)
                else:
                    conditions = _parse(request)
                token = _conditions.set(conditions)
                try:
                    bucket = (request.params or {}).get("bucket_name")
                    starting_resumable = (kind == "resumable" and not upload_id
                                          and (request.query.get("uploadType") or [""])[0] == "resumable")
                    if kind in ("patch", "read") or starting_resumable:
                        obj = _live(storage, bucket, _object_name(request))
                        if obj is not None or kind == "resumable":
                            check(conditions, obj, read=kind == "read")
                    result = handler(request, response, storage, *args, **kwargs)
                    if starting_resumable and conditions and "Location" in response._headers:
                        query = urllib.parse.parse_qs(urllib.parse.urlparse(response["Location"]).query)
                        _resumable_conditions[query["upload_id"][0]] = conditions
                    return result
                finally:
                    _conditions.reset(token)
            except PreconditionFailed as exc:
                _fail(response, exc.status, f"Precondition failed: {exc}")
            except BadPrecondition as exc:
                _fail(response, HTTPStatus.BAD_REQUEST, str(exc))

    return wrapped


def install() -> None:
    """Patch the emulator in place (idempotent enough for one process: call once, before serving)."""
    Storage.create_file = create_file
    Storage.delete_file = delete_file
    kinds = {
        objects.insert: "resumable",        # media / multipart / resumable initiation
        objects.upload_partial: "resumable",  # resumable chunks and finalization
        objects.xml_upload: "write",
        objects.copy: "write",
        objects.rewrite: "write",
        objects.compose: "write",
        objects.delete: "delete",
        objects.patch: "patch",
        objects.get: "read",
        objects.download: "read",
    }
    wrapped = {handler: with_preconditions(handler, kind) for handler, kind in kinds.items()}
    gcs_server.HANDLERS = tuple(
        (regex, {method: wrapped.get(h, h) for method, h in handlers.items()})
        for regex, handlers in gcs_server.HANDLERS
    )
    # The router falls back to `objects.insert` for uploads POSTed without the /upload prefix.
    objects.insert = wrapped[objects.insert]


if __name__ == "__main__":
    install()
    main(sys.argv[1:])
