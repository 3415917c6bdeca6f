"""`edsight models train|evaluate|score|list` on a generated Canvas warehouse, and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edsight.cli import app
from edsight.config import Settings
from edsight.features.labels import store_labels
from edsight.features.weekly import store_features
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    write_canvas(root / "files", 80, seed=4)
    wh = Warehouse(Settings(home=root / "home"))
    wh.init()
    wh.load_directory(root / "files")
    store_features(wh, kinds=("lms",))
    store_labels(wh, kinds=("lms",))
    return root / "home"


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["models", *args])
    return result.exit_code, result.output


def test_train_score_list_and_rescore(home: Path) -> None:
    code, out = run("train", "--kind", "lms", "--target", "will_disengage", "--home", str(home), "--json")
    assert code == 0, out
    trained = json.loads(out)
    assert trained["model_id"] == "lms-will_disengage-h4:1"
    assert trained["metrics"]["n_positive"] > 0
    assert (Path(trained["path"]) / "MODEL_CARD.md").is_file()

    args = ["score", "--as-of", "2024-10-05", "--kind", "lms", "--home", str(home), "--json"]
    code, out = run(*args)
    assert code == 0, out
    first = json.loads(out)
    assert first["rows"] > 0
    assert first["as_of"] == "2024-10-05"
    code, out = run(*args)
    assert code == 0
    assert json.loads(out)["rows"] == first["rows"]
    with Warehouse(Settings(home=home)).connect(read_only=True) as con:
        stored = con.execute("SELECT count(*), min(probability), max(probability) FROM risk_score").fetchone()
    assert stored is not None
    assert stored[0] == first["rows"]
    assert 0 <= stored[1] <= stored[2] <= 1

    code, out = run("list", "--home", str(home), "--json")
    assert code == 0
    assert [(m["name"], m["version"]) for m in json.loads(out)] == [("lms-will_disengage-h4", "1")]
    code, out = run("list", "--home", str(home))
    assert code == 0
    assert "lms-will_disengage-h4:1" in out


def test_evaluate_json(home: Path) -> None:
    args = ["evaluate", "--kind", "lms", "--target", "will_miss_assignments", "--folds", "3"]
    code, out = run(*args, "--report-week", "8", "--home", str(home), "--json")
    assert code == 0, out
    r = json.loads(out)["targets"]["will_miss_assignments"]
    assert {"auc", "pr_auc", "brier", "ece", "top_k", "baseline", "gain", "lead_time", "fairness"} <= set(r)
    assert r["report_weeks"] == [8]
    code, out = run(*args, "--report-week", "8", "--home", str(home))
    assert code == 0
    assert out.startswith("will_miss_assignments: AUC ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--kind", "lms", "--target", "dropout_1y"], "unknown target 'dropout_1y' for kind 'lms'"),
        (["train", "--kind", "college", "--target", "x"], "unknown kind 'college'"),
        (["evaluate", "--kind", "lms", "--target", "will_dropout", "--week", "0"], "weeks must be positive"),
        (["score", "--as-of", "2024-10-05", "--kind", "k12"], "no trained k12 models"),
        (["score", "--as-of", "2024-10-05", "--model", "nope"], "no saved model 'nope'"),
    ],
)
def test_bad_input_exits_2_with_one_line(home: Path, args: list[str], message: str) -> None:
    code, out = run(*args, "--home", str(home))
    assert code == 2, out
    assert out.startswith("Error: ")
    assert message in out
    assert out.count("\n") == 1


def test_no_features_yet_tells_to_build_them(tmp_path: Path) -> None:
    Warehouse(Settings(home=tmp_path / "h")).init()
    code, out = run("train", "--kind", "k12", "--target", "dropout_1y", "--home", str(tmp_path / "h"))
    assert code == 2
    assert "run `edsight features build --kind k12` first" in out
