"""Settings, read once from the environment (prefix ``EDSIGHT_``) and arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

WAREHOUSE_FILE = "warehouse.duckdb"
LAKE_DIR = "lake"


class Settings(BaseSettings):
    """Where edsight keeps its data and how it runs.

    ``EDSIGHT_HOME`` sets the data home; everything edsight writes lives under it.
    """

    model_config = SettingsConfigDict(env_prefix="EDSIGHT_", extra="forbid")

    home: Path = Field(default=Path("edsight-data"), description="Data home directory.")
    duckdb_threads: int | None = Field(
        default=None, ge=1, description="DuckDB worker threads (default: all cores)."
    )
    duckdb_memory_limit: str = Field(
        default="4GB",
        description="DuckDB memory limit; past it DuckDB spills to HOME/tmp (keeps loads bounded).",
    )

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB file of the warehouse."""
        return self.home / WAREHOUSE_FILE

    @property
    def spill_path(self) -> Path:
        """Where DuckDB spills intermediate results that exceed the memory limit."""
        return self.home / "tmp"

    @property
    def lake_path(self) -> Path:
        """The default folder of the Parquet lake."""
        return self.home / LAKE_DIR


def load_settings(home: Path | None = None) -> Settings:
    """Settings from the environment, with an explicit ``home`` taking precedence."""
    if home is not None:
        return Settings(home=home)
    return Settings()
