"""The ASGI app: FastAPI routes for both protocols, the page, /metrics, limits and error shape.

    create_app(runner, ...)        an app around a loaded Runner (tests, Python users)
    build_app(settings)            load the model named by ServeSettings, then create_app
    app_from_environment()         uvicorn's factory for `--workers N` (settings in $POLYHEAD_SERVE)
"""

from __future__ import annotations

import os
import re
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from polyhead import __version__
from polyhead.errors import PolyheadError
from polyhead.plugins import load_plugins
from polyhead.serving import kserve, page, tfserving
from polyhead.serving.limits import BodyLimit, Limits, RequestError
from polyhead.serving.metrics import MetricsMiddleware
from polyhead.serving.runner import Runner, load_runner
from polyhead.serving.service import ModelService
from polyhead.serving.settings import ENVIRONMENT, ServeSettings

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def create_app(runner: Runner, *, name: str | None = None, limits: Limits | None = None, max_batch: int = 32,
               max_wait_ms: float = 5.0) -> FastAPI:
    name = name or runner.name
    if not _NAME.match(name):
        raise PolyheadError(f"--name {name!r}: use letters, digits, '_', '.' and '-' only (it is part of URLs)")
    service = ModelService(runner, name, limits or Limits(), max_batch=max_batch, max_wait_ms=max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await service.batcher.stop()

    # no /docs or /redoc: their pages load scripts from a CDN; /openapi.json is the schema
    app = FastAPI(title=f"polyhead · {name}", version=__version__, docs_url=None, redoc_url=None,
                  lifespan=lifespan, description="KServe v2 (Open Inference Protocol) and TF-Serving-style REST "
                                                 "for one polyhead model; a web page at /.")
    app.state.service = service
    app.include_router(page.router(service))
    app.include_router(kserve.router(service))
    app.include_router(tfserving.router(service))

    @app.get("/metrics", tags=["metrics"])
    def metrics() -> Response:
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    _error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=service.limits.max_bytes)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)  # outermost: sees every status
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every error is {"error": message}, the shape both protocols' clients read."""

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=400)


def build_app(settings: ServeSettings) -> FastAPI:
    load_plugins(settings.plugins)
    runner = load_runner(settings.path, settings.backend, settings.device)
    return create_app(runner, name=settings.name, limits=settings.limits, max_batch=settings.max_batch,
                      max_wait_ms=settings.max_wait_ms)


def app_from_environment() -> FastAPI:
    """uvicorn's app factory in each worker process (`polyhead serve --workers N`)."""
    if ENVIRONMENT not in os.environ:
        raise PolyheadError(f"${ENVIRONMENT} is not set: start the server with `polyhead serve`")
    return build_app(ServeSettings.from_json(os.environ[ENVIRONMENT]))
