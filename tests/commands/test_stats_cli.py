"""`edsight stats gaps|trends` over the warehouse and over a plain file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edsight.cli import app
from edsight.synth.district import write_district

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("stats")
    write_district(base / "d", 2500, n_years=3, n_schools=4, seed=8)
    assert runner.invoke(app, ["load", str(base / "d"), "--home", str(base / "h")]).exit_code == 0
    return base / "h"


def test_gaps_from_the_warehouse_hide_small_cells(home: Path) -> None:
    args = ["stats", "gaps", "--subgroup", "race_ethnicity", "--home", str(home), "--json"]
    shown = json.loads(runner.invoke(app, args).output)
    everything = json.loads(runner.invoke(app, [*args, "--include-small-cells"]).output)
    assert shown
    assert all(min(r["n_focal"], r["n_reference"]) >= 10 for r in shown)
    assert len(everything) > len(shown)  # school x grade x race cells include small ones
    disadvantaged = json.loads(
        runner.invoke(
            app,
            [
                "stats",
                "gaps",
                "--subgroup",
                "economically_disadvantaged",
                "--by",
                "subject",
                "--home",
                str(home),
                "--json",
            ],
        ).output
    )
    assert {r["subject"] for r in disadvantaged} == {"math", "reading"}
    assert all(r["hedges_g"] < -0.2 for r in disadvantaged)  # the generator's gap is about -0.45 SD


def test_trends_forecast_one_year_ahead(home: Path) -> None:
    rows = json.loads(runner.invoke(app, ["stats", "trends", "--home", str(home), "--json"]).output)
    years = {r["school_year"] for r in rows}
    assert years == {2021, 2022, 2023, 2024}
    assert all(r["is_forecast"] == (r["school_year"] == 2024) for r in rows)


def test_gaps_from_a_file_and_bad_input(tmp_path: Path) -> None:
    data = tmp_path / "scores.csv"
    rows = ["sex,scale_score,subject,school_year"]
    rows += [
        f"{'F' if i % 2 else 'M'},{500 + (i % 7) * 10 + (5 if i % 2 else 0)},math,2024" for i in range(80)
    ]
    data.write_text("\n".join(rows) + "\n")
    result = runner.invoke(
        app, ["stats", "gaps", "--subgroup", "sex", "--by", "subject", "--data", str(data), "--json"]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["focal"] == "F"
    assert row["n_focal"] == row["n_reference"] == 40
    missing = runner.invoke(app, ["stats", "gaps", "--subgroup", "sex", "--data", str(tmp_path / "x.csv")])
    assert missing.exit_code == 2
    assert "no such file" in missing.output


def test_hlm_prints_the_lme4_contract() -> None:
    data = Path(__file__).parents[1] / "data" / "multilevel"
    reference = json.loads((data / "lme4_reference.json").read_text())["sleepstudy"]
    result = runner.invoke(
        app,
        ["stats", "hlm", "--data", str(data / "sleepstudy.csv"), "--formula", reference["formula"], "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert set(payload) == {"fixef", "vcov", "reml_crit", "seconds"}
    for name, value in reference["fixef"].items():
        assert abs(payload["fixef"][name] - value) < 1e-3
    assert [(r["grp"], r["var1"], r["var2"]) for r in payload["vcov"]] == [
        (r["grp"], r["var1"], r["var2"]) for r in reference["vcov"]
    ]
    bad = runner.invoke(
        app, ["stats", "hlm", "--data", str(data / "sleepstudy.csv"), "--formula", "Reaction ~ Days"]
    )
    assert bad.exit_code == 2
    assert bad.output.startswith("Error: ")


def test_vam_tables_from_the_warehouse(home: Path) -> None:
    rows = json.loads(
        runner.invoke(app, ["stats", "vam", "--table", "school", "--home", str(home), "--json"]).output
    )
    assert rows
    assert all(r["lower"] <= r["effect"] <= r["upper"] for r in rows)
    bad = runner.invoke(app, ["stats", "vam", "--table", "principal", "--home", str(home)])
    assert bad.exit_code == 2


def test_sgp_on_a_sample_of_the_sgp_package_data(tmp_path: Path) -> None:
    import pandas as pd

    source = Path(__file__).parents[1] / "data" / "sgp" / "sgpData.csv"
    sample = tmp_path / "wide.csv"
    pd.read_csv(source).sample(8000, random_state=1).to_csv(sample, index=False)
    result = runner.invoke(app, ["stats", "sgp", "--data", str(sample), "--max-order", "1", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert 45 <= payload["by"][0]["median_sgp"] <= 55
    assert sum(r["n"] for r in payload["by"]) > 1000


def test_plots_from_the_command_line(home: Path, tmp_path: Path) -> None:
    gaps_png = tmp_path / "gaps.png"
    result = runner.invoke(
        app,
        [
            "stats",
            "gaps",
            "--subgroup",
            "disability",
            "--by",
            "subject",
            "--home",
            str(home),
            "--plot",
            str(gaps_png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert gaps_png.read_bytes()[:4] == b"\x89PNG"
    data = Path(__file__).parents[1] / "data" / "multilevel" / "sleepstudy.csv"
    hlm = ["stats", "hlm", "--data", str(data), "--formula", "Reaction ~ Days + (Days | Subject)"]
    no_axes = runner.invoke(app, [*hlm, "--plot", str(tmp_path / "g.svg")])
    assert no_axes.exit_code == 2
    assert "--time and --group" in no_axes.output
    ok = runner.invoke(app, [*hlm, "--plot", str(tmp_path / "g.svg"), "--time", "Days", "--group", "Subject"])
    assert ok.exit_code == 0, ok.output
    assert "<svg" in (tmp_path / "g.svg").read_text()
