"""One definition, two engines: DuckDB and Spark give the same features, labels, aggregates, scores.

Spark runs in local mode, one session for the whole test session; the data are small
(a district of 300 students over 2 years, a Canvas term of 100 students). Tests that start
Spark are marked ``spark`` and skip when Java or pyspark is missing.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from edsight.commands.engine import build_features_with_engine, resolve_engine
from edsight.config import Settings
from edsight.errors import InvalidInput, WarehouseError
from edsight.features._weekly_k12 import K12_SQL
from edsight.features.on_engine import k12_features, k12_labels, lms_features
from edsight.features.weekly import build_k12_features
from edsight.models._risk_model import RiskModel
from edsight.models.distributed import score_distributed
from edsight.models.registry import save_model
from edsight.schema import CANONICAL
from edsight.store._transpile import to_spark
from edsight.store.aggregates import AGGREGATES, RISK_SCORES_VIEW, aggregate
from edsight.store.engine import (
    DuckDBEngine,
    Engine,
    SparkEngine,
    engine_from_settings,
    lake_tables,
    result_differences,
)
from edsight.store.lake import export_lake
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas
from edsight.synth.district import write_district

# PySpark 4.3 warns that it does not yet fully support pandas 3; the paths used here go through Arrow.
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")

HAVE_SPARK = importlib.util.find_spec("pyspark") is not None
HAVE_JAVA = shutil.which("java") is not None
needs_spark = pytest.mark.skipif(
    not (HAVE_SPARK and HAVE_JAVA),
    reason="Spark tests need pyspark (pip install 'edsight[spark]') and Java 17+ on PATH",
)
FEATURES = [
    "attendance_rate",
    "attendance_rate_4w",
    "incidents_4w",
    "tardies",
    "grade_level",
    "prior_math_scale_score",
]


def same_types(a: pa.Table, b: pa.Table) -> None:
    assert [(f.name, f.type) for f in a.schema] == [(f.name, f.type) for f in b.schema]


def assert_same(a: pa.Table, b: pa.Table, keys: tuple[str, ...] | list[str]) -> None:
    same_types(a, b)
    assert a.num_rows > 0
    assert result_differences(a, b, keys) == []


# --- data -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def district(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    root = tmp_path_factory.mktemp("engine_district")
    write_district(root / "files", 300, n_years=2, n_schools=3, seed=11)
    wh = Warehouse(Settings(home=root / "home"))
    wh.init()
    wh.load_directory(root / "files")
    export_lake(wh, wh.settings.lake_path)
    export_lake(wh, root / "lake_partitioned", partitioned=True)
    return wh


@pytest.fixture(scope="session")
def canvas(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    root = tmp_path_factory.mktemp("engine_canvas")
    write_canvas(root / "files", 100, seed=3)
    wh = Warehouse(Settings(home=root / "home"))
    wh.init()
    wh.load_directory(root / "files")
    export_lake(wh, wh.settings.lake_path)
    return wh


@pytest.fixture(scope="session")
def spark_session() -> Iterator[object]:
    if not (HAVE_SPARK and HAVE_JAVA):
        pytest.skip("Spark tests need pyspark (pip install 'edsight[spark]') and Java 17+ on PATH")
    session = SparkEngine.start_session("local[2]", shuffle_partitions=2, driver_memory="1g")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def engines(district: Warehouse, spark_session: object) -> Iterator[tuple[Engine, Engine]]:
    """DuckDB and Spark on the district's lake, each with its own K-12 features as a table."""
    duck, spark = DuckDBEngine(), SparkEngine(session=spark_session.newSession())  # type: ignore[attr-defined]
    for engine in (duck, spark):
        engine.register_lake(district.settings.lake_path)
        engine.create_table("weekly_features_k12", K12_SQL, {"as_of": None})
    yield duck, spark
    duck.close()
    spark.close()


# --- transpilation (no Spark needed) -------------------------------------------------------------
def test_parameters_become_typed_literals() -> None:
    sql = to_spark(
        "SELECT * FROM t WHERE $as_of IS NULL OR d <= $as_of AND x > $n", {"as_of": date(2024, 5, 1), "n": 3}
    )
    assert "CAST('2024-05-01' AS DATE)" in sql
    assert "x > 3" in sql
    assert "NULL IS NULL" in to_spark("SELECT $as_of IS NULL", {"as_of": None})


def test_missing_or_odd_parameters_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"needs parameter\(s\) \['as_of'\]"):
        to_spark("SELECT $as_of")
    with pytest.raises(InvalidInput, match="unsupported value type list"):
        to_spark("SELECT $x", {"x": [1]})
    with pytest.raises(InvalidInput, match="cannot translate"):
        to_spark("SELECT FROM WHERE (")


def test_rewrites_where_the_dialects_differ() -> None:
    sql = to_spark("SELECT epoch_us(ts), CAST(unnest(range(1, n + 1)) AS INTEGER) AS w, a // 7 FROM t")
    assert "UNIX_MICROS(CAST(ts AS TIMESTAMP_LTZ))" in sql
    assert "EXPLODE(CAST(" in sql
    assert "AS ARRAY<INT>)" in sql
    assert "a DIV 7" in sql


