"""The daily run on a real warehouse: idempotent, resumable after SIGKILL, exclusive."""

from __future__ import annotations

import fcntl
from datetime import date
from pathlib import Path

import pytest
from tests.conftest import kill_when_marked

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.ops.daily import STEPS, OpsConfig, load_ops_config, run_daily
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas

TODAY = date(2024, 11, 4)  # week 12 of the generated term: labels exist for weeks 1-8
CONFIG = OpsConfig(kinds=("lms",), targets={"lms": ("will_fail_academically",)})
TABLES = ("weekly_features_lms", "labels_lms", "risk_score", "alert", "submission", "person")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    write_canvas(home / "incoming" / "canvas-export", 160, seed=5, fmt="parquet")
    return home


def fingerprints(home: Path) -> dict[str, str]:
    wh = Warehouse(Settings(home=home))
    return {t: wh.checksum(t) for t in TABLES}


def test_first_run_does_everything_and_a_second_changes_nothing(home: Path) -> None:
    report = run_daily(Settings(home=home), TODAY, config=CONFIG)
    status = {k: v["status"] for k, v in report.steps.items()}
    assert status == {
        "ingest": "done",
        "features": "done",
        "retrain": "done",
        "score": "done",
        "alerts": "done",
        "drift": "skipped",  # one scoring date so far
    }
    assert report.steps["retrain"]["models"][0]["action"] == "trained"
    assert report.steps["score"]["rows"]["lms"] > 0
    assert not any((home / "incoming").glob("canvas-export"))  # moved to incoming/done/<date>
    before = fingerprints(home)
    again = run_daily(Settings(home=home), TODAY, config=CONFIG)
    assert {v["status"] for v in again.steps.values()} == {"already done", "already skipped"}
    assert fingerprints(home) == before
    # Re-running the steps themselves (as after a crash) also leaves the same content.
    wh = Warehouse(Settings(home=home))
    with wh.connect() as con:
        con.execute("DELETE FROM ops_run WHERE step IN ('features', 'score', 'alerts')")
    rerun = run_daily(Settings(home=home), TODAY, config=CONFIG, only=("features", "score", "alerts"))
    assert {v["status"] for v in rerun.steps.values()} == {"done"}
    assert rerun.steps["alerts"]["alerts"] == 0
    assert fingerprints(home) == before
    # The next day: the model is not due, drift compares with yesterday's scores.
    nxt = run_daily(Settings(home=home), date(2024, 11, 5), config=CONFIG)
    assert nxt.steps["retrain"]["models"][0]["action"] == "not due"
    assert nxt.steps["drift"]["status"] == "done"


def test_killed_run_resumes_at_the_unfinished_step(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "at-score"
    code = (
        "import sys, time, pathlib, datetime\n"
        "from edsight.config import Settings\n"
        "from edsight.ops.daily import run_daily, OpsConfig\n"
        "marker = pathlib.Path(sys.argv[2])\n"
        "def hook(step):\n"
        "    if step == 'score':\n"
        "        marker.touch()\n"
        "        time.sleep(60)\n"
        "cfg = OpsConfig(kinds=('lms',), targets={'lms': ('will_fail_academically',)})\n"
        "run_daily(Settings(home=pathlib.Path(sys.argv[1])), datetime.date(2024, 11, 4), config=cfg,"
        " before_step=hook)\n"
    )
    kill_when_marked(code, str(home), str(marker), marker=marker)
    wh = Warehouse(Settings(home=home))
    with wh.connect(read_only=True) as con:
        states = dict(con.execute("SELECT step, status FROM ops_run").fetchall())
    assert states == {"ingest": "done", "features": "done", "retrain": "done"}  # score never marked started
    report = run_daily(Settings(home=home), TODAY, config=CONFIG)
    status = {k: v["status"] for k, v in report.steps.items()}
    assert status["ingest"] == status["features"] == status["retrain"] == "already done"
    assert status["score"] == "done"
    with wh.connect(read_only=True) as con:
        models = con.execute("SELECT count(DISTINCT model_id) FROM risk_score").fetchall()
    assert models == [(1,)]  # the crashed run's training was not repeated


def test_killed_inside_a_step_reruns_that_step(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "in-features"
    code = (
        "import sys, time, pathlib, datetime\n"
        "from edsight.config import Settings\n"
        "import edsight.ops.daily as daily\n"
        "marker = pathlib.Path(sys.argv[2])\n"
        "original = daily._RUNNERS['features']\n"
        "def slow(ctx):\n"
        "    original(ctx)\n"
        "    marker.touch()\n"
        "    time.sleep(60)\n"
        "daily._RUNNERS['features'] = slow\n"
        "cfg = daily.OpsConfig(kinds=('lms',), targets={'lms': ('will_fail_academically',)})\n"
        "daily.run_daily(Settings(home=pathlib.Path(sys.argv[1])), datetime.date(2024, 11, 4), config=cfg)\n"
    )
    kill_when_marked(code, str(home), str(marker), marker=marker)
    wh = Warehouse(Settings(home=home))
    with wh.connect(read_only=True) as con:
        states = dict(con.execute("SELECT step, status FROM ops_run").fetchall())
    assert states == {"ingest": "done", "features": "started"}
    report = run_daily(Settings(home=home), TODAY, config=CONFIG, only=("ingest", "features"))
    assert report.steps["features"]["status"] == "done"
    assert report.steps["ingest"]["status"] == "already done"


def test_a_second_run_is_refused_while_one_holds_the_lock(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.home.mkdir(parents=True)
    with (settings.home / "run-daily.lock").open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        with pytest.raises(InvalidInput, match="another daily run is in progress"):
            run_daily(settings, TODAY, config=CONFIG)
    report = run_daily(settings, TODAY, config=CONFIG)  # the lock is free again
    assert report.steps["ingest"]["status"] == "skipped"
    assert set(report.steps) == set(STEPS)


def test_config_file_errors_name_the_field(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert load_ops_config(settings) == OpsConfig()
    (tmp_path / "ops.yaml").write_text("retrain_every_days: 0\n")
    with pytest.raises(InvalidInput, match=r"ops\.yaml: retrain_every_days: Input should be greater"):
        load_ops_config(settings)
    (tmp_path / "ops.yaml").write_text("alerts: {threshold: 0.4, colour: red}\n")
    with pytest.raises(InvalidInput, match=r"alerts\.colour: Extra inputs are not permitted"):
        load_ops_config(settings)
    (tmp_path / "ops.yaml").write_text("kinds: [lms\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_ops_config(settings)
    with pytest.raises(InvalidInput, match="unknown step"):
        run_daily(settings, TODAY, config=CONFIG, only=("ingest", "dance"))
