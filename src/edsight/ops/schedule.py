"""Running the daily job on a schedule inside ``edsight serve`` (APScheduler).

Cron or a systemd timer calling ``edsight run-daily`` does the same from outside the server
(docs/operations.md); the run's own file lock keeps the two from overlapping if both are set.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from edsight.config import Settings
from edsight.errors import EdsightError, InvalidInput

__all__ = ["JOB_ID", "daily_job", "parse_time", "start_scheduler"]

log = logging.getLogger(__name__)

JOB_ID = "edsight-run-daily"
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_time(text: str) -> tuple[int, int]:
    """``HH:MM`` (24-hour) -> (hour, minute)."""
    match = _TIME.match(text.strip())
    if not match:
        raise InvalidInput(f"schedule time must be HH:MM on a 24-hour clock, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def daily_job(settings: Settings) -> None:
    """One scheduled run for today's date; failures are logged, the scheduler goes on."""
    from edsight.ops.daily import run_daily

    today = datetime.now(UTC).date()
    try:
        report = run_daily(settings, today)
    except EdsightError as exc:
        log.error("scheduled daily run failed: %s", exc)
        return
    log.info("scheduled daily run %s: %s", today, {k: v["status"] for k, v in report.steps.items()})


def start_scheduler(
    settings: Settings, *, at: str = "06:30", timezone: str = "UTC", weekdays_only: bool = True
) -> BackgroundScheduler:
    """Start a background scheduler that runs the daily job at ``at`` (school days by default)."""
    hour, minute = parse_time(at)
    scheduler = BackgroundScheduler(timezone=timezone)
    scheduler.add_job(
        daily_job,
        CronTrigger(
            day_of_week="mon-fri" if weekdays_only else "*", hour=hour, minute=minute, timezone=timezone
        ),
        args=[settings],
        id=JOB_ID,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
        replace_existing=True,
    )
    scheduler.start()
    return scheduler
