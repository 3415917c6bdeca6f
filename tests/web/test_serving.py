"""The server and the daily job share one DuckDB instance in one process; the scheduler lives
and dies with the app; cached aggregates follow the warehouse version."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient

from edsight.errors import InvalidInput
from edsight.ops.alerts import AlertPolicy
from edsight.ops.daily import OpsConfig, run_daily
from edsight.ops.schedule import JOB_ID
from edsight.web.app import create_app

from .conftest import WebWorld


def test_run_daily_works_while_the_app_serves_in_the_same_process(world: WebWorld) -> None:
    client = world.client("district_admin")
    assert client.get("/district").status_code == 200  # the app now holds the warehouse read-write
    queries = world.app.state.edsight.queries
    before = queries.version()
    day = date(2031, 1, 6)  # a date no other test runs
    # Only a rule with no input in this warehouse (no LMS features): the run writes its
    # bookkeeping but adds no alert the other tests would see.
    config = OpsConfig(alerts=AlertPolicy(rules=("missing_work",)))
    report = run_daily(world.settings, day, config=config, only=("alerts",))
    assert report.steps["alerts"]["status"] == "done"
    assert report.steps["alerts"]["alerts"] == 0
    assert client.get("/district").status_code == 200
    with world.warehouse() as con:  # the web's cursor sees the run's commit at once
        assert con.execute("SELECT status FROM ops_run WHERE run_date = ?", [day]).fetchall() == [("done",)]
    queries.invalidate()
    assert queries.version() != before  # a finished step drops the cached aggregates


def test_the_schedule_starts_and_stops_with_the_app(world: WebWorld) -> None:
    app = create_app(world.settings, store=world.store, schedule="06:30", warm_statistics=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        scheduler = app.state.scheduler
        assert scheduler.running
        job = scheduler.get_job(JOB_ID)
        assert (job.next_run_time.hour, job.next_run_time.minute) == (6, 30)
        assert client.get("/health").json() == {"status": "ok"}
    assert not scheduler.running


def test_a_bad_schedule_fails_before_serving(world: WebWorld) -> None:
    with pytest.raises(InvalidInput, match="HH:MM"):
        create_app(world.settings, store=world.store, schedule="25:00")


def test_aggregates_are_cached_until_the_warehouse_changes(world: WebWorld) -> None:
    queries = world.app.state.edsight.queries
    client = world.client("state_analyst")
    with queries._memo.lock:
        queries._memo.entries.clear()  # only the state analyst's entries from here
    assert client.get("/state").status_code == 200
    first = queries.version()
    key = next(k for k in queries._memo.entries if isinstance(k, tuple) and k[0] == "school_table")
    cached = queries._memo.entries[key]
    assert client.get("/state").status_code == 200
    assert queries._memo.entries[key] is cached  # served from the cache
    with world.warehouse() as con:
        con.execute(
            "INSERT INTO ops_run VALUES (DATE '2031-02-03', 'drift', 'done', now()::TIMESTAMP, "
            "now()::TIMESTAMP, 0.1, NULL)"
        )
    queries.invalidate()
    assert client.get("/state").status_code == 200
    assert queries.version() != first
    assert queries._memo.entries[key] is not cached  # recomputed for the new version
