"""Shared fixtures: a data home per test and a tiny hand-written canonical batch."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from edsight.config import Settings
from edsight.store.warehouse import Warehouse

Rows = list[dict[str, object]]

TINY: dict[str, Rows] = {
    "organization": [
        {"org_id": "d1", "name": "District One", "org_type": "district"},
        {
            "org_id": "s1",
            "name": "Elm Elementary",
            "org_type": "school",
            "parent_org_id": "d1",
            "school_level": "elementary",
            "grade_low": 0,
            "grade_high": 5,
        },
        {
            "org_id": "s2",
            "name": "Oak Middle",
            "org_type": "school",
            "parent_org_id": "d1",
            "school_level": "middle",
            "grade_low": 6,
            "grade_high": 8,
        },
    ],
    "person": [
        {
            "person_id": f"p{i}",
            "role": "student",
            "given_name": f"Given{i}",
            "family_name": f"Family{i}",
            "birth_date": "2014-05-0" + str(i % 9 + 1),
            "local_id": str(1000 + i),
            "directory_opt_out": "false",
        }
        for i in range(1, 7)
    ],
    "attendance": [
        {"person_id": "p1", "school_id": "s1", "date": "2024-09-03", "status": "absent_excused"},
        {"person_id": "p1", "school_id": "s1", "date": "2024-09-04", "status": "tardy"},
        {"person_id": "p2", "school_id": "s1", "date": "2024-09-03", "status": "absent_unexcused"},
        {"person_id": "p5", "school_id": "s2", "date": "2024-09-10", "status": "absent_excused"},
    ],
}


def write_csv(path: Path, rows: Rows, columns: list[str] | None = None) -> Path:
    """Write dict rows to CSV (missing keys become empty cells)."""
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def warehouse(settings: Settings) -> Warehouse:
    wh = Warehouse(settings)
    wh.init()
    return wh


@pytest.fixture
def make_batch(tmp_path: Path) -> Callable[..., Path]:
    """Write a batch folder: ``make_batch(name, organization=rows, ...)``."""

    def make(name: str = "batch", **tables: Rows) -> Path:
        folder = tmp_path / name
        for table, rows in tables.items():
            write_csv(folder / f"{table}.csv", rows)
        return folder

    return make


@pytest.fixture
def tiny_batch(make_batch: Callable[..., Path]) -> Path:
    return make_batch("tiny", **TINY)


def kill_when_marked(code: str, *args: str, marker: Path, timeout: float = 120.0) -> None:
    """Run ``python -c code *args``; SIGKILL it as soon as it creates ``marker``.

    The child signals that it reached the point to interrupt by creating the marker
    file (and then waits); the kill is a real SIGKILL, as a crash or an OOM kill would be.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            assert proc.poll() is None, "the child exited before the kill point"
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
