"""The HTTP surface (FastAPI on uvicorn): routes, auth, errors, metrics.

    POST /predict             {"instances": [...]} → {"predictions": [...]}      API key
    GET  /healthz             champion, head, kill switch, prediction log         open
    GET  /metrics             Prometheus text format                              open
    POST /admin/kill-switch   {"on": true|false, "who": ..., "why": ...}         admin key
    POST /admin/reload        follow the registry and the serving table now       admin key

Errors are JSON `{"error": ..., "field": ...}` with a 4xx status: 400 malformed body, 401 no key,
403 wrong key, 413 too large, 422 an instance that breaks the feature contract. Handlers read the
raw body and build the JSON themselves (no per-request model classes: the feature contract
checks instances, `ml.serving.inputs`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ml.serving import auth
from ml.serving.inputs import BadInput
from ml.serving.metrics import CONTENT_TYPE
from ml.serving.service import Service, dumps

log = logging.getLogger("prodml.serving")
ROUTES = {"/predict", "/healthz", "/metrics", "/admin/kill-switch", "/admin/reload"}
AUTH_ERRORS = {401: ("unauthorized", "missing API key: send Authorization: Bearer <key> or X-API-Key"),
               403: ("forbidden", "invalid API key")}


def _json(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _refused(status: int, service: Service, admin: bool = False) -> Response:
    kind, message = AUTH_ERRORS[status]
    service.metrics.errors.labels(kind).inc()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return _json({"error": message.replace("API key", "admin key") if admin else message,
                  "field": "authorization"}, status, headers)


def _bad(exc: BadInput, service: Service) -> Response:
    service.metrics.errors.labels("bad_input").inc()
    return _json(exc.payload(), exc.status)


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadInput("body", "invalid Content-Length", 400)
        if int(declared) > limit:
            raise BadInput("body", f"request body of {declared} bytes; at most {limit}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadInput("body", f"request body over {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


class _Observe:
    """ASGI middleware: count and time every request by route and status (no headers touched)."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = {"code": 500}

        async def observed_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            metrics = self.service.metrics
            metrics.requests.labels(route, str(status["code"])).inc()
            metrics.request_seconds.labels(route).observe(time.perf_counter() - started)


def create_app(service: Service) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="prodml serving", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        refused = auth.check(request.headers, service.api_keys)
        if refused:
            return _refused(refused, service)
        try:
            body = await _body(request, service.settings.max_body_bytes)
            payload = await service.predict(body)
        except BadInput as exc:
            return _bad(exc, service)
        except Exception:  # a bug, not bad input: a 500 with an id to find the traceback by
            error_id = uuid.uuid4().hex[:12]
            service.metrics.errors.labels("internal").inc()
            log.exception("serving: internal error %s", error_id)
            return _json({"error": f"internal error {error_id}"}, 500)
        headers = {"X-Prodml-Kill-Switch": "on"} if "kill_switch" in payload else None
        return _json(payload, headers=headers)

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json(service.health())

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/admin/kill-switch")
    async def kill_switch(request: Request) -> Response:
        refused = auth.check(request.headers, service.admin_keys)
        if refused:
            return _refused(refused, service, admin=True)
        try:
            raw = await _body(request, 16_384)
            command = _admin_command(raw)
        except BadInput as exc:
            return _bad(exc, service)
        try:
            state = await service.set_kill_switch(command["on"], command["who"], command["why"])
        except Exception as exc:
            service.metrics.errors.labels("kill_switch").inc()
            log.error("serving: kill switch not stored: %s", exc)
            return _json({"error": f"kill switch not stored: {type(exc).__name__}"}, 503)
        return _json(state)

    @app.post("/admin/reload")
    async def reload(request: Request) -> Response:
        refused = auth.check(request.headers, service.admin_keys)
        if refused:
            return _refused(refused, service, admin=True)
        return _json(await service.refresh())

    app.add_middleware(_Observe, service=service)
    return app


def _admin_command(raw: bytes) -> dict:
    try:
        command = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput("body", f"malformed JSON: {exc}", 400) from None
    if not isinstance(command, dict):
        raise BadInput("body", 'expected {"on": true|false, "who": ..., "why": ...}', 400)
    if not isinstance(command.get("on"), bool):
        raise BadInput("on", "must be true or false")
    for name in ("who", "why"):
        if not isinstance(command.get(name), str) or not command[name].strip():
            raise BadInput(name, "a non-empty string is required")
    return command
