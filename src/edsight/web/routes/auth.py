"""Login and logout pages (the API's token login lives in :mod:`edsight.web.routes.api`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from edsight.errors import NotAuthorized
from edsight.web.context import context
from edsight.web.security import (
    CSRF_FIELD,
    check_csrf,
    clear_session_cookie,
    session_token,
    set_session_cookie,
)

router = APIRouter(include_in_schema=False)


def _next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def client_id(request: Request) -> str:
    """What login rate limits count per client: the peer address."""
    return request.client.host if request.client else "unknown"


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    ctx = context(request)
    return ctx.templates.TemplateResponse(
        request, "login.html", {"viewer": None, "next": _next(next), "error": None, "username": ""}
    )


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=128)],
    password: Annotated[str, Form(max_length=1024)],
    totp: Annotated[str, Form(max_length=12)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = "",
) -> Response:
    ctx = context(request)
    check_csrf(request, csrf_token)
    try:
        token = await run_in_threadpool(
            ctx.store.login, username, password, totp=totp.strip() or None, client=client_id(request)
        )
    except NotAuthorized as exc:
        return ctx.templates.TemplateResponse(
            request,
            "login.html",
            {"viewer": None, "next": _next(next), "error": str(exc), "username": username},
            status_code=401,
        )
    response = RedirectResponse(_next(next), status_code=303)
    set_session_cookie(response, request, token, ctx.settings.session_absolute_timeout_s)
    return response


@router.post("/logout")
async def logout(
    request: Request, csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = ""
) -> Response:
    ctx = context(request)
    check_csrf(request, csrf_token)
    token = session_token(request)
    if token:
        await run_in_threadpool(ctx.store.logout, token)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request)
    return response
