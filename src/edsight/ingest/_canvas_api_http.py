"""HTTP to a Canvas instance: bearer auth, Link pagination, retries, throttling, clear errors.

Private to :mod:`edsight.ingest.canvas_api`. The token goes only into the
``Authorization`` header of requests to the configured origin; it is never logged and
never part of an error. Paths in messages and logs mask user ids, which identify
students (``/users/:id``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from edsight.errors import InvalidInput, SourceError

log = logging.getLogger("edsight.ingest.canvas_api")

_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_REL = re.compile(r"""rel\s*=\s*"?([^";,]*)"?""", re.IGNORECASE)
_USER_PATH = re.compile(r"/(users|students)/\d+")
_RATE_LIMITED = b"rate limit exceeded"


@dataclass(frozen=True)
class HttpPolicy:
    """How hard to try: attempts, backoff, timeouts and the size limit of one answer."""

    attempts: int = 6  # per request, for 5xx, dropped connections and unreadable answers
    throttle_attempts: int = 12  # per request, for Canvas's 403 "Rate Limit Exceeded"
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    timeout_s: float = 60.0
    max_page_bytes: int = 64 * 1024 * 1024


@dataclass
class HttpStats:
    """What the client did, for results and benchmarks."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Page:
    """One answer: its parsed JSON and the URL of the next page, if any."""

    body: Any
    next_url: str | None


class NotFound(SourceError):
    """Canvas answered 404 for a resource."""


class NotPermitted(SourceError):
    """The token is valid but its user may not read this (401 without WWW-Authenticate, or 403)."""


class _Retry(Exception):
    """An answer worth asking again for (5xx, connection trouble, unreadable JSON)."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


class _Throttled(_Retry):
    """Canvas said 403 Rate Limit Exceeded."""


