"""Fixtures of the governance tests: fast password hashing and a clock tests can move."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edsight.config import Settings
from edsight.governance.identity import GovernanceStore


class FakeClock:
    """POSIX seconds that move only when a test says so."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def gov_settings(tmp_path: Path) -> Settings:
    # Cheap Argon2 parameters keep the tests fast; production uses the defaults.
    return Settings(home=tmp_path / "home", argon2_time_cost=1, argon2_memory_kib=8)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(gov_settings: Settings, clock: FakeClock) -> Iterator[GovernanceStore]:
    s = GovernanceStore(gov_settings, clock=clock)
    yield s
    s.close()
