"""One typed settings object for every entry point (CLI, server, Python API).

Values come, in order of precedence, from explicit arguments (CLI flags), environment variables
prefixed ``KLANTBEELD_`` and the defaults below. Nothing is read at import time: call
:func:`load_settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings for one Klantbeeld deployment. Every field is documented in docs/settings.md."""

    model_config = SettingsConfigDict(env_prefix="KLANTBEELD_", extra="ignore")

    home: Path = Field(Path("klantbeeld-data"), description="Data directory (DuckDB file, exports).")
    database_url: str | None = Field(
        None,
        description="postgresql://… for PostgreSQL, duckdb:///path or a file path for DuckDB. "
        "Default: klantbeeld.duckdb in the data directory.",
    )
    host: str = Field("127.0.0.1", description="Address `klantbeeld serve` binds to.")
    port: int = Field(8000, description="Port `klantbeeld serve` listens on.")

    dedup_window_hours: float = Field(24.0, gt=0, description="messageId de-duplication window.")
    max_message_bytes: int = Field(32 * 1024, gt=0, description="Largest accepted single message.")
    max_batch_bytes: int = Field(500 * 1024, gt=0, description="Largest accepted request body.")
    max_batch_messages: int = Field(2500, gt=0, description="Most messages in one batch.")
    commit_max_rows: int = Field(
        20_000, gt=0, description="Most events the writer groups into one commit."
    )
    postgres_pool_size: int = Field(8, gt=0, description="Connections per process (PostgreSQL).")
    ingest_processes: int = Field(
        0, ge=0, description="Worker processes that decode and check collection requests "
        "(0: in the server process). `klantbeeld serve` picks 1 on machines with 2 or more CPUs.",
    )

    identity_config: Path | None = Field(
        None, description="Identity rules (YAML): identifier types, limits, priority, blocked "
        "values, trait merge rules. Default: identity.yaml in the data directory, if present.",
    )
    resolve_identities: bool = Field(
        True, description="Resolve each event to a profile as it is stored (after each commit). "
        "Off: only `klantbeeld identity resolve` or `identity rebuild` resolve.",
    )

    resolve_share: float = Field(
        0.25, gt=0, le=1,
        description="While the writer is busy (half of the time or more in commits), the share "
        "of time real-time resolution (and the trait and segment updates after it) may take in "
        "the server process; the rest is collection's. Under a burst resolution falls behind "
        "and catches up after; under a lighter load it does not yield. 1: no limit.",
    )

    segments_config: Path | None = Field(
        None, description="Computed traits, declared segments and lifecycle thresholds (YAML). "
        "Default: segments.yaml in the data directory, if present.",
    )
    segment_refresh_minutes: float = Field(
        60.0, ge=0, description="How often the server recomputes time-windowed traits and every "
        "segment (time moves people in and out). 0: never on a schedule.",
    )

    privacy_config: Path | None = Field(
        None, description="Purposes, consent signal mapping, request deadlines, retention rules "
        "(YAML). Default: privacy.yaml in the data directory, if present.",
    )
    privacy_interval_minutes: float = Field(
        5.0, ge=0, description="How often the server works through pending data-subject "
        "requests. 0: never on a schedule.",
    )
    retention_interval_hours: float = Field(
        24.0, ge=0, description="How often the server applies the retention rules in "
        "privacy.yaml. 0: never on a schedule (`klantbeeld retention run`).",
    )

    predict_config: Path | None = Field(
        None, description="Predictive models: which run, their windows, horizons and options "
        "(YAML). Default: predict.yaml in the data directory, if present.",
    )
    predict_interval_hours: float = Field(
        24.0, ge=0, description="How often the server retrains the predictive models and "
        "rewrites their scores onto profiles. 0: never on a schedule (`klantbeeld predict run`).",
    )

    dmp_config: Path | None = Field(
        None, description="The DMP bridge: time to live of third-party segments (default, per "
        "source, per segment), ID sync TTL, partners (YAML). Default: dmp.yaml in the data "
        "directory, if present.",
    )
    dmp_expiry_interval_hours: float = Field(
        1.0, ge=0, description="How often the server deletes cookie segments and ID syncs whose "
        "time to live ran out. 0: never on a schedule (`klantbeeld dmp expire`).",
    )

    def dmp_config_path(self) -> Path:
        return self.dmp_config or self.home / "dmp.yaml"

    def predict_config_path(self) -> Path:
        return self.predict_config or self.home / "predict.yaml"

    def privacy_config_path(self) -> Path:
        return self.privacy_config or self.home / "privacy.yaml"

    def segments_config_path(self) -> Path:
        return self.segments_config or self.home / "segments.yaml"

    def identity_config_path(self) -> Path:
        return self.identity_config or self.home / "identity.yaml"

    def resolved_database_url(self) -> str:
        """The database URL in effect: the explicit one, or the DuckDB file in ``home``."""
        if self.database_url:
            return self.database_url
        return f"duckdb:///{(self.home / 'klantbeeld.duckdb').as_posix()}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with ``overrides`` (None values ignored) on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**given)
