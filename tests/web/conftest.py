"""A small generated district + Canvas warehouse, scored, with one account per role (built once).

Risk scores, alerts and interventions are inserted here from the real weekly features with a
fixed formula (the scoring pipeline is tested elsewhere); what the web tests check is that
each role sees exactly the rows its scope allows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.web.live_server import LiveServer

from edsight.config import Settings
from edsight.features.weekly import store_features
from edsight.governance.identity import GovernanceStore
from edsight.models._pipeline_score import _refresh_latest as refresh_latest
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas
from edsight.synth.district import write_district
from edsight.web.app import create_app
from edsight.web.demo_accounts import DemoAccount, create_demo_accounts, demo_targets

ARTIFACTS = Path(__file__).parents[2] / "tmp" / "artifacts" / "web"


class StepClock:
    """A clock the tests move forward (30 s per login, so each TOTP code is fresh) without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds


@dataclass
class WebWorld:
    settings: Settings
    store: GovernanceStore
    clock: StepClock
    accounts: dict[str, DemoAccount]
    targets: dict[str, object]
    app: FastAPI
    tokens: dict[str, str] = field(default_factory=dict)

    def totp(self, role: str) -> str | None:
        """A code for the next login of ``role`` (the clock moves past the last used step)."""
        secret = self.accounts[role].totp_secret
        if secret is None:
            return None
        self.clock.advance(31)
        return pyotp.TOTP(secret).at(self.clock())

    def token(self, role: str) -> str:
        """A session token of the demo account of ``role`` (one login per role per session)."""
        if role not in self.tokens:
            acct = self.accounts[role]
            self.tokens[role] = self.store.login(
                acct.username, acct.password, totp=self.totp(role), client="t"
            )
        return self.tokens[role]

    @contextmanager
    def warehouse(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the app's own DuckDB instance (the app holds the file read-write, and a
        read-only connection to the same file in the same process is refused by DuckDB)."""
        with self.app.state.edsight.queries.reader.cursor() as con:
            yield con

    def client(self, role: str | None) -> TestClient:
        client = TestClient(self.app, base_url="http://127.0.0.1")
        if role is not None:
            client.cookies.set("edsight_session", self.token(role))
        return client


RISK_SQL = """
INSERT INTO risk_score (person_id, section_id, as_of, target, probability, model_id, reasons)
SELECT person_id, NULL, week_end, 'will_dropout',
       1 / (1 + exp(-(-2.2 + 6 * (1 - coalesce(attendance_rate, 1)) + 0.9 * f_count + 0.4 * incidents_4w))),
       'demo-k12-1',
       to_json(list_filter([
         CASE WHEN coalesce(attendance_rate, 1) < 0.9 THEN 'attendance_below_90' END,
         CASE WHEN f_count > 0 THEN 'course_failure' END,
         CASE WHEN incidents_4w > 0 THEN 'behavior_incidents' END], lambda x: x IS NOT NULL))
FROM weekly_features_k12 WHERE week % 8 = 0;
INSERT INTO risk_score (person_id, section_id, as_of, target, probability, model_id, reasons)
SELECT person_id, section_id, week_end, 'will_fail_academically',
       1 / (1 + exp(-(-1.5 + 3 * coalesce(missing_rate, 0) - 2 * coalesce(current_grade / 100, 0.7)))),
       'demo-lms-1',
       to_json(list_filter([CASE WHEN assignments_missing > 0 THEN 'missing_assignments' END,
                            CASE WHEN inactive_streak_weeks > 1 THEN 'inactive_weeks' END],
                           lambda x: x IS NOT NULL))
FROM weekly_features_lms WHERE week % 8 = 0;
INSERT INTO alert (alert_id, person_id, rule, raised_at, recipient_id, status, detail)
SELECT 'A' || row_number() OVER (ORDER BY person_id, as_of), person_id, 'risk_above_0.7',
       as_of::TIMESTAMP, NULL, CASE WHEN hash(person_id) % 3 = 0 THEN 'closed' ELSE 'open' END, NULL
FROM risk_score WHERE probability > 0.7 AND section_id IS NULL;
INSERT INTO intervention (intervention_id, person_id, intervention_type, start_date, end_date, owner_id,
                          status, outcome)
SELECT 'I' || row_number() OVER (ORDER BY person_id), person_id, 'attendance_mentoring', min(as_of), NULL,
       NULL, 'active', NULL
FROM risk_score WHERE probability > 0.8 AND section_id IS NULL GROUP BY person_id;
"""


def build_world(root: Path) -> WebWorld:
    write_district(root / "district", 300, n_years=2, n_schools=3, seed=11)
    write_canvas(root / "canvas", 40, seed=11, fmt="csv")
    settings = Settings(home=root / "home", argon2_time_cost=1, argon2_memory_kib=8, duckdb_threads=2)
    warehouse = Warehouse(settings)
    warehouse.init()
    warehouse.load_directory(root / "district")
    warehouse.load_directory(root / "canvas")
    store_features(warehouse, kinds=("k12",))  # the district pages read K-12 features
    with warehouse.connect() as con:
        con.execute(RISK_SQL)
        refresh_latest(con)  # what each scoring run maintains for the dashboards
    clock = StepClock()
    store = GovernanceStore(settings, clock=clock)
    with warehouse.connect(read_only=True) as con:
        accounts = {a.role: a for a in create_demo_accounts(store, con)}
        targets = demo_targets(con)
    app = create_app(settings, store=store)
    return WebWorld(settings, store, clock, accounts, targets, app)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebWorld]:
    w = build_world(tmp_path_factory.mktemp("webworld"))
    yield w
    w.app.state.edsight.queries.reader.close()
    w.store.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def live(world: WebWorld) -> Iterator[LiveServer]:
    with LiveServer(world.app) as server:
        yield server