# --- DuckDB engine, lake layouts, settings (no Spark needed) ------------------------------------
def test_duckdb_engine_on_the_lake_equals_the_warehouse(district: Warehouse) -> None:
    with DuckDBEngine() as lake, DuckDBEngine.for_warehouse(district) as warehouse:
        lake.register_lake(district.settings.lake_path)
        a = lake.to_arrow(k12_features(lake))
        b = warehouse.to_arrow(k12_features(warehouse))
    assert_same(a, b, CANONICAL["weekly_features_k12"].primary_key)
    assert a.num_rows == len(build_k12_features(district))


def test_partitioned_lake_has_hive_folders_and_the_same_rows(district: Warehouse, tmp_path: Path) -> None:
    part = district.settings.home.parent / "lake_partitioned"
    found = lake_tables(part)
    assert found["school_enrollment"].is_dir()
    assert found["person"].is_file()
    years = sorted(p.name for p in found["school_enrollment"].iterdir())
    assert years == ["school_year=2021", "school_year=2022"]
    assert all(p.name.startswith("school_id=") for p in (found["school_enrollment"] / years[0]).iterdir())
    flat, hive = DuckDBEngine(), DuckDBEngine()
    flat.register_lake(district.settings.lake_path)
    hive.register_lake(part)
    for table in ("school_enrollment", "attendance", "assessment_result", "section"):
        a = flat.to_arrow(flat.sql(f"SELECT * FROM {table}"))
        b = hive.to_arrow(hive.sql(f"SELECT * FROM {table}"))
        assert_same(a, b, CANONICAL[table].primary_key)
    flat.close()
    hive.close()
    # switching layouts replaces the table's other layout
    again = export_lake(district, tmp_path / "lake", partitioned=True)
    export_lake(district, tmp_path / "lake")
    assert (tmp_path / "lake" / "attendance.parquet").is_file()
    assert not (tmp_path / "lake" / "attendance").exists()
    assert again["attendance"] == flat_count(district, "attendance")


def flat_count(warehouse: Warehouse, table: str) -> int:
    return warehouse.counts()[table]


def test_write_parquet_partitioned_round_trip(district: Warehouse, tmp_path: Path) -> None:
    with DuckDBEngine() as duck:
        duck.register_lake(district.settings.lake_path)
        rel = duck.sql("SELECT person_id, school_id, school_year, grade_level FROM school_enrollment")
        duck.write_parquet(rel, tmp_path / "out", partition_by=["school_year"])
        duck.register_parquet("school_enrollment_copy", tmp_path / "out")
        back = duck.to_pandas(duck.sql("SELECT * FROM school_enrollment_copy"))
        want = duck.to_pandas(rel)
    # declared types come back for a canonical table; a copy under another name gets strings
    assert back["school_year"].map(type).eq(str).all()
    assert sorted(back["school_year"].astype(int)) == sorted(want["school_year"])
    assert len(back) == len(want)


def test_settings_choose_the_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, district: Warehouse
) -> None:
    monkeypatch.setenv("EDSIGHT_ENGINE", "spark")
    monkeypatch.setenv("EDSIGHT_SPARK_MASTER", "spark://example:7077")
    settings = Settings(home=tmp_path / "nowhere")
    assert (settings.engine, settings.spark_master) == ("spark", "spark://example:7077")
    with pytest.raises(WarehouseError, match="run `edsight lake export` first"):
        engine_from_settings(settings)
    assert resolve_engine(settings, None) == "spark"
    assert resolve_engine(settings, "duckdb") == "duckdb"
    with pytest.raises(InvalidInput, match="--engine postgres: expected one of duckdb, spark"):
        resolve_engine(settings, "postgres")
    monkeypatch.setenv("EDSIGHT_ENGINE", "postgres")
    with pytest.raises(ValueError, match="engine"):
        Settings(home=tmp_path)
    with engine_from_settings(district.settings, "duckdb") as duck:
        assert duck.name == "duckdb"
        assert (
            duck.to_pandas(duck.sql("SELECT count(*) AS n FROM person"))["n"][0]
            == district.counts()["person"]
        )


def test_unknown_aggregate_or_parameter() -> None:
    with DuckDBEngine() as duck:
        with pytest.raises(InvalidInput, match=r"needs parameter\(s\) \['as_of'\]"):
            duck.sql(K12_SQL)
        with pytest.raises(InvalidInput, match="unknown aggregate 'nope'"):
            aggregate(duck, "nope")
        with pytest.raises(InvalidInput, match="takes parameters"):
            aggregate(duck, "scale_scores", as_of=None)


# --- DuckDB vs Spark ------------------------------------------------------------------------------
@pytest.mark.spark
@needs_spark
def test_k12_features_agree(engines: tuple[Engine, Engine]) -> None:
    duck, spark = engines
    keys = CANONICAL["weekly_features_k12"].primary_key
    a = duck.to_arrow(duck.sql("SELECT * FROM weekly_features_k12"))
    b = spark.to_arrow(spark.sql("SELECT * FROM weekly_features_k12"))
    assert_same(a, b, keys)
    # with a cut-off date, too (the parameter path)
    cut = date(2022, 1, 15)
    assert_same(
        duck.to_arrow(k12_features(duck, as_of=cut)), spark.to_arrow(k12_features(spark, as_of=cut)), keys
    )


