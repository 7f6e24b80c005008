"""Identity rules as data: identifier types, limits, priority, blocked values, trait merge rules.

Read from ``identity.yaml`` in the data directory (or the file ``KLANTBEELD_IDENTITY_CONFIG``
names); everything has a default, so a workspace without the file works. The file validates on
load and a mistake is reported with the field it concerns. See docs/identity.md.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config_files import load_yaml_model
from .match_settings import MatchSettings

BUILT_IN_TYPES = ("user_id", "email", "phone", "anonymous_id", "device_id")
DEFAULT_PRIORITY = ["user_id", "email", "phone", "device_id", "anonymous_id"]
DEFAULT_BLOCKED = [
    r"^(null|none|nil|undefined|unknown|n/?a|anonymous|guest|test|-1|0)$",
    r"^[0\-\s.]*$",                     # 0000…, ----, empty after trimming
    r"^test@", r"@example\.(com|org|net)$", r"^noreply@", r"^no-reply@",
]
TraitRule = Literal["most_recent", "source_priority", "first_seen", "non_empty"]


class IdentityConfigError(ValueError):
    """The identity configuration is invalid; the message names the field."""


class CustomType(BaseModel):
    """An identifier type beyond the built-in ones (``crm_id``, ``loyalty_card``, …)."""

    model_config = ConfigDict(extra="forbid")
    limit: int | None = Field(None, ge=1, description="Most values of this type in one profile.")
    traits: list[str] = Field(default_factory=list,
                              description="Trait keys that also carry this identifier.")
    case_sensitive: bool = True


class IdentityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_region: str = Field("NL", description="Region for phone numbers without a country code.")
    types: dict[str, CustomType] = Field(default_factory=dict)
    limits: dict[str, int] = Field(default_factory=lambda: {"user_id": 1})
    default_limit: int = Field(5, ge=1)
    priority: list[str] = Field(default_factory=lambda: list(DEFAULT_PRIORITY))
    blocked: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCKED))
    traits: dict[str, TraitRule] = Field(default_factory=dict)
    default_trait_rule: TraitRule = "most_recent"
    source_priority: list[str] = Field(default_factory=list,
                                       description="Source names, most trusted first.")
    matching: MatchSettings = Field(default_factory=MatchSettings)

    @field_validator("types")
    @classmethod
    def _custom_names(cls, value: dict[str, CustomType]) -> dict[str, CustomType]:
        for name in value:
            if name in BUILT_IN_TYPES:
                raise ValueError(f"{name!r} is a built-in type; declare only custom types here")
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
                raise ValueError(f"type name {name!r}: use lower-case letters, digits and _")
        return value

    @field_validator("blocked")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"blocked pattern {pattern!r} is not a regular expression: {exc}")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. NL, BE, DE)")
        return value.upper()

    @model_validator(mode="after")
    def _known_types(self) -> "IdentityConfig":
        known = set(self.type_names)
        for name in list(self.limits) + self.priority:
            if name not in known:
                raise ValueError(f"unknown identifier type {name!r}; declare it under `types`")
        for name, limit in self.limits.items():
            if limit < 1:
                raise ValueError(f"limits.{name} must be at least 1")
        if len(set(self.priority)) != len(self.priority):
            raise ValueError("priority lists a type twice")
        return self

    # -- derived, cached ---------------------------------------------------------------------------
    @property
    def type_names(self) -> list[str]:
        return list(BUILT_IN_TYPES) + list(self.types)

    def limit(self, id_type: str) -> int:
        if id_type in self.limits:
            return self.limits[id_type]
        custom = self.types.get(id_type)
        if custom is not None and custom.limit is not None:
            return custom.limit
        return self.default_limit

    @cached_property
    def rank(self) -> dict[str, int]:
        """Type → rank, 0 the highest priority; types not listed rank after, in declaration order."""
        order = list(self.priority) + [t for t in self.type_names if t not in self.priority]
        return {t: i for i, t in enumerate(order)}

    @cached_property
    def blocked_re(self) -> re.Pattern | None:
        if not self.blocked:
            return None
        return re.compile("|".join(f"(?:{p})" for p in self.blocked), re.IGNORECASE)

    def trait_rule(self, trait: str) -> TraitRule:
        return self.traits.get(trait, self.default_trait_rule)


def load_identity_config(path: Path | None) -> IdentityConfig:
    """The config in ``path`` (YAML), or the defaults when there is no file."""
    return load_yaml_model(path, IdentityConfig, IdentityConfigError)
