"""``privacy.yaml``: purposes, how consent signals map onto them, request deadlines, retention.

Everything has a default (docs/privacy.md); the file validates on load and a mistake names the
field it concerns.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config_files import load_yaml_model
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
    """Keep matching data for ``keep_days`` (docs/privacy.md, Retention). One kind of target:

    - events: any of ``source`` (a source name), ``channel``, ``event`` (a track event name); all
      given must match; an event's age is its ``timestamp``. The first rule (in file order) that
      matches an event decides how long it is kept.
    - ``failed_events: true``: failed events by when they were received (``source`` or
      ``channel`` narrow it).
    - ``trait``: a sent trait is forgotten ``keep_days`` after it was last sent.
    - ``internal_events: true``: Klantbeeld's own log (segment entered/exited) and closed
      segment-membership history.
    """
    model_config = ConfigDict(extra="forbid")
    name: str
    keep_days: int = Field(ge=1)
    source: str | None = None
    channel: str | None = None
    event: str | None = None
    trait: str | None = None
    failed_events: bool = False
    internal_events: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: object) -> object:
        if not isinstance(data, dict):
            raise ValueError("each retention rule is a mapping: name, keep_days and what it "
                             "applies to")
        name = data.get("name")
        label = f"retention {name!r}" if isinstance(name, str) and name.strip() else \
            "a retention rule"
        unknown = [k for k in data if k not in cls.model_fields]
        if unknown:
            raise ValueError(f"{label}: unknown key {unknown[0]!r}; allowed: "
                             f"{', '.join(cls.model_fields)}")
        if label == "a retention rule":
            raise ValueError("a retention rule needs a name")
        days = data.get("keep_days")
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValueError(f"{label}: keep_days must be a whole number of days, at least 1")
        return data

    @model_validator(mode="after")
    def _one_target(self) -> "RetentionRule":
        from ..collect.sources import CHANNELS

        label = f"retention {self.name!r}"
        selects_events = bool(self.source or self.channel or self.event)
        if self.trait is not None and (selects_events or self.failed_events
                                       or self.internal_events):
            raise ValueError(f"{label}: a trait rule takes no source, channel, event, "
                             "failed_events or internal_events")
        if self.internal_events and (selects_events or self.failed_events):
            raise ValueError(f"{label}: an internal_events rule takes no source, channel, event "
                             "or failed_events")
        if self.failed_events and self.event:
            raise ValueError(f"{label}: failed events are kept unparsed, an event name cannot "
                             "select them (use source or channel)")
        if not (selects_events or self.trait or self.failed_events or self.internal_events):
            raise ValueError(f"{label}: say what it applies to (source, channel, event, trait, "
                             "failed_events or internal_events)")
        if self.channel is not None and self.channel not in CHANNELS:
            raise ValueError(f"{label}: unknown channel {self.channel!r}; one of "
                             f"{', '.join(CHANNELS)}")
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
        rule_names: set[str] = set()
        traits: dict[str, str] = {}
        for rule in self.retention:
            if rule.name in rule_names:
                raise ValueError(f"retention: two rules are named {rule.name!r}")
            rule_names.add(rule.name)
            if rule.trait is not None:
                if rule.trait in traits:
                    raise ValueError(f"retention {rule.name!r}: trait {rule.trait!r} has a rule "
                                     f"already ({traits[rule.trait]!r})")
                traits[rule.trait] = rule.name
        return self

    def requires_consent(self, purpose: str) -> bool:
        return self.purposes[purpose].requires_consent

    def check_purpose(self, purpose: str) -> str:
        if purpose not in self.purposes:
            raise ValueError(f"unknown purpose {purpose!r}; one of {', '.join(self.purposes)}")
        return purpose


def load_privacy_config(path: Path | None) -> PrivacyConfig:
    return load_yaml_model(path, PrivacyConfig, PrivacyConfigError)
