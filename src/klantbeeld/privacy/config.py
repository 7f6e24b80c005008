"""``privacy.yaml``: purposes, how consent signals map onto them, request deadlines, retention.

Everything has a default (docs/privacy.md); the file validates on load and a mistake names the
field it concerns.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .tcf import DEFAULT_TCF_MAPPING

DEFAULT_PURPOSES = ("analytics", "personalisation", "email_marketing", "advertising",
                    "third_party_enrichment")


class PrivacyConfigError(ValueError):
    """privacy.yaml is invalid; the message names the field."""


class Purpose(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requires_consent: bool = Field(
        True, description="False: another lawful basis (legitimate interest) covers it; a profile "
        "without a consent entry is allowed, an explicit denial or withdrawal still blocks.")
    description: str = ""


class RetentionRule(BaseModel):
    """Keep matching data for ``keep_days`` after its time (events) or last update (traits)."""
    model_config = ConfigDict(extra="forbid")
    name: str
    keep_days: int = Field(ge=1)
    source: str | None = None
    channel: str | None = None
    event: str | None = None
    trait: str | None = None
    failed_events: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> "RetentionRule":
        if self.trait is not None and (self.source or self.channel or self.event):
            raise ValueError(f"retention {self.name!r}: a trait rule takes no source, channel "
                             "or event")
        if not (self.source or self.channel or self.event or self.trait or self.failed_events):
            raise ValueError(f"retention {self.name!r}: say what it applies to (source, channel, "
                             "event, trait or failed_events)")
        return self


def _default_purposes() -> dict[str, Purpose]:
    return {p: Purpose(requires_consent=p != "analytics") for p in DEFAULT_PURPOSES}


class PrivacyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purposes: dict[str, Purpose] = Field(default_factory=_default_purposes)
    marketing_purposes: list[str] = Field(
        default_factory=lambda: ["personalisation", "email_marketing", "advertising",
                                 "third_party_enrichment"],
        description="Withdrawn by an objection (Art. 21).")
    gpc_purposes: list[str] = Field(
        default_factory=lambda: ["advertising", "third_party_enrichment"],
        description="Withdrawn when a request carries Sec-GPC: 1.")
    tcf_purposes: dict[int, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_TCF_MAPPING.items()})
    request_expected_hours: int = Field(24, ge=1, description="Promised completion time.")
    flag_pending_after_days: int = Field(7, ge=1, description="`klantbeeld status` flags older.")
    retention: list[RetentionRule] = Field(default_factory=list)
    default_lawful_basis: Literal["consent", "legitimate_interest", "contract"] = "consent"

    @field_validator("purposes")
    @classmethod
    def _names(cls, value: dict[str, Purpose]) -> dict[str, Purpose]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
                raise ValueError(f"purpose {name!r}: use lower-case letters, digits and _")
        return value

    @model_validator(mode="after")
    def _known(self) -> "PrivacyConfig":
        known = set(self.purposes)
        for field, names in (("marketing_purposes", self.marketing_purposes),
                             ("gpc_purposes", self.gpc_purposes),
                             *((f"tcf_purposes.{k}", v) for k, v in self.tcf_purposes.items())):
            for name in names:
                if name not in known:
                    raise ValueError(f"{field}: unknown purpose {name!r}; declare it under "
                                     "purposes")
        for k in self.tcf_purposes:
            if not 1 <= k <= 24:
                raise ValueError(f"tcf_purposes: {k} is not a TCF purpose id (1–24)")
        names = [r.name for r in self.retention]
        if len(set(names)) != len(names):
            raise ValueError("retention: two rules share a name")
        return self

    def requires_consent(self, purpose: str) -> bool:
        return self.purposes[purpose].requires_consent

    def check_purpose(self, purpose: str) -> str:
        if purpose not in self.purposes:
            raise ValueError(f"unknown purpose {purpose!r}; one of {', '.join(self.purposes)}")
        return purpose


def load_privacy_config(path: Path | None) -> PrivacyConfig:
    if path is None or not path.exists():
        return PrivacyConfig()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PrivacyConfigError(f"{path.name}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PrivacyConfigError(f"{path.name}: expected a mapping at the top level")
    try:
        return PrivacyConfig(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PrivacyConfigError(f"{path.name}: {where + ': ' if where else ''}"
                                 f"{first['msg'].removeprefix('Value error, ')}") from None
