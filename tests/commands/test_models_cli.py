"""`edsight models cross-validate` keeps the DESIGN.md contract on any student file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from edsight.cli import app

runner = CliRunner()


def test_contract_and_grouped_folds(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 600
    student = np.repeat(np.arange(n // 3), 3)
    risk = rng.normal(size=n // 3)[student]
    frame = pd.DataFrame(
        {
            "student": student,
            "absences": rng.poisson(np.exp(1 + 0.6 * risk)),
            "gpa": 3 - 0.5 * risk + rng.normal(0, 0.3, n),
            "sex": rng.choice(["F", "M"], n),
            "outcome": np.where(risk + rng.normal(0, 0.7, n) > 0.8, "dropout", "stayed"),
        }
    )
    path = tmp_path / "students.csv"
    frame.to_csv(path, index=False)
    args = ["models", "cross-validate", "--table", str(path), "--target", "outcome", "--positive", "dropout"]
    result = runner.invoke(app, [*args, "--id", "student", "--group", "sex", "--folds", "3", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert {"auc", "pr_auc", "brier", "by_group"} <= set(payload)
    assert payload["auc"] > 0.75
    assert set(payload["by_group"]["sex"]) == {"F", "M"}
    assert payload["split"]["method"] == "StratifiedGroupKFold"
    assert "sex" in payload["excluded_protected"]
    bad = runner.invoke(app, [*args[:-1], "graduated"])
    assert bad.exit_code == 2
    assert bad.output.startswith("Error: ")
