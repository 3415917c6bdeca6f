"""Settings, read once from the environment (prefix ``EDSIGHT_``) and arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

WAREHOUSE_FILE = "warehouse.duckdb"
LAKE_DIR = "lake"
GOVERNANCE_FILE = "governance.sqlite3"
AUDIT_ANCHOR_FILE = "audit.anchor"
SECRETS_DIR = "secrets"


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
    # -- engine (docs/scaling.md) ------------------------------------------------------------
    engine: Literal["duckdb", "spark"] = Field(
        default="duckdb",
        description="Query engine of features, labels, aggregates and scoring: duckdb (in-process) "
        "or spark (reads the Parquet lake).",
    )
    spark_master: str | None = Field(
        default=None,
        description="Spark master URL for engine=spark, e.g. spark://host:7077 (default: local[*]).",
    )
    # -- governance (identity, sessions, audit, suppression) -------------------------------
    session_idle_timeout_s: int = Field(
        default=30 * 60, ge=60, description="A session unused this long (seconds) expires."
    )
    session_absolute_timeout_s: int = Field(
        default=12 * 3600, ge=60, description="A session expires this long (seconds) after login."
    )
    login_attempts_limit: int = Field(
        default=5,
        ge=1,
        description="Failed logins allowed per username and client within the window "
        "(four times as many per username or per client alone).",
    )
    login_attempts_window_s: int = Field(
        default=15 * 60, ge=1, description="Window (seconds) over which failed logins are counted."
    )
    min_cell_n: int = Field(
        default=10, ge=1, description="Smallest count published in an aggregate (small-cell suppression)."
    )
    audit_key: SecretStr | None = Field(
        default=None,
        description="Key of the audit anchor and audit pseudonyms (default: HOME/secrets/audit.key, "
        "created on first use).",
    )
    argon2_time_cost: int = Field(default=3, ge=1, description="Argon2id passes for password hashes.")
    argon2_memory_kib: int = Field(
        default=64 * 1024, ge=8, description="Argon2id memory (KiB) for password hashes."
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

    @property
    def governance_path(self) -> Path:
        """The SQLite file of accounts, sessions, grants, the audit log and the disclosure ledger."""
        return self.home / GOVERNANCE_FILE

    @property
    def audit_anchor_path(self) -> Path:
        """The audit anchor: the signed head of the audit chain, kept outside both databases."""
        return self.home / AUDIT_ANCHOR_FILE

    @property
    def secrets_path(self) -> Path:
        """Folder of key files created on first use (mode 0700, files 0600)."""
        return self.home / SECRETS_DIR


def load_settings(home: Path | None = None) -> Settings:
    """Settings from the environment, with an explicit ``home`` taking precedence."""
    if home is not None:
        return Settings(home=home)
    return Settings()
