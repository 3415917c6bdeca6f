"""Delivering alert notifications: e-mail (SMTP, optional TLS) and signed webhooks.

Every notification has a deterministic id; a delivered id is never sent again (running the
daily job twice sends nothing twice). A failed attempt is retried with exponential backoff;
after ``max_attempts`` the notification goes to the ``alert_dead_letter`` table with the
last error, from where :meth:`Dispatcher.retry_dead_letters` can send it again. Delivery is
at-least-once: webhook receivers get the id in ``X-Edsight-Delivery`` to drop repeats, and a
signature over timestamp and body in ``X-Edsight-Signature`` (HMAC-SHA256 with the shared
secret) to reject forgeries and replays (:func:`verify_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal, Protocol

import duckdb
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from edsight.errors import EdsightError, InvalidInput
from edsight.schema import SYSTEM

__all__ = [
    "DeliveryError",
    "DispatchReport",
    "Dispatcher",
    "EmailChannel",
    "Notification",
    "SmtpConfig",
    "WebhookChannel",
    "WebhookConfig",
    "notification_id",
    "sign_webhook",
    "verify_signature",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Edsight-Signature"
TIMESTAMP_HEADER = "X-Edsight-Timestamp"
DELIVERY_HEADER = "X-Edsight-Delivery"


class DeliveryError(EdsightError):
    """One delivery attempt failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class SmtpConfig(BaseModel):
    """An SMTP relay the district configured."""

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    sender: str
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    ca_file: str | None = Field(default=None, description="CA bundle to trust (default: the system's).")


class WebhookConfig(BaseModel):
    """A case-management or messaging endpoint that receives signed JSON."""

    model_config = ConfigDict(extra="forbid")

    name: str
    url: str
    secret: SecretStr
    timeout_s: float = Field(default=5.0, gt=0)


@dataclass(frozen=True)
class Notification:
    """What one recipient is told through one channel."""

    channel: str  # "email" or a webhook name
    recipient: str  # an e-mail address, or the webhook name
    subject: str
    body: str
    alert_ids: tuple[str, ...]
    payload: Mapping[str, Any] = field(default_factory=dict)

    @property
    def notification_id(self) -> str:
        return notification_id(self.channel, self.recipient, self.alert_ids)


def notification_id(channel: str, recipient: str, alert_ids: Sequence[str]) -> str:
    """Deterministic id of a notification: the same alerts to the same place, the same id."""
    digest = hashlib.sha256("\0".join([channel, recipient, *sorted(alert_ids)]).encode())
    return digest.hexdigest()[:32]


class Channel(Protocol):
    def send(self, notification: Notification) -> None: ...