@pytest.mark.spark
@needs_spark
def test_k12_labels_agree(engines: tuple[Engine, Engine]) -> None:
    duck, spark = engines
    a, b = duck.to_arrow(k12_labels(duck)), spark.to_arrow(k12_labels(spark))
    assert_same(a, b, CANONICAL["labels_k12"].primary_key)
    assert pd.Series(a.column("dropout_1y").to_pylist()).notna().any()


@pytest.mark.spark
@needs_spark
@pytest.mark.parametrize("name", ["abc_indicators", "scale_scores"])
def test_aggregates_agree(engines: tuple[Engine, Engine], name: str) -> None:
    duck, spark = engines
    a, b = duck.to_arrow(aggregate(duck, name)), spark.to_arrow(aggregate(spark, name))
    assert_same(a, b, AGGREGATES[name].keys)


@pytest.mark.spark
@needs_spark
def test_distributed_scoring_gives_identical_probabilities(
    engines: tuple[Engine, Engine], tmp_path: Path
) -> None:
    duck, spark = engines
    train = duck.to_pandas(duck.sql("SELECT * FROM weekly_features_k12"))
    model = RiskModel(n_estimators=20, calibration_folds=2).fit(
        train[FEATURES], (train["f_count"] > 0).astype(int)
    )
    save_model(model, name="k12_test", home=tmp_path)
    keep = ["person_id", "school_year", "week", "school_id"]
    scored = {}
    for engine in (duck, spark):
        features = engine.sql("SELECT * FROM weekly_features_k12")
        result = score_distributed(
            engine, features, model="k12_test", home=tmp_path, keep=keep, target="f_any"
        )
        scored[engine.name] = engine.to_arrow(result)
        engine.register_result(RISK_SCORES_VIEW, result)
    a, b = scored["duckdb"], scored["spark"]
    assert_same(a, b, ["person_id", "school_year", "week"])
    da = a.to_pandas().sort_values(["person_id", "school_year", "week"])
    db = b.to_pandas().sort_values(["person_id", "school_year", "week"])
    assert (da["probability"].to_numpy() == db["probability"].to_numpy()).all()  # identical, not close
    assert set(da["model_id"]) == {"k12_test:1"}
    assert da["probability"].between(0, 1).all()
    agg_a = duck.to_arrow(aggregate(duck, "risk_distribution", high=0.4))
    agg_b = spark.to_arrow(aggregate(spark, "risk_distribution", high=0.4))
    assert_same(agg_a, agg_b, AGGREGATES["risk_distribution"].keys)


@pytest.mark.spark
@needs_spark
def test_partitioned_lake_reads_the_same_on_spark(district: Warehouse, spark_session: object) -> None:
    spark = SparkEngine(session=spark_session.newSession())  # type: ignore[attr-defined]
    duck = DuckDBEngine()
    try:
        spark.register_lake(district.settings.home.parent / "lake_partitioned")
        duck.register_lake(district.settings.lake_path)
        for table in ("school_enrollment", "attendance"):
            a = duck.to_arrow(duck.sql(f"SELECT * FROM {table}"))
            b = spark.to_arrow(spark.sql(f"SELECT * FROM {table}"))
            assert_same(a, b, CANONICAL[table].primary_key)
    finally:
        spark.close()
        duck.close()


@pytest.mark.spark
@needs_spark
def test_lms_features_agree(canvas: Warehouse, spark_session: object) -> None:
    spark = SparkEngine(session=spark_session.newSession())  # type: ignore[attr-defined]
    try:
        spark.register_lake(canvas.settings.lake_path)
        with DuckDBEngine.for_warehouse(canvas) as duck:
            a = lms_features(duck)
        b = lms_features(spark, pairs_per_slice=150)  # several slices, so the cogroup really splits
        assert_same(a, b, CANONICAL["weekly_features_lms"].primary_key)
    finally:
        spark.close()


def stored(warehouse: Warehouse, table: str) -> pa.Table:
    with DuckDBEngine.for_warehouse(warehouse) as duck:
        return duck.to_arrow(duck.sql(f"SELECT * FROM {table}"))


@pytest.mark.spark
@needs_spark
def test_build_on_spark_stores_what_duckdb_stores(
    canvas: Warehouse, spark_session: object, tmp_path: Path
) -> None:
    settings = canvas.settings.model_copy(update={"engine": "spark", "spark_master": "local[2]"})
    rows = build_features_with_engine(settings, resolve_engine(settings, None), kinds=("lms",), out=tmp_path)
    on_spark = {t: stored(canvas, t) for t in ("weekly_features_lms", "labels_lms")}
    assert (tmp_path / "weekly_features_lms").is_dir()
    assert build_features_with_engine(canvas.settings, "duckdb", kinds=("lms",)) == rows
    for table, got in on_spark.items():
        assert_same(got, stored(canvas, table), CANONICAL[table].primary_key)
    assert rows["labels_lms"] > 0
