"""Local narratives, and the optional language-model hook against a loopback endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from edsight.errors import InvalidInput
from edsight.ops.narrate import (
    LanguageModelConfig,
    district_narrative,
    polish,
    redact,
    school_narrative,
    student_narrative,
)

REASONS = [
    {"code": "MISSING_WORK", "text": "3 missing assignments so far (2 new in the last 2 weeks)"},
    {"code": "ATTENDANCE_DROP", "text": "attendance fell from 95% to 82% over 4 weeks"},
]


def test_student_narrative_uses_the_figures() -> None:
    text = student_narrative(
        "Ana",
        {"will_fail_academically": 0.62, "will_disengage": 0.2},
        REASONS,
        recommendations=[{"name": "Missing-work recovery plan"}],
    )
    assert text.startswith(
        "Ana's estimated chance of failing the course over the next 4 weeks is 62% (high)."
    )
    assert "3 missing assignments so far" in text
    assert "missing-work recovery plan" in text
    assert "not a judgement" in text
    assert student_narrative("Ana", {}, []) == "Ana has no current risk scores."


def test_school_and_district_narratives_respect_suppression() -> None:
    text = school_narrative("North High", students=800, flagged=None, chronic_absence_rate=0.15)
    assert "too small to report" in text
    assert "15% are chronically absent" in text
    full = school_narrative(
        "North High", students=800, flagged=96, change_in_flagged=-4,
        largest_gap={"subject": "math", "focal": "EL", "reference": "non-EL", "effect_size": -0.61},
    )  # fmt: skip
    assert "96 (12%) are flagged (down 4 from last week)" in full
    assert "0.61 standard deviations" in full
    d = district_narrative(
        "Unified",
        [{"name": "A", "students": 100, "flagged": 30}, {"name": "B", "students": 50, "flagged": None}],
    )
    assert "2 schools, 150 students" in d
    assert "A (30%)" in d


def test_redact_replaces_every_identifier() -> None:
    safe, key = redact("Ana Lopez (S000123) missed work; ana lopez's grade fell.", ["Ana Lopez", "S000123"])
    assert "Ana" not in safe
    assert "S000123" not in safe
    assert "lopez" not in safe.lower()
    assert set(key.values()) == {"Ana Lopez", "S000123"}


class ChatServer:
    def __init__(self, reply: str) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers["Authorization"]}
                )
                data = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer("[P1] has three missing assignments; a plan with the teacher could help.")
    yield server
    server.close()


def test_language_model_is_off_by_default_and_never_sees_identifiers(chat: ChatServer) -> None:
    text = student_narrative("Ana Lopez", {"will_fail_academically": 0.7}, REASONS)
    assert polish(text, ["Ana Lopez", "S000123"], None) == text  # nothing sent without a config
    assert chat.requests == []
    config = LanguageModelConfig(base_url=chat.url, model="local-model", api_key="k")  # type: ignore[arg-type]
    out = polish(text, ["Ana Lopez", "S000123"], config)
    assert out.startswith("Ana Lopez has three missing assignments")
    sent = json.dumps(chat.requests[0]["body"])
    assert "Ana" not in sent
    assert "Lopez" not in sent
    assert chat.requests[0]["path"] == "/v1/chat/completions"
    assert chat.requests[0]["auth"] == "Bearer k"


def test_reply_that_drops_a_placeholder_is_refused() -> None:
    server = ChatServer("This student has missing work.")
    try:
        config = LanguageModelConfig(base_url=server.url, model="m")
        with pytest.raises(InvalidInput, match="dropped a placeholder"):
            polish("Ana has 3 missing assignments.", ["Ana"], config)
    finally:
        server.close()