class EmailChannel:
    """Sends a plain-text e-mail through an SMTP relay (STARTTLS, implicit TLS or plain)."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.ca_file)

    def send(self, notification: Notification) -> None:
        cfg = self.config
        message = EmailMessage()
        message["From"] = cfg.sender
        message["To"] = notification.recipient
        message["Subject"] = notification.subject
        message["Message-ID"] = f"<{notification.notification_id}@edsight>"
        message.set_content(notification.body)
        try:
            smtp: smtplib.SMTP
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=self._context())
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=self._context())
                if cfg.username and cfg.password:
                    smtp.login(cfg.username, cfg.password.get_secret_value())
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError("the mail server refused the recipient", retryable=False) from exc
        except smtplib.SMTPResponseException as exc:
            # 4xx replies are temporary by definition; 5xx are permanent.
            raise DeliveryError(
                f"the mail server answered {exc.smtp_code}", retryable=exc.smtp_code < 500
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"cannot reach the mail server: {type(exc).__name__}") from exc


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """What a receiver checks: a valid signature over a timestamp no older than the tolerance."""
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign_webhook(secret, timestamp, body), signature)


class WebhookChannel:
    """POSTs the notification's payload as JSON, signed with the shared secret."""

    def __init__(self, config: WebhookConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock

    def send(self, notification: Notification) -> None:
        body = json.dumps(
            {"id": notification.notification_id, **notification.payload}, sort_keys=True, default=str
        ).encode()
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_webhook(self.config.secret.get_secret_value(), timestamp, body),
            DELIVERY_HEADER: notification.notification_id,
        }
        try:
            response = httpx.post(
                self.config.url,
                content=body,
                headers=headers,
                timeout=self.config.timeout_s,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {self.config.name} unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in (408, 429)
        raise DeliveryError(f"webhook {self.config.name} answered HTTP {status}", retryable=retryable)


@dataclass
class DispatchReport:
    """Counts of one dispatch: sent now, already sent before, dead-lettered."""

    sent: int = 0
    skipped: int = 0
    dead: int = 0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


class Dispatcher:
    """Sends notifications through named channels, once each, recording every outcome.

    ``backoff_s`` is the first retry delay; it doubles per attempt. ``sleep`` is injectable
    so the daily job (and tests) can use a zero delay.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        channels: Mapping[str, Channel],
        *,
        max_attempts: int = 4,
        backoff_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise InvalidInput(f"max_attempts must be at least 1, got {max_attempts}")
        self.con = con
        self.channels = dict(channels)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        for table in ("alert_delivery", "alert_dead_letter"):
            con.execute(SYSTEM[table].ddl())

    def _delivered(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        rows = self.con.execute(
            "SELECT notification_id FROM alert_delivery WHERE status = 'delivered' "
            "AND notification_id IN (SELECT unnest($ids))",
            {"ids": list(ids)},
        ).fetchall()
        return {r[0] for r in rows}

    def _record(self, note: Notification, status: str, attempts: int, error: str | None) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        key = [note.notification_id]
        self.con.execute("BEGIN")
        self.con.execute("DELETE FROM alert_delivery WHERE notification_id = ?", key)
        self.con.execute("DELETE FROM alert_dead_letter WHERE notification_id = ?", key)
        self.con.execute(
            "INSERT INTO alert_delivery VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                note.notification_id,
                note.channel,
                note.recipient,
                json.dumps(list(note.alert_ids)),
                status,
                attempts,
                error,
                now,
            ],
        )
        if status == "dead":
            self.con.execute(
                "INSERT INTO alert_dead_letter VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    note.notification_id,
                    note.channel,
                    note.recipient,
                    note.subject,
                    note.body,
                    json.dumps(list(note.alert_ids)),
                    json.dumps(dict(note.payload), default=str),
                    error or "",
                    now,
                ],
            )
        self.con.execute("COMMIT")

    def _attempt(self, note: Notification, report: DispatchReport) -> None:
        channel = self.channels.get(note.channel)
        if channel is None:
            raise InvalidInput(f"no channel named {note.channel!r} is configured")
        error = ""
        attempts = 0
        for attempt in range(1, self.max_attempts + 1):
            attempts = attempt
            report.attempts += 1
            try:
                channel.send(note)
            except DeliveryError as exc:
                error = str(exc)
                log.warning(
                    "delivery %s via %s failed (attempt %d): %s",
                    note.notification_id[:8],
                    note.channel,
                    attempt,
                    error,
                )
                if not exc.retryable:
                    break
                if attempt < self.max_attempts:
                    self._sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            self._record(note, "delivered", attempts, None)
            report.sent += 1
            return
        self._record(note, "dead", attempts, error)
        report.dead += 1
        report.errors.append(error)

    def dispatch(self, notifications: Sequence[Notification]) -> DispatchReport:
        """Send each notification not delivered before; returns what happened."""
        report = DispatchReport()
        done = self._delivered([n.notification_id for n in notifications])
        for note in notifications:
            if note.notification_id in done:
                report.skipped += 1
                continue
            self._attempt(note, report)
            done.add(note.notification_id)
        return report

    def dead_letters(self) -> list[Notification]:
        """The notifications that ran out of attempts, as they were."""
        rows = self.con.execute(
            "SELECT channel, recipient, subject, body, alert_ids, payload FROM alert_dead_letter "
            "ORDER BY dead_at, notification_id"
        ).fetchall()
        return [
            Notification(
                channel=r[0],
                recipient=r[1],
                subject=r[2],
                body=r[3],
                alert_ids=tuple(json.loads(r[4])),
                payload=json.loads(r[5]),
            )
            for r in rows
        ]

    def retry_dead_letters(self) -> DispatchReport:
        """Try the dead letters again (after the receiver is fixed)."""
        return self.dispatch(self.dead_letters())
