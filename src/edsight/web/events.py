"""``POST /events/canvas``: Canvas live events and Caliper 1.1 events into the event spool.

The endpoint never opens the warehouse (DuckDB allows one writing process, and the
daily run and loads hold it). It authenticates the sender, bounds and checks the
payload, and appends the events edsight uses to the spool under
``EDSIGHT_HOME/spool/events/``, fsync'd before it answers ``202``; ``edsight ingest
events`` loads the spool later (:mod:`edsight.ingest.events`).

Checks, in order (each failure answers before any byte is spooled):

* a shared secret must be configured (``EDSIGHT_EVENTS_SECRET``, at least 32
  characters); without one every request gets ``403`` (deny by default);
* ``Authorization: Bearer <secret>`` or ``X-Edsight-Events-Secret: <secret>``
  (constant-time compare), or ``Authorization: Bearer <JWT>`` signed HS256 with the
  secret, with ``exp`` and ``iat`` and a bounded lifetime; otherwise ``401``;
* ``Content-Type: application/json`` and no content encoding (``415``);
* at most ``max_bytes`` of body, counted while reading (``413``);
* UTF-8 JSON, nesting and string lengths within limits, and the shape of a Canvas
  event, a Caliper envelope, or an array of them (``400`` with a one-line reason).

Nothing from the payload is logged; INFO lines carry counts only.
"""

from __future__ import annotations

import codecs
import hmac
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import jwt
from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.ingest.events import (
    SEGMENT_BYTES,
    EventSpool,
    default_spool_dir,
    is_used,
    json_limits_problem,
    reject_constant,
    split_payload,
    spool_line,
)

log = logging.getLogger(__name__)

PATH = "/events/canvas"
MIN_SECRET_CHARS = 32
SECRET_HEADER = "x-edsight-events-secret"
_MAX_TOKEN_CHARS = 8192
_JWT_LEEWAY_S = 30

NOT_ENABLED = "live events are not enabled on this server"
MISSING_CREDENTIALS = "missing credentials"
BAD_CREDENTIALS = "invalid credentials"
TOKEN_EXPIRED = "token expired"
TOKEN_TOO_LONG_LIVED = "token lifetime too long"
WRONG_CONTENT_TYPE = "expected Content-Type: application/json"
ENCODED_BODY = "compressed or encoded bodies are not accepted"
TOO_LARGE = "body larger than {limit} bytes"
TOO_MANY_EVENTS = "more than {limit} events in one request"
NOT_UTF8 = "body is not UTF-8 text"
NOT_JSON = "body is not valid JSON"
TOO_DEEP = "JSON nested too deeply"
SPOOL_FAILED = "the event spool is not writable; retry later"
INCOMPLETE_BODY = "the connection closed before the body was complete"


