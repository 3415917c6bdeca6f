"""The gate in front of the Canvas emulator's routes: request log, faults, auth, throttling.

Private to :mod:`edsight.testing.canvas_emulator`. Every request is counted and
logged; injected faults come first (as a proxy or load balancer would fail), then
bearer-token auth, then the token's leaky bucket; only then does a route answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from edsight.testing.canvas_emulator import CanvasEmulator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RATE_LIMITED_BODY = b"403 Forbidden (Rate Limit Exceeded)\n"
INVALID_TOKEN = {"errors": [{"message": "Invalid access token."}]}
NOT_PERMITTED = {
    "status": "unauthorized",
    "errors": [{"message": "user not authorized to perform that action"}],
}


@dataclass(frozen=True)
class LoggedRequest:
    """One request the emulator answered (the token is never kept)."""

    number: int
    path: str
    query: str
    status: int
    fault: str | None = None  # "error", "drop", "throttled", "body" or None


@dataclass
class Bucket:
    """One token's leaky bucket."""

    level: float = 0.0
    at: float = 0.0


@dataclass
class GateState:
    """Counters shared by the requests of one emulator (guarded by a lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    count: int = 0
    rng: random.Random = field(default_factory=random.Random)
    buckets: dict[str, Bucket] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)  # transient faults already injected


def _token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            return text[7:].strip() if text.lower().startswith("bearer ") else None
    for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if k == "access_token":
            return v
    return None


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return str(value.decode("latin-1"))
    server = scope.get("server") or ("127.0.0.1", 80)
    return f"{server[0]}:{server[1]}"


async def _send_simple(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Gate:
    """ASGI middleware in front of the routes; see the module docstring."""

    def __init__(self, emulator: CanvasEmulator, app: ASGIApp) -> None:
        self.emulator = emulator
        self.app = app
        self.state = GateState()

    def reset(self, seed: int) -> None:
        with self.state.lock:
            self.state.count = 0
            self.state.rng = random.Random(seed)
            self.state.buckets.clear()
            self.state.fired.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        emu = self.emulator
        faults = emu.faults
        path = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        with self.state.lock:
            self.state.count += 1
            number = self.state.count
            error_draw = self.state.rng.random() if faults.error_rate else 1.0
            drop_draw = self.state.rng.random() if faults.drop_rate else 1.0
            slow_draw = self.state.rng.random() if faults.slow_rate else 1.0
            transient = None
            for pattern, kind in faults.transient.items():
                if pattern not in self.state.fired and re.search(pattern, f"{path}?{query}"):
                    self.state.fired.add(pattern)
                    transient = kind
                    break

        def log(status: int, fault: str | None = None) -> None:
            emu.log.append(LoggedRequest(number, path, query, status, fault))

        delay = faults.delay_s + (faults.slow_s if slow_draw < faults.slow_rate else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if (
            transient == "error"
            or number in faults.error_on
            or error_draw < faults.error_rate
            or any(re.search(p, path) for p in faults.error_paths)
        ):
            body = json.dumps({"errors": [{"message": "An error occurred."}]}).encode()
            await _send_simple(send, faults.error_status, body, [(b"content-type", b"application/json")])
            log(faults.error_status, "error")
            return

        token = _token(scope)
        inside = re.match(r"/api/v1/courses/(\d+)/", path)
        if token in emu.tokens and inside and int(inside.group(1)) in emu.unreadable_courses:
            await _send_simple(
                send, 401, json.dumps(NOT_PERMITTED).encode(), [(b"content-type", b"application/json")]
            )
            log(401)
            return
        if token is None or token not in emu.tokens:
            auth = (
                []
                if token in emu.unauthorized_tokens
                else [(b"www-authenticate", b'Bearer realm="canvas-lms"')]
            )
            payload = NOT_PERMITTED if token in emu.unauthorized_tokens else INVALID_TOKEN
            await _send_simple(
                send, 401, json.dumps(payload).encode(), [(b"content-type", b"application/json"), *auth]
            )
            log(401)
            return

        throttle = emu.throttle
        extra: list[tuple[bytes, bytes]] = []
        if throttle is not None:
            now = emu.clock()
            with self.state.lock:
                bucket = self.state.buckets.setdefault(token, Bucket(0.0, now))
                bucket.level = max(0.0, bucket.level - (now - bucket.at) * throttle.leak_per_s)
                bucket.at = now
                refused = bucket.level + throttle.up_front > throttle.capacity
                if not refused:
                    bucket.level += throttle.up_front
                remaining = throttle.capacity - bucket.level
            extra = [
                (b"x-request-cost", f"{throttle.cost:.4f}".encode()),
                (b"x-rate-limit-remaining", f"{remaining:.4f}".encode()),
            ]
            if refused:
                await _send_simple(send, 403, RATE_LIMITED_BODY, [(b"content-type", b"text/plain"), *extra])
                log(403, "throttled")
                return

        for pattern, body in faults.bodies.items():
            if re.search(pattern, path):
                self._settle(token)
                await _send_simple(send, 200, body, [(b"content-type", b"application/json"), *extra])
                log(200, "body")
                return

        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        self._settle(token)
        body = b"".join(chunks)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        if any(re.search(p, path) for p in faults.loop_paths):
            here = f"http://{_host(scope)}{path}" + (f"?{query}" if query else "")
            headers = [(k, v) for k, v in headers if k.lower() != b"link"]
            headers.append((b"link", f'<{here}>; rel="next"'.encode()))
        headers += [(b"content-length", str(len(body)).encode()), *extra]
        status = int(start.get("status", 500))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if transient == "drop" or number in faults.drop_on or drop_draw < faults.drop_rate:
            # Half the promised body, then the connection closes under the client.
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            log(status, "drop")
            return
        await send({"type": "http.response.body", "body": body})
        log(status)

    def _settle(self, token: str) -> None:
        """Refund the up-front charge and charge the request's cost."""
        throttle = self.emulator.throttle
        if throttle is None:
            return
        with self.state.lock:
            bucket = self.state.buckets[token]
            bucket.level = max(0.0, bucket.level - throttle.up_front) + throttle.cost
