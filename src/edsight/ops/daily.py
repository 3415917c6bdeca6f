"""The daily run: ingest, features, scores, alerts, retraining and drift, once per date.

``run_daily(settings, today)`` runs the steps in order and records each in ``ops_run``
(started, done with seconds and a JSON detail, or failed with the error). It is:

* **idempotent**: a step already done for the date is skipped, and every step writes with
  replace-by-key semantics, so running the same day twice changes nothing;
* **resumable**: after a crash the next run for the date re-runs the step that was started
  but not finished, then goes on;
* **exclusive**: an OS file lock on ``HOME/run-daily.lock`` keeps two runs from overlapping;
  the lock dies with its process, so a killed run never blocks the next.

Steps whose inputs are absent (no incoming files, no models, no channels) are recorded as
``skipped`` with the reason.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edsight.config import Settings
from edsight.errors import EdsightError, InvalidInput
from edsight.ops.alerts import AlertPolicy, WarehouseDirectory, alert_notifications, raise_alerts
from edsight.ops.delivery import Channel, Dispatcher, EmailChannel, SmtpConfig, WebhookChannel, WebhookConfig
from edsight.sql import has_rows
from edsight.store.warehouse import Warehouse

__all__ = ["STEPS", "OpsConfig", "RunReport", "StepFailed", "load_ops_config", "run_daily"]

log = logging.getLogger(__name__)

STEPS = ("ingest", "features", "retrain", "score", "alerts", "drift")
CONFIG_FILE = "ops.yaml"
LOCK_FILE = "run-daily.lock"


class StepFailed(EdsightError):
    """A step of the daily run failed; the run stops there and resumes from it next time."""


class OpsConfig(BaseModel):
    """``HOME/ops.yaml``: what the daily run does and where alerts go."""

    model_config = ConfigDict(extra="forbid")

    kinds: tuple[str, ...] = ("lms", "k12")
    targets: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {
            "lms": ("will_fail_academically", "will_miss_assignments"),
            "k12": ("dropout_1y",),
        }
    )
    retrain_every_days: int = Field(default=28, ge=1)
    alerts: AlertPolicy = Field(default_factory=AlertPolicy)
    smtp: SmtpConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    addresses: dict[str, str] = Field(
        default_factory=dict, description="Recipient id (teacher person_id or account) -> e-mail."
    )
    caseloads: dict[str, list[str]] = Field(default_factory=dict)
    principals: dict[str, list[str]] = Field(default_factory=dict)
    digest: bool = Field(default=True, description="Send the daily digest (immediate rules always go).")


def load_ops_config(settings: Settings) -> OpsConfig:
    """Read ``HOME/ops.yaml`` (defaults when absent); errors name the file and the field."""
    path = settings.home / CONFIG_FILE
    if not path.exists():
        return OpsConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return OpsConfig.model_validate(raw)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML ({exc})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InvalidInput(f"{path}: {where}: {first['msg']}") from exc


@dataclass
class RunReport:
    """What one invocation did, step by step."""

    run_date: date
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"run_date": self.run_date.isoformat(), "steps": self.steps}


@contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    settings.home.mkdir(parents=True, exist_ok=True)
    with (settings.home / LOCK_FILE).open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise InvalidInput(
                "another daily run is in progress (lock held); try again when it ends"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _status(wh: Warehouse, run_date: date) -> dict[str, str]:
    with wh.connect(read_only=True) as con:
        rows = con.execute("SELECT step, status FROM ops_run WHERE run_date = ?", [run_date]).fetchall()
    return {str(step): str(status) for step, status in rows}


def _mark(wh: Warehouse, run_date: date, step: str, status: str, **values: Any) -> None:
    with wh.connect() as con:
        con.execute("BEGIN")
        if status == "started":
            con.execute("DELETE FROM ops_run WHERE run_date = ? AND step = ?", [run_date, step])
            con.execute(
                "INSERT INTO ops_run VALUES (?, ?, 'started', ?, NULL, NULL, NULL)",
                [run_date, step, _utcnow()],
            )
        else:
            con.execute(
                "UPDATE ops_run SET status = ?, finished_at = ?, seconds = ?, detail = ? "
                "WHERE run_date = ? AND step = ?",
                [
                    status,
                    _utcnow(),
                    values.get("seconds"),
                    json.dumps(values.get("detail"), default=str),
                    run_date,
                    step,
                ],
            )
        con.execute("COMMIT")


class _Skip(Exception):
    """A step has nothing to do today; the message says why."""


@dataclass
class _Context:
    settings: Settings
    warehouse: Warehouse
    config: OpsConfig
    today: date
    channels: dict[str, Channel]
    kinds: list[str] | None = None  # kinds with data, found once the ingest step has run


def _step_ingest(ctx: _Context) -> dict[str, Any]:
    incoming = ctx.settings.home / "incoming"
    batches = (
        sorted(p for p in incoming.iterdir() if p.is_dir() and p.name != "done") if incoming.exists() else []
    )
    if not batches:
        raise _Skip("no new batches under HOME/incoming")
    done = incoming / "done" / ctx.today.isoformat()
    loaded = []
    for batch in batches:
        result = ctx.warehouse.load_directory(batch)
        loaded.append(
            {"batch": batch.name, "stored": result.rows_stored, "quarantined": result.rows_quarantined}
        )
        done.mkdir(parents=True, exist_ok=True)
        # Loading is idempotent by content hash, so a crash before this move only repeats a no-op.
        shutil.move(str(batch), str(done / batch.name))
    return {"batches": loaded}


_KIND_TABLE = {"lms": "assignment", "k12": "attendance"}


def _kinds_with_data(ctx: _Context) -> list[str]:
    """The configured kinds whose source table holds rows (asked once per run, after ingest)."""
    if ctx.kinds is None:
        with ctx.warehouse.connect(read_only=True) as con:
            ctx.kinds = [k for k in ctx.config.kinds if k in _KIND_TABLE and has_rows(con, _KIND_TABLE[k])]
    return ctx.kinds


def _step_features(ctx: _Context) -> dict[str, Any]:
    from edsight.features.labels import store_labels
    from edsight.features.weekly import store_features

    kinds = tuple(_kinds_with_data(ctx))
    if not kinds:
        raise _Skip("no LMS or K-12 data in the warehouse")
    written = store_features(ctx.warehouse, kinds=kinds, as_of=ctx.today)  # type: ignore[arg-type]
    written.update(store_labels(ctx.warehouse, kinds=kinds))  # type: ignore[arg-type]
    return {"rows": written}


def _step_retrain(ctx: _Context) -> dict[str, Any]:
    from edsight.ops.retrain import retrain_if_due

    kinds = _kinds_with_data(ctx)
    if not kinds:
        raise _Skip("no data to train on")
    outcomes = []
    for kind in kinds:
        for target in ctx.config.targets.get(kind, ()):
            outcomes.append(
                retrain_if_due(
                    ctx.warehouse,
                    kind=kind,
                    target=target,
                    today=ctx.today,
                    every_days=ctx.config.retrain_every_days,
                )
            )
    return {"models": outcomes}


def _step_score(ctx: _Context) -> dict[str, Any]:
    from edsight.models.pipeline import score

    rows: dict[str, int] = {}
    for kind in _kinds_with_data(ctx):
        try:
            rows[kind] = score(ctx.warehouse, as_of=ctx.today, kind=kind)
        except InvalidInput as exc:
            rows[kind] = 0
            log.info("no scores for %s today: %s", kind, exc)
    if not any(rows.values()):
        raise _Skip("no registered model could score today's data")
    return {"rows": rows}


def _step_alerts(ctx: _Context) -> dict[str, Any]:
    cfg = ctx.config
    directory = WarehouseDirectory(
        caseloads=cfg.caseloads, principals=cfg.principals, addresses=cfg.addresses
    )
    with ctx.warehouse.connect() as con:
        added = raise_alerts(con, ctx.today, cfg.alerts, directory)
        notes = alert_notifications(added, cfg.alerts, digest=False)
        if cfg.digest:
            notes += alert_notifications(added, cfg.alerts, digest=True)
        detail: dict[str, Any] = {"alerts": len(added), "notifications": len(notes)}
        if notes and "email" in ctx.channels:
            report = Dispatcher(con, ctx.channels, backoff_s=1.0).dispatch(notes)
            detail.update(sent=report.sent, dead=report.dead, already_sent=report.skipped)
    return detail


def _step_drift(ctx: _Context) -> dict[str, Any]:
    from edsight.ops.retrain import score_drift

    report = score_drift(ctx.warehouse, ctx.today)
    if report is None:
        raise _Skip("fewer than two scoring dates to compare")
    return report


_RUNNERS: dict[str, Callable[[_Context], dict[str, Any]]] = {
    "ingest": _step_ingest,
    "features": _step_features,
    "retrain": _step_retrain,
    "score": _step_score,
    "alerts": _step_alerts,
    "drift": _step_drift,
}


def _channels(config: OpsConfig) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    if config.smtp is not None:
        channels["email"] = EmailChannel(config.smtp)
    for hook in config.webhooks:
        channels[hook.name] = WebhookChannel(hook)
    return channels


def run_daily(
    settings: Settings,
    today: date,
    *,
    config: OpsConfig | None = None,
    only: tuple[str, ...] | None = None,
    before_step: Callable[[str], None] | None = None,
) -> RunReport:
    """Run (or resume) the daily job for ``today``; see the module docs.

    ``only`` limits the run to some steps; ``before_step`` is called with each step name
    before it starts (the CLI shows progress with it).
    """
    steps = only or STEPS
    unknown = [s for s in steps if s not in _RUNNERS]
    if unknown:
        raise InvalidInput(f"unknown step(s) {unknown}; the daily run has {list(STEPS)}")
    wh = Warehouse(settings)
    wh.init()
    cfg = config or load_ops_config(settings)
    report = RunReport(today)
    with _exclusive(settings):
        done = _status(wh, today)
        ctx = _Context(settings, wh, cfg, today, _channels(cfg))
        for step in steps:
            if done.get(step) in ("done", "skipped"):
                report.steps[step] = {"status": "already " + done[step]}
                continue
            if before_step is not None:
                before_step(step)
            _mark(wh, today, step, "started")
            started = time.perf_counter()
            try:
                detail = _RUNNERS[step](ctx)
            except _Skip as skip:
                seconds = time.perf_counter() - started
                _mark(wh, today, step, "skipped", seconds=seconds, detail={"reason": str(skip)})
                report.steps[step] = {"status": "skipped", "reason": str(skip)}
                continue
            except EdsightError as exc:
                seconds = time.perf_counter() - started
                _mark(wh, today, step, "failed", seconds=seconds, detail={"error": str(exc)})
                raise StepFailed(f"daily run {today}: step {step} failed: {exc}") from exc
            seconds = time.perf_counter() - started
            _mark(wh, today, step, "done", seconds=seconds, detail=detail)
            report.steps[step] = {"status": "done", "seconds": round(seconds, 3), **detail}
    return report
