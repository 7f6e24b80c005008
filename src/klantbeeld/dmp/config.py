"""``dmp.yaml``: how long third-party data lives and which partners may send it.

Third-party segments are kept briefly (90 days unless configured): per segment, per source, or the
default, in that order of precedence. Everything has a default; the file validates on load and a
mistake names the field it concerns.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config_files import load_yaml_model

if TYPE_CHECKING:
    from ..workspace import Workspace

MAX_TTL_DAYS = 3650
TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class DMPConfigError(ValueError):
    """dmp.yaml is invalid; the message names the field."""


def _days(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TTL_DAYS:
        raise ValueError(f"{where}: a whole number of days from 1 to {MAX_TTL_DAYS}, "
                         f"not {value!r}")
    return value


class DMPConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_ttl_days: int = Field(
        90, description="Days a third-party segment lives after a feed last sent it, unless the "
        "segment or its source has its own TTL.")
    source_ttl_days: dict[str, int] = Field(
        default_factory=dict, description="TTL in days per DMP source name (overrides the "
        "default).")
    segment_ttl_days: dict[str, int] = Field(
        default_factory=dict, description="TTL in days per segment id (overrides the source's "
        "and the default).")
    id_sync_ttl_days: int = Field(
        90, description="Days a partner id ↔ cookie pairing lives after it was last synced.")
    partners: list[str] = Field(
        default_factory=list, description="Partner names allowed to send ID syncs and "
        "partner-keyed feeds; empty: any partner.")

    @field_validator("default_ttl_days", "id_sync_ttl_days", mode="before")
    @classmethod
    def _whole_days(cls, value: Any, info) -> int:
        return _days(value, info.field_name)

    @field_validator("source_ttl_days", "segment_ttl_days", mode="before")
    @classmethod
    def _day_maps(cls, value: Any, info) -> dict[str, int]:
        # YAML reads `2072: 30` with an integer key: segment ids are strings everywhere else.
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"{info.field_name}: a mapping of name to days")
        return {str(k): _days(v, f"{info.field_name}.{k}") for k, v in value.items()}

    @field_validator("partners", mode="before")
    @classmethod
    def _partner_names(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError("partners: a list of partner names")
        names = [str(v) for v in value]
        bad = [n for n in names if not TOKEN.fullmatch(n)]
        if bad:
            raise ValueError(f"partners: {bad[0]!r} is not a plain name (letters, digits, "
                             "_ . : -, at most 64)")
        return names

    def ttl_days(self, segment_id: str, source: str) -> int:
        """The TTL of a segment sent by a source: per segment, else per source, else default."""
        if segment_id in self.segment_ttl_days:
            return self.segment_ttl_days[segment_id]
        return self.source_ttl_days.get(source, self.default_ttl_days)

    def check_partner(self, partner: str | None) -> None:
        """Refuse a partner name that is malformed or not in ``partners`` (when it is set)."""
        if partner is None:
            return
        if not TOKEN.fullmatch(partner):
            raise DMPConfigError(f"partner {partner!r} is not a plain name (letters, digits, "
                                 "_ . : -, at most 64)")
        if self.partners and partner not in self.partners:
            raise DMPConfigError(f"partner {partner!r} is not allowed; dmp.yaml lists: "
                                 f"{', '.join(self.partners)}")


def load_dmp_config(path: Path | None) -> DMPConfig:
    """The DMP settings in ``path`` (defaults when there is no file)."""
    return load_yaml_model(path, DMPConfig, DMPConfigError)


def config_path(ws: "Workspace") -> Path:
    """Where the workspace's dmp.yaml lives: the configured path, else the data directory."""
    return ws.settings.dmp_config_path()


def workspace_config(ws: "Workspace") -> DMPConfig:
    return load_dmp_config(config_path(ws))
