"""A Canvas LMS REST API emulator backed by a synthetic semester, served over loopback.

It answers the endpoints a Canvas connector reads, with Canvas's JSON field names
(docs: STANDARDS.md section 1): courses (``/api/v1/courses``, account courses, one
course), sections, users (``users`` and ``search_users``), enrollments (with
``grades``), assignments, bulk submissions (``students/submissions`` with
``student_ids[]``, ``assignment_ids[]``, ``submitted_since``, ``graded_since``), and
the Analytics API (student summaries and per-student hourly activity). Like Canvas it

* pages every list with ``per_page`` (default 10, at most 100) and a ``Link`` header
  (``current``, ``next``, ``prev``, ``first``, ``last``);
* wants ``Authorization: Bearer <token>``: an unknown or expired token gets 401 with
  ``WWW-Authenticate``; a token of a user without permission gets 401 without it;
* throttles each token with a leaky bucket (:class:`Throttle`): every response says
  ``X-Request-Cost`` and ``X-Rate-Limit-Remaining``, and a request that would overflow
  the bucket gets ``403`` with the body ``Rate Limit Exceeded``;
* fails on purpose when told to (:class:`Faults`): 5xx on given request numbers or
  with a seeded probability, slow answers, a connection dropped half-way through the
  body, hostile bodies for chosen paths.

Ids: Canvas user id = seed ``student_id`` + :data:`USER_ID_OFFSET`; seed ids are the SIS
ids (``sis_user_id``, ``sis_course_id``, ``sis_assignment_id``). Each week's page views
of a student are spread over a few hours of that week, deterministically for a seed.

    with CanvasEmulator.from_synth(150, seed=0, tokens={"secret"}).serve() as base_url:
        ...  # point a client at base_url

``python -m edsight.testing.canvas_emulator --students 500`` serves one from the command
line (the benchmark does this, so that client and server do not share a process).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import uvicorn

from edsight.synth.canvas import generate_canvas
from edsight.testing._canvas_emulator_app import build_app
from edsight.testing._canvas_emulator_data import (
    ACCOUNT_ID,
    ASSIGNMENT_ID_BASE,
    COURSE_ID_BASE,
    SECTION_ID_BASE,
    USER_ID_OFFSET,
    CanvasData,
)
from edsight.testing._canvas_emulator_gate import Gate, LoggedRequest

__all__ = [
    "ACCOUNT_ID",
    "ASSIGNMENT_ID_BASE",
    "COURSE_ID_BASE",
    "SECTION_ID_BASE",
    "USER_ID_OFFSET",
    "CanvasData",
    "CanvasEmulator",
    "Faults",
    "LoggedRequest",
    "Throttle",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Faults:
    """Faults to inject; assign a new one to ``CanvasEmulator.faults`` between runs.

    Request numbers count from 1 over the emulator's life (``reset_counters`` restarts
    them). Probabilities draw from a ``random.Random(seed)`` set by ``reset_counters``.
    """

    error_on: Collection[int] = frozenset()  # these requests get ``error_status``
    error_rate: float = 0.0
    error_status: int = 500
    error_paths: tuple[str, ...] = ()  # regexes: matching paths always fail (a fault that never heals)
    drop_on: Collection[int] = frozenset()  # these requests lose their connection mid-body
    drop_rate: float = 0.0
    delay_s: float = 0.0  # every answer waits this long
    slow_rate: float = 0.0  # and this share of answers waits ``slow_s`` more
    slow_s: float = 0.0
    bodies: Mapping[str, bytes] = field(default_factory=dict)  # path regex -> raw 200 body
    # "path?query" regex -> "error" or "drop": the first matching request fails, later ones succeed.
    transient: Mapping[str, str] = field(default_factory=dict)
    loop_paths: tuple[str, ...] = ()  # regexes: these lists link rel="next" back to the page itself


@dataclass(frozen=True)
class Throttle:
    """Canvas's per-token leaky bucket (Canvas defaults: 700 units, 50 charged up front)."""

    capacity: float = 700.0
    leak_per_s: float = 10.0
    cost: float = 1.0
    up_front: float = 50.0


class CanvasEmulator:
    """One emulated Canvas instance: its data, tokens, throttle, faults and request log."""

    def __init__(
        self,
        data: CanvasData,
        *,
        tokens: Collection[str] = ("test-token",),
        unauthorized_tokens: Collection[str] = (),
        throttle: Throttle | None = None,
        faults: Faults | None = None,
        max_per_page: int = 100,
        utc_offset_minutes: int = 0,
        analytics: bool = True,
        unreadable_courses: Collection[int] = (),
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        self.data = data
        self.tokens = frozenset(tokens)
        self.unauthorized_tokens = frozenset(unauthorized_tokens)
        self.throttle = throttle
        self.faults = faults or Faults()
        self.max_per_page = max_per_page
        self.utc_offset_minutes = utc_offset_minutes  # timestamps are written in this zone
        self.analytics = analytics  # False: the Analytics API answers 404, as when it is disabled
        # Courses the token's user is listed in but may not read (401 without WWW-Authenticate).
        self.unreadable_courses = frozenset(unreadable_courses)
        self.clock = clock
        self.log: list[LoggedRequest] = []
        self._cache: dict[Hashable, Any] = {}
        self._cache_lock = threading.Lock()
        self.app: Gate = build_app(self)
        self.app.reset(seed)
        self._seed = seed

    @classmethod
    def from_synth(cls, students: int, seed: int = 0, **options: Any) -> CanvasEmulator:
        """An emulator over ``generate_canvas(students, seed)``."""
        return cls(CanvasData(generate_canvas(students, seed), seed=seed), seed=seed, **options)

    def reset_counters(self) -> None:
        """Forget the request log, the request count, the buckets, and reseed the fault draws."""
        self.log.clear()
        self.app.reset(self._seed)

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """A value computed once per key (keys include the data version)."""
        with self._cache_lock:
            if key in self._cache:
                return cast(T, self._cache[key])
        value = compute()
        with self._cache_lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = value
        return value

    def requests_to(self, pattern: str) -> list[LoggedRequest]:
        """Logged requests whose path contains ``pattern``."""
        return [r for r in self.log if pattern in r.path]

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve on ``host`` (a free port by default) in a background thread; yield the base URL."""
        sock = _listening_socket(host, port)
        bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", log_config=None
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the Canvas emulator did not start")
            time.sleep(0.005)
        try:
            yield f"http://{host}:{bound_port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this; without it every answer (headers and body are
    # written separately) waits ~40 ms for the client's delayed ACK (Nagle).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def main(argv: list[str] | None = None) -> None:
    """Serve an emulator from the command line until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token", default="test-token")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    emulator = CanvasEmulator.from_synth(args.students, args.seed, tokens={args.token})
    sock = _listening_socket(args.host, args.port)
    # The parent process reads this line to learn the port.
    sys.stdout.write(f"serving http://{args.host}:{sock.getsockname()[1]}\n")
    sys.stdout.flush()
    config = uvicorn.Config(emulator.app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
