"""Alert delivery against a real SMTP server (aiosmtpd) and a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from edsight.errors import InvalidInput
from edsight.ops.delivery import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Dispatcher,
    EmailChannel,
    Notification,
    SmtpConfig,
    WebhookChannel,
    WebhookConfig,
    sign_webhook,
    verify_signature,
)

SECRET = "a-shared-secret-of-the-district"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """aiosmtpd handler that keeps what it receives and can refuse recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse: set[str] = set()
        self.temporary_failures = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.temporary_failures > 0:
            self.temporary_failures -= 1
            return "451 try again later"
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 Message accepted"


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def smtp_server(tls_files: tuple[Path, Path]) -> Iterator[tuple[Inbox, int, Path]]:
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()


class Receiver:
    """A webhook receiver on loopback that verifies signatures and can be told to fail."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.delivery_ids: list[str] = []
        self.fail_next: list[int] = []  # status codes to answer before succeeding
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_next:
                    self.send_response(receiver.fail_next.pop(0))
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items()}
                if not verify_signature(SECRET, body, headers):
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                receiver.delivery_ids.append(self.headers[DELIVERY_HEADER])
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(str(tmp_path / "ops.duckdb"))
    try:
        yield c
    finally:
        c.close()


def note(channel: str, recipient: str, *alert_ids: str) -> Notification:
    return Notification(
        channel=channel,
        recipient=recipient,
        subject="2 new early-warning alerts",
        body="2 students in your sections have new alerts. Sign in to edsight to see them.",
        alert_ids=alert_ids,
        payload={"alerts": list(alert_ids), "rule": "risk_threshold"},
    )


def email_channel(port: int, cert: Path) -> EmailChannel:
    return EmailChannel(
        SmtpConfig(
            host="127.0.0.1", port=port, sender="alerts@district.example", ca_file=str(cert), timeout_s=5
        )
    )


def webhook(url: str) -> WebhookChannel:
    return WebhookChannel(WebhookConfig(name="cases", url=url, secret=SECRET))  # type: ignore[arg-type]


def test_email_over_starttls_is_delivered_once(con: duckdb.DuckDBPyConnection, smtp_server: Any) -> None:
    inbox, port, cert = smtp_server
    dispatcher = Dispatcher(con, {"email": email_channel(port, cert)}, backoff_s=0)
    first = dispatcher.dispatch([note("email", "teacher@district.example", "a1", "a2")])
    again = dispatcher.dispatch([note("email", "teacher@district.example", "a2", "a1")])
    assert (first.sent, first.dead) == (1, 0)
    assert (again.sent, again.skipped) == (0, 1)  # same alerts, any order: same notification
    assert len(inbox.messages) == 1
    sender, rcpts, content = inbox.messages[0]
    assert sender == "alerts@district.example"
    assert rcpts == ["teacher@district.example"]
    assert b"Subject: 2 new early-warning alerts" in content
    row = con.sql("SELECT status, attempts FROM alert_delivery").fetchall()
    assert row == [("delivered", 1)]


def test_email_temporary_failure_is_retried(con: duckdb.DuckDBPyConnection, smtp_server: Any) -> None:
    inbox, port, cert = smtp_server
    inbox.temporary_failures = 2
    waits: list[float] = []
    dispatcher = Dispatcher(con, {"email": email_channel(port, cert)}, backoff_s=0.5, sleep=waits.append)
    report = dispatcher.dispatch([note("email", "c@district.example", "a3")])
    assert (report.sent, report.attempts) == (1, 3)
    assert waits == [0.5, 1.0]  # exponential backoff between attempts
    assert len(inbox.messages) == 1


def test_refused_recipient_goes_to_dead_letter_without_retry(
    con: duckdb.DuckDBPyConnection, smtp_server: Any
) -> None:
    inbox, port, cert = smtp_server
    inbox.refuse.add("gone@district.example")
    dispatcher = Dispatcher(con, {"email": email_channel(port, cert)}, backoff_s=0)
    report = dispatcher.dispatch([note("email", "gone@district.example", "a4")])
    assert (report.sent, report.dead, report.attempts) == (0, 1, 1)
    assert "refused the recipient" in report.errors[0]
    dead = dispatcher.dead_letters()
    assert [n.alert_ids for n in dead] == [("a4",)]


def test_plain_smtp_against_a_tls_only_server_fails_clearly(
    con: duckdb.DuckDBPyConnection, smtp_server: Any
) -> None:
    _, port, _ = smtp_server
    channel = EmailChannel(SmtpConfig(host="127.0.0.1", port=port, sender="a@b.example", security="none"))
    report = Dispatcher(con, {"email": channel}, max_attempts=2, backoff_s=0).dispatch(
        [note("email", "t@district.example", "a5")]
    )
    assert report.dead == 1
    assert "530" in report.errors[0]  # must issue STARTTLS first


def test_unreachable_mail_server_is_dead_lettered_after_all_attempts(con: duckdb.DuckDBPyConnection) -> None:
    channel = EmailChannel(
        SmtpConfig(host="127.0.0.1", port=free_port(), sender="a@b.example", security="none", timeout_s=2)
    )
    report = Dispatcher(con, {"email": channel}, max_attempts=3, backoff_s=0).dispatch(
        [note("email", "t@district.example", "a6")]
    )
    assert (report.dead, report.attempts) == (1, 3)
    assert "cannot reach the mail server" in report.errors[0]


def test_webhook_is_signed_and_received(con: duckdb.DuckDBPyConnection, receiver: Receiver) -> None:
    dispatcher = Dispatcher(con, {"cases": webhook(receiver.url)}, backoff_s=0)
    n = note("cases", "cases", "a7")
    report = dispatcher.dispatch([n])
    assert report.sent == 1
    assert receiver.bodies == [{"id": n.notification_id, "alerts": ["a7"], "rule": "risk_threshold"}]
    assert receiver.delivery_ids == [n.notification_id]


def test_webhook_with_wrong_secret_is_rejected_and_not_retried(
    con: duckdb.DuckDBPyConnection, receiver: Receiver
) -> None:
    forged = WebhookChannel(WebhookConfig(name="cases", url=receiver.url, secret="wrong"))  # type: ignore[arg-type]
    report = Dispatcher(con, {"cases": forged}, backoff_s=0).dispatch([note("cases", "cases", "a8")])
    assert (report.dead, report.attempts) == (1, 1)  # 401 is permanent
    assert receiver.bodies == []


def test_webhook_receiver_failures_then_recovery(con: duckdb.DuckDBPyConnection, receiver: Receiver) -> None:
    receiver.fail_next = [503, 500, 429, 502]
    dispatcher = Dispatcher(con, {"cases": webhook(receiver.url)}, max_attempts=3, backoff_s=0)
    report = dispatcher.dispatch([note("cases", "cases", "a9"), note("cases", "cases", "a10")])
    # a9: 503, 500, 429 -> dead; a10: 502, then delivered
    assert (report.sent, report.dead) == (1, 1)
    assert [b["alerts"] for b in receiver.bodies] == [["a10"]]
    retried = dispatcher.retry_dead_letters()
    assert (retried.sent, retried.dead) == (1, 0)
    assert sorted(b["alerts"][0] for b in receiver.bodies) == ["a10", "a9"]
    assert dispatcher.dead_letters() == []
    statuses = con.sql("SELECT status, count(*) FROM alert_delivery GROUP BY 1").fetchall()
    assert statuses == [("delivered", 2)]


def test_signature_verification_rejects_tampering_and_replay() -> None:
    body = b'{"id": "x"}'
    ts = "1700000000"
    headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign_webhook(SECRET, ts, body)}
    assert verify_signature(SECRET, body, headers, now=1700000010)
    assert not verify_signature(SECRET, b'{"id": "y"}', headers, now=1700000010)
    assert not verify_signature("other", body, headers, now=1700000010)
    assert not verify_signature(SECRET, body, headers, now=1700000000 + 3600)  # replayed later
    assert not verify_signature(SECRET, body, {SIGNATURE_HEADER: "sha256=00"}, now=1700000000)


def test_unknown_channel_and_bad_attempts_are_clear_errors(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(InvalidInput, match="no channel named 'sms'"):
        Dispatcher(con, {}).dispatch([note("sms", "x", "a11")])
    with pytest.raises(InvalidInput, match="max_attempts must be at least 1"):
        Dispatcher(con, {}, max_attempts=0)
