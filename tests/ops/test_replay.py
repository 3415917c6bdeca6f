"""A generated term replayed school day by school day: alerts, interventions, an effectiveness table."""

from __future__ import annotations

from pathlib import Path

import pytest

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.ops.effectiveness import CAVEAT
from edsight.ops.replay import replay
from edsight.store.warehouse import Warehouse


@pytest.mark.slow
def test_replayed_term_produces_alerts_interventions_and_effects(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = replay(home, weeks=10, students=150, seed=3, capacity=6, effect=0.9)
    # 10 weeks of school-day mornings, plus the run before the term starts
    assert len(result.runs) == 1 + 10 * 5
    assert result.alerts > 0
    assert result.interventions > 0
    assert result.true_effect <= 0  # handing in missing work can only lower the missing count
    assert set(result.effectiveness["method"]) == {"matching", "ipw"}
    assert (result.effectiveness["caveat"] == CAVEAT).all()
    assert (result.effectiveness["ci_low"] <= result.effectiveness["ci_high"]).all()
    wh = Warehouse(Settings(home=home))
    with wh.connect(read_only=True) as con:
        statuses = dict(con.execute("SELECT status, count(*) FROM intervention GROUP BY 1").fetchall())
        failed = con.execute("SELECT count(*) FROM ops_run WHERE status = 'failed'").fetchall()
        scored_days = con.execute("SELECT count(DISTINCT as_of) FROM risk_score").fetchall()
        logged = con.execute("SELECT count(DISTINCT intervention_id) FROM intervention_note").fetchall()
    # one case per student, support and start date (two flagged courses the same day share it)
    assert set(statuses) == {"closed"}
    assert 0 < statuses["closed"] <= result.interventions
    assert failed == [(0,)]
    assert scored_days[0][0] >= 10
    assert logged == [(statuses["closed"],)]


def test_replay_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="weeks must be between 1 and 16"):
        replay(tmp_path, weeks=20)
    with pytest.raises(InvalidInput, match="effect is a probability"):
        replay(tmp_path, weeks=4, effect=1.5)