class EventsConfig(BaseSettings):
    """Settings of the events endpoint, from ``EDSIGHT_EVENTS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="EDSIGHT_EVENTS_", extra="forbid")

    secret: SecretStr | None = Field(
        default=None,
        description=f"Shared secret (at least {MIN_SECRET_CHARS} characters); unset: refuse every request.",
    )
    max_bytes: int = Field(default=1 << 20, ge=1, description="Largest request body, in bytes.")
    max_depth: int = Field(default=32, ge=2, description="Deepest JSON nesting accepted.")
    max_string: int = Field(default=65_536, ge=16, description="Longest JSON string or key, in characters.")
    max_events: int = Field(default=10_000, ge=1, description="Most events in one request.")
    max_token_lifetime_s: int = Field(default=3600, ge=1, description="Longest JWT lifetime (exp - iat).")
    segment_bytes: int = Field(default=SEGMENT_BYTES, ge=1, description="Spool file size before a new one.")


class EventsAccepted(BaseModel):
    """The answer to an accepted request."""

    accepted: int = Field(description="Events spooled for the next `edsight ingest events`.")
    ignored: int = Field(
        description="Well-formed events edsight does not use (other types, staff activity): not spooled."
    )


def events_router(settings: Settings, config: EventsConfig | None = None) -> APIRouter:
    """The router with ``POST /events/canvas``, spooling under ``settings.home``."""
    cfg = config if config is not None else EventsConfig()
    receiver = _Receiver(cfg, EventSpool(default_spool_dir(settings), segment_bytes=cfg.segment_bytes))
    if receiver.secret is None:
        log.warning(
            "EDSIGHT_EVENTS_SECRET is not set (or shorter than %d characters): POST %s refuses every request",
            MIN_SECRET_CHARS,
            PATH,
        )
    router = APIRouter(tags=["events"])

    @router.post(
        PATH,
        status_code=202,
        response_model=EventsAccepted,
        responses={
            400: {"description": "Not JSON, past a limit, or not a Canvas/Caliper payload"},
            401: {"description": "Missing or wrong credentials"},
            403: {"description": "No secret configured: the endpoint is off"},
            413: {"description": "Body or event count past the limit"},
            415: {"description": "Not application/json"},
            503: {"description": "The spool could not be written; retry"},
        },
    )
    async def receive_events(request: Request) -> EventsAccepted:
        """Accept Canvas live events or Caliper 1.1 envelopes (one, or a JSON array)."""
        receiver.authenticate(request.headers)
        _check_content_type(request.headers)
        body = await _read_body(request, cfg.max_bytes)
        return await run_in_threadpool(receiver.accept, body)

    return router


def create_events_app(settings: Settings, config: EventsConfig | None = None) -> FastAPI:
    """A standalone app serving only the events endpoint (for ``edsight serve``)."""
    app = FastAPI(title="edsight events", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(events_router(settings, config))
    return app


class _Receiver:
    def __init__(self, cfg: EventsConfig, spool: EventSpool) -> None:
        self.cfg = cfg
        self.spool = spool
        secret = cfg.secret.get_secret_value() if cfg.secret is not None else ""
        self.secret: bytes | None = secret.encode() if len(secret) >= MIN_SECRET_CHARS else None

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Raise 403/401 unless the request carries the secret or a valid token."""
        if self.secret is None:
            raise HTTPException(403, NOT_ENABLED)
        token = _credentials(headers)
        if token is None:
            raise _unauthorized(MISSING_CREDENTIALS)
        if len(token) > _MAX_TOKEN_CHARS:
            raise _unauthorized(BAD_CREDENTIALS)
        if hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self.secret):
            return
        if token.count(".") != 2:
            raise _unauthorized(BAD_CREDENTIALS)
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],  # never "none", never a key-confusion algorithm
                options={"require": ["exp", "iat"]},
                leeway=_JWT_LEEWAY_S,
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized(TOKEN_EXPIRED) from None
        except jwt.InvalidTokenError:
            raise _unauthorized(BAD_CREDENTIALS) from None
        if claims["exp"] - claims["iat"] > self.cfg.max_token_lifetime_s:
            raise _unauthorized(TOKEN_TOO_LONG_LIVED)

    def accept(self, body: bytes) -> EventsAccepted:
        """Parse, check and spool one request body (runs in a worker thread)."""
        doc = _parse_json(body, self.cfg)
        try:
            events = split_payload(doc)
        except InvalidInput as exc:
            raise HTTPException(400, str(exc)) from None
        if len(events) > self.cfg.max_events:
            raise HTTPException(413, TOO_MANY_EVENTS.format(limit=self.cfg.max_events))
        received = datetime.now(UTC)
        lines = [spool_line(fmt, event, received) for fmt, event in events if is_used(fmt, event)]
        if lines:
            try:
                self.spool.append(lines)
            except OSError as exc:
                log.error("event spool write failed: %s", exc.strerror or type(exc).__name__)
                raise HTTPException(503, SPOOL_FAILED) from None
        log.info("events: %d accepted, %d ignored", len(lines), len(events) - len(lines))
        return EventsAccepted(accepted=len(lines), ignored=len(events) - len(lines))


def _credentials(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    secret = headers.get(SECRET_HEADER)
    return secret.strip() if secret and secret.strip() else None


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": 'Bearer realm="edsight-events"'})


def _check_content_type(headers: Mapping[str, str]) -> None:
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise HTTPException(415, WRONG_CONTENT_TYPE)
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        raise HTTPException(415, ENCODED_BODY)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (whatever Content-Length says)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, TOO_LARGE.format(limit=limit))
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPException(413, TOO_LARGE.format(limit=limit))
    except ClientDisconnect:
        # Nothing was spooled; the sender retries what it did not see acknowledged.
        log.info("events: sender disconnected before the body was complete")
        raise HTTPException(400, INCOMPLETE_BODY) from None
    return bytes(body)


def _parse_json(body: bytes, cfg: EventsConfig) -> object:
    if body.startswith(codecs.BOM_UTF8):  # RFC 8259 lets a parser ignore it
        body = body[len(codecs.BOM_UTF8) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, NOT_UTF8) from None
    try:
        doc = json.loads(text, parse_constant=reject_constant)
    except RecursionError:
        raise HTTPException(400, TOO_DEEP) from None
    except ValueError:
        raise HTTPException(400, NOT_JSON) from None
    # No string can be longer than the text it came from: skip that check when the body is short.
    problem = json_limits_problem(doc, cfg.max_depth, cfg.max_string if len(text) > cfg.max_string else None)
    if problem:
        raise HTTPException(400, problem)
    return doc


__all__ = ["PATH", "EventsAccepted", "EventsConfig", "create_events_app", "events_router"]
