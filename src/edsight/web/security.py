"""Sessions, CSRF and security headers of the web layer.

* The session is the governance store's token in an ``HttpOnly; SameSite=Strict`` cookie
  (``Secure`` unless the request came to a loopback host over plain HTTP); API clients may
  send the same token as ``Authorization: Bearer``.
* CSRF: every POST form carries the value of a per-browser ``edsight_csrf`` cookie in a
  hidden field (double-submit), compared in constant time; with ``SameSite=Strict`` on both
  cookies a cross-site form cannot send either.
* Every response gets a Content-Security-Policy naming no external host, ``nosniff``,
  ``frame-ancestors 'none'``, no referrer, and ``no-store`` on everything but static files.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from edsight.errors import NotAuthorized
from edsight.governance.identity import GovernanceStore, Principal

SESSION_COOKIE = "edsight_session"
CSRF_COOKIE = "edsight_csrf"
CSRF_FIELD = "csrf_token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]", "testserver"})
LOGIN_REQUIRED = "login required"
BAD_CSRF = "the form expired or came from another site; reload the page and try again"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class LoginRequired(NotAuthorized):
    """No valid session: pages redirect to the login form, the API answers 401."""


def secure_cookies(request: Request) -> bool:
    """Cookies are ``Secure`` except over plain HTTP to a loopback address."""
    return request.url.scheme == "https" or (request.url.hostname or "") not in LOOPBACK_HOSTS


def session_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None


async def current_principal(request: Request, store: GovernanceStore) -> tuple[Principal, str]:
    """The principal of the request's session, or :class:`LoginRequired`."""
    token = session_token(request)
    if not token or len(token) > 512:
        raise LoginRequired(LOGIN_REQUIRED)
    try:
        principal = await run_in_threadpool(store.principal, token)
    except NotAuthorized as exc:
        raise LoginRequired(str(exc)) from None
    return principal, token


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=secure_cookies(request), path="/"
    )


def csrf_value(request: Request) -> str:
    """The browser's CSRF value (a fresh one when it has none; the middleware sets the cookie)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 128:
        return existing
    fresh: str = request.scope.setdefault("edsight.csrf_new", secrets.token_urlsafe(24))
    return fresh


def check_csrf(request: Request, submitted: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise NotAuthorized(BAD_CSRF)


async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Middleware: security headers, no-store, and the CSRF cookie when a page minted one."""
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.url.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    fresh = request.scope.get("edsight.csrf_new")
    if fresh:
        response.set_cookie(
            CSRF_COOKIE, fresh, httponly=True, samesite="strict", secure=secure_cookies(request), path="/"
        )
    return response


__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "SESSION_COOKIE",
    "LoginRequired",
    "check_csrf",
    "clear_session_cookie",
    "csrf_value",
    "current_principal",
    "security_headers",
    "session_token",
    "set_session_cookie",
]
