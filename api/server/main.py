"""The FastAPI application, built by `create_app()` (nothing is created at import time).

uvicorn --factory api.server.main:create_app          # or: shiftsweep serve
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from api import API_PREFIX
from api.server.docs import mount_docs
from api.server.errors import ApiError
from api.server.file_cache import FileCache
from api.server.jobs import JobBackend, RayJobBackend
from api.server.local_guard import local_only
from api.server.paths import UnsafePathError
from api.server.registry import RegistryUnavailableError, SweepRepository, open_registry
from api.server.routers import catalog, health, report, results, sweeps, trials
from api.server.schemas import PresetSubmission
from api.server.service import SweepService
from api.server.settings import Settings, get_settings
from api.server.sweep_files import SweepFiles
from orchestrator import SweepSpec, field_path

log = logging.getLogger(__name__)


class ErrorJSONResponse(JSONResponse):
    """Errors quote what the client sent, which may be text UTF-8 cannot encode (a lone surrogate): written as
    ASCII JSON, any string is sent as a valid escape instead of failing the response."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return ErrorJSONResponse({"detail": jsonable_encoder(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": field_path(e.get("loc", ())) or "request", "message": str(e.get("msg", ""))} for e in exc.errors()
    ]
    return ErrorJSONResponse({"detail": problems}, status_code=422)


async def _unsafe_path(_: Request, exc: Exception) -> JSONResponse:
    return ErrorJSONResponse({"detail": str(exc)}, status_code=400)


async def _registry_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """A registry server that is down is the operator's to fix, and the request may be retried: 503, not 500."""
    log.error("%s", exc)
    return ErrorJSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the service's log"}, status_code=500)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, plus the two submission shapes POST /sweeps accepts (its body is parsed by hand so
    that every problem is reported with the spec's own field names)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (SweepSpec, PresetSubmission):
        js = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
        components.update(js.pop("$defs", {}))
        components[model.__name__] = js
    app.openapi_schema = schema
    return schema


def _reconcile_at_start(service: SweepService) -> None:
    try:
        n = service.reconcile_active()
        if n:
            log.info("reconciled %d sweeps that had not ended", n)
    except Exception:  # the service must start whatever the registry or the cluster do
        log.exception("reconciling the active sweeps at start-up failed")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up settles what a previous process left active, in the background: a hung cluster delays no request."""
    threading.Thread(target=_reconcile_at_start, args=(app.state.service,), daemon=True, name="reconcile").start()
    yield


def create_app(
    settings: Settings | None = None,
    *,
    backend: JobBackend | None = None,
    repository: SweepRepository | None = None,
) -> FastAPI:
    """The service over `settings` (default: from the environment), a job backend and a sweep registry."""
    settings = settings or get_settings()
    settings.storage.mkdir(parents=True, exist_ok=True)
    backend = backend or RayJobBackend(
        settings.ray_address, dashboard_url=settings.dashboard_url, timeout_s=settings.ray_timeout_s
    )
    repository = repository or open_registry(settings.registry)
    files = SweepFiles(settings.storage, FileCache())

    app = FastAPI(
        title="shiftsweep",
        version="0.1.0",
        description="Fine-tuning method comparisons across pretrained vision models and distribution shifts, "
        "run as Ray Jobs. Mutating endpoints need `Authorization: Bearer <token>` when the service has one.",
        docs_url=None,  # mount_docs serves it with local files; FastAPI's own pages load them from a CDN
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
        lifespan=_lifespan,
    )
    mount_docs(app, openapi_url=f"{API_PREFIX}/openapi.json", title="shiftsweep API")
    app.state.settings = settings
    app.state.service = SweepService(settings, repository, backend, files)
    for router in (sweeps.router, trials.router, results.router, report.router, catalog.router, health.router):
        app.include_router(router, prefix=API_PREFIX)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UnsafePathError, _unsafe_path)
    app.add_exception_handler(RegistryUnavailableError, _registry_unavailable)
    app.add_exception_handler(Exception, _unexpected)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    if settings.api_token is None:
        app.middleware("http")(local_only(settings.allowed_hosts))
    return app
