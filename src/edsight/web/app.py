"""The edsight web application: dashboard pages, ``/api/v1``, static files, live events.

``create_app(settings)`` builds one FastAPI app. Every route depends on the logged-in
viewer except ``/login``, ``/static``, ``/health`` and ``POST /events/canvas`` (which
authenticates its sender itself). Errors never carry a stack trace: edsight's own errors
map to 4xx with their one-line message, anything else to a 500 with an error id that the
server log shares.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from edsight import __version__
from edsight.config import Settings
from edsight.errors import InvalidInput, NotAuthorized
from edsight.governance.identity import GovernanceStore
from edsight.ops.schedule import parse_time, start_scheduler
from edsight.web.actions import DashboardActions
from edsight.web.analytics import start_statistics
from edsight.web.context import STATIC_DIR, WebContext, make_templates
from edsight.web.events import EventsConfig, events_router
from edsight.web.queries import DashboardQueries, NotFound, WarehouseReader
from edsight.web.security import LoginRequired, security_headers

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
_REASONS = {
    400: "Bad request",
    401: "Login required",
    403: "Forbidden",
    404: "Not found",
    422: "Invalid input",
}


def create_app(
    settings: Settings,
    *,
    store: GovernanceStore | None = None,
    caching: bool = True,
    events_config: EventsConfig | None = None,
    schedule: str | None = None,
    schedule_timezone: str = "UTC",
    warm_statistics: bool = True,
) -> FastAPI:
    """The whole web app over the warehouse and governance store of ``settings.home``.

    While the app runs (its lifespan): the school statistics (gaps, value-added) are computed
    in a background thread from startup (``warm_statistics``), and with ``schedule="HH:MM"``
    the daily run is scheduled in this process (weekdays, ``schedule_timezone``), sharing the
    web's DuckDB instance; the scheduler stops when the app shuts down. ``caching=False``
    recomputes scopes and aggregates per request (the load test's baseline).
    """
    if schedule is not None:
        parse_time(schedule)  # a bad time fails here, not at startup of the server
    store = store if store is not None else GovernanceStore(settings)
    reader = WarehouseReader(settings)
    queries = DashboardQueries(reader, store, caching=caching)
    ctx = WebContext(
        settings=settings,
        store=store,
        queries=queries,
        templates=make_templates(),
        actions=DashboardActions(queries),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm_statistics:
            start_statistics(queries)
        scheduler = None
        if schedule is not None:
            scheduler = start_scheduler(settings, at=schedule, timezone=schedule_timezone)
            log.info("daily run scheduled at %s %s (weekdays) in this process", schedule, schedule_timezone)
        app.state.scheduler = scheduler
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            reader.close()

    app = FastAPI(
        title="edsight API",
        version=__version__,
        description="Scoped, audited access to edsight's early-warning data. Authenticate with "
        "POST /api/v1/session and send the token as `Authorization: Bearer <token>`.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI loads assets from a CDN; the schema is served as JSON
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.edsight = ctx
    app.middleware("http")(security_headers)
    _add_error_handlers(app)

    from edsight.web.routes import api, auth, pages

    app.include_router(auth.router)
    app.include_router(pages.router)
    app.include_router(api.router, prefix=API_PREFIX)
    app.include_router(events_router(settings, events_config))
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX) or request.url.path.startswith("/events/")


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if _wants_json(request):
        return JSONResponse(
            {"error": {"status": status, "message": message}}, status_code=status, headers=headers
        )
    ctx: WebContext = request.app.state.edsight
    return ctx.templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "title": _REASONS.get(status, "Error"), "message": message, "viewer": None},
        status_code=status,
        headers=headers,
    )


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if _wants_json(request):
            return _error(request, 401, str(exc), {"WWW-Authenticate": 'Bearer realm="edsight"'})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={_safe_next(target)}", status_code=303)

    @app.exception_handler(NotAuthorized)
    async def forbidden(request: Request, exc: NotAuthorized) -> Response:
        return _error(request, 403, str(exc))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(InvalidInput)
    async def invalid(request: Request, exc: InvalidInput) -> Response:
        return _error(request, 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(request, 422, "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers: Any = getattr(exc, "headers", None)
        return _error(request, exc.status_code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        error_id = secrets.token_hex(6)
        log.error("unhandled error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
        message = f"internal error (id {error_id}); the server log has the details"
        if _wants_json(request):
            return JSONResponse({"error": {"status": 500, "message": message}}, status_code=500)
        return HTMLResponse(f"<!doctype html><title>Error</title><p>{message}</p>", status_code=500)


def _safe_next(target: str) -> str:
    """Only same-site relative paths survive as a post-login redirect."""
    from urllib.parse import quote

    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return quote(target, safe="/?=&")


__all__ = ["API_PREFIX", "create_app"]
