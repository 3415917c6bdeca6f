"""The in-server schedule: next run on the next school day at the set time; bad times refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.ops.schedule import JOB_ID, daily_job, parse_time, start_scheduler


def test_parse_time() -> None:
    assert parse_time("06:30") == (6, 30)
    assert parse_time("23:05") == (23, 5)
    for bad in ("6.30", "24:00", "07:60", "noon"):
        with pytest.raises(InvalidInput, match="HH:MM"):
            parse_time(bad)


def test_scheduler_plans_the_next_school_day(tmp_path: Path) -> None:
    scheduler = start_scheduler(Settings(home=tmp_path), at="05:45")
    try:
        job = scheduler.get_job(JOB_ID)
        assert job is not None
        nxt = job.next_run_time.astimezone(UTC)
        assert (nxt.hour, nxt.minute) == (5, 45)
        assert nxt.weekday() < 5
        assert nxt > datetime.now(UTC)
    finally:
        scheduler.shutdown(wait=False)


def test_job_runs_the_daily_run_and_survives_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(home=tmp_path / "home")
    daily_job(settings)  # empty home: every step skips, nothing raises
    assert (settings.home / "warehouse.duckdb").exists()
    (settings.home / "ops.yaml").write_text("kinds: [lms\n")  # broken config: logged, not raised
    with caplog.at_level("ERROR"):
        daily_job(settings)
    assert "scheduled daily run failed" in caplog.text
    assert "not valid YAML" in caplog.text