class _RedactUrls(logging.Filter):
    """httpx logs each request's URL at INFO; keep student ids in paths and queries out of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(describe(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _redact_httpx_logs() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactUrls) for f in logger.filters):
        logger.addFilter(_RedactUrls())


def describe(url: str) -> str:
    """The path of ``url`` for messages: no query, no host, user ids masked."""
    return _USER_PATH.sub(r"/\1/:id", urlsplit(url).path or "/")


def parse_links(header: str | None) -> dict[str, str]:
    """``rel -> url`` from a Link header; rel names lower-cased, URLs kept as given."""
    links: dict[str, str] = {}
    for match in _LINK.finditer(header or ""):
        rel = _REL.search(match.group(2))
        if rel:
            for name in rel.group(1).lower().split():
                links.setdefault(name, match.group(1).strip())
    return links


def normalize_base_url(base_url: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing slash or ``/api/v1``."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"{base_url!r} is not a Canvas base URL (expected https://canvas.example.edu)")
    path = re.sub(r"/api/v1/?$", "", parts.path.rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}{path}"


def check_token(token: str) -> None:
    """Refuse an empty or malformed token (without repeating it)."""
    # Say what is wrong without ever repeating the token.
    if not token or not token.strip():
        raise InvalidInput("the Canvas API token is empty")
    if any(c in token for c in "\r\n\t ") or not token.isprintable():
        raise InvalidInput("the Canvas API token contains whitespace or control characters")


def _canvas_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message", ""))[:200]
        if isinstance(data.get("message"), str):
            return str(data["message"])[:200]
    return ""


def _retry_after(headers: httpx.Headers) -> float | None:
    raw = headers.get("retry-after", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


class CanvasHttp:
    """An async Canvas client with bounded concurrency; use as ``async with``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        policy: HttpPolicy,
        concurrency: int,
        rng: random.Random | None = None,
    ) -> None:
        check_token(token)
        _redact_httpx_logs()
        if concurrency < 1:
            raise InvalidInput(f"concurrency must be at least 1, got {concurrency}")
        self.base_url = normalize_base_url(base_url)
        self._origin = urlsplit(self.base_url)[:2]
        self.policy = policy
        self.stats = HttpStats()
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(concurrency)
        self._resume_at = 0.0
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(policy.timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=False,
        )

    async def __aenter__(self) -> CanvasHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    def url(self, path_or_url: str) -> str:
        """An absolute URL on the configured origin (pagination links are opaque but checked)."""
        url = urljoin(self.base_url + "/", path_or_url)
        if urlsplit(url)[:2] != self._origin:
            # Following it would hand the token to another host.
            raise SourceError(
                f"Canvas sent a link to another host ({urlsplit(url).netloc}); not following it"
            )
        return url

    async def get(self, path_or_url: str, params: list[tuple[str, str]] | None = None) -> Page:
        """GET one page, retrying what is worth retrying; raise SourceError otherwise."""
        url = self.url(path_or_url)
        where = describe(url)
        failures = throttles = 0
        while True:
            await self._wait_for_throttle()
            try:
                return await self._once(url, params, where)
            except _Throttled as exc:
                throttles += 1
                self.stats.throttled += 1
                if throttles >= self.policy.throttle_attempts:
                    raise SourceError(
                        f"Canvas kept throttling GET {where} (403 Rate Limit Exceeded {throttles} times); "
                        "try a lower concurrency"
                    ) from None
                delay = self._delay(throttles - 1, exc.retry_after)
                # Every request waits, not just this one: the quota belongs to the token.
                loop = asyncio.get_running_loop()
                self._resume_at = max(self._resume_at, loop.time() + delay)
                log.info("Canvas throttled GET %s; pausing %.2fs", where, delay)
            except _Retry as exc:
                failures += 1
                if failures >= self.policy.attempts:
                    raise SourceError(
                        f"Canvas kept failing on GET {where}: {exc.problem} "
                        f"(gave up after {failures} attempts)"
                    ) from None
                delay = self._delay(failures - 1, exc.retry_after)
                log.warning(
                    "GET %s: %s; retrying in %.2fs (attempt %d of %d)",
                    where,
                    exc.problem,
                    delay,
                    failures + 1,
                    self.policy.attempts,
                )
                self.stats.retries += 1
                await asyncio.sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter, or the server's Retry-After when it sent one."""
        if retry_after is not None:
            return min(retry_after, self.policy.max_delay_s)
        ceiling = min(self.policy.max_delay_s, self.policy.base_delay_s * 2**attempt)
        return ceiling * (0.5 + self._rng.random() / 2)

    async def _wait_for_throttle(self) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._resume_at - loop.time()) > 0:
            await asyncio.sleep(wait)

    async def _once(self, url: str, params: list[tuple[str, str]] | None, where: str) -> Page:
        limit = self.policy.max_page_bytes
        async with self._slots:
            self.stats.requests += 1
            log.debug("GET %s %s", url, params or "")
            try:
                query = httpx.QueryParams(tuple(params)) if params else None
                async with self._client.stream("GET", url, params=query) as response:
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise SourceError(f"GET {where}: the answer is larger than {limit:,} bytes")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise SourceError(f"GET {where}: the answer is larger than {limit:,} bytes")
            except httpx.TimeoutException as exc:
                raise _Retry(f"timed out ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise _Retry(f"connection failed ({type(exc).__name__})") from None
        self.stats.bytes += len(body)
        return self._interpret(response, bytes(body), where)

    def _interpret(self, response: httpx.Response, body: bytes, where: str) -> Page:
        status = response.status_code
        if 200 <= status < 300:
            try:
                data = json.loads(body)
            except RecursionError:
                raise SourceError(
                    f"GET {where}: the JSON answer is nested too deeply to be Canvas data"
                ) from None
            except ValueError:
                # Often a proxy's error page or a body cut short; worth asking again.
                raise _Retry("the answer is not valid JSON") from None
            next_url = parse_links(response.headers.get("link")).get("next")
            return Page(data, self.url(next_url) if next_url else None)
        if status == 401:
            if "www-authenticate" in response.headers:
                why = "it has expired or been revoked (WWW-Authenticate present); issue a new token"
            else:
                why = (
                    "the token's user may not read this (no WWW-Authenticate); use a token of a teacher "
                    "or administrator of the course"
                )
            error = SourceError if "www-authenticate" in response.headers else NotPermitted
            raise error(f"Canvas rejected the token on GET {where} (401): {why}")
        if status in (403, 429) and (status == 429 or _RATE_LIMITED in body.lower()):
            raise _Throttled(f"throttled ({status})", _retry_after(response.headers))
        if status == 403:
            raise NotPermitted(
                f"Canvas refused GET {where} (403 Forbidden): the token's user lacks permission"
            )
        if status == 404:
            hint = " - is the Analytics API enabled on this Canvas?" if "/analytics/" in where else ""
            raise NotFound(f"Canvas has no {where} (404 Not Found){hint}")
        if status >= 500 or status == 408:
            raise _Retry(f"Canvas answered {status}", _retry_after(response.headers))
        message = _canvas_message(body)
        raise SourceError(f"Canvas answered {status} to GET {where}" + (f": {message}" if message else ""))
