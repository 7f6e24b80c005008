"""The configuration of probabilistic matching: which attributes are compared, and how.

Plain data, validated on construction; :mod:`klantbeeld.identity.probabilistic` turns it into a
Splink model. See docs/identity-matching.md for the user documentation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Kind = Literal["exact", "name", "email", "date", "postcode", "phone", "levenshtein", "jaro_winkler"]

#: Jaro-Winkler similarity levels (0 < t < 1, most similar first) for the kinds that use them.
SIMILARITY_KINDS = {"name": [0.92, 0.88, 0.7], "jaro_winkler": [0.9, 0.7]}
#: Edit-distance levels (whole numbers >= 1, smallest first) for the kinds that use them.
DISTANCE_KINDS = {"levenshtein": [1, 2], "postcode": [1], "phone": [1]}
#: Kinds whose exact-match level is weighted by how common the value is, unless told otherwise.
TF_BY_DEFAULT = {"name", "email"}


class Comparison(BaseModel):
    """One compared attribute: the column, how it is compared, and the kind's thresholds."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(min_length=1, description="Attribute column in the records.")
    kind: Kind = Field(description="How two values are compared (see docs/identity-matching.md).")
    thresholds: list[float] | None = Field(
        None, description="name/jaro_winkler: Jaro-Winkler similarities (0-1); levenshtein/"
                          "postcode/phone: edit distances. None: the kind's default.")
    date_format: str | None = Field(
        None, description="date: strptime format of text dates (default %Y-%m-%d).")
    prefix_length: int | None = Field(
        None, ge=1, description="postcode: also reward equal first N characters (default 4).")
    term_frequency_adjustments: bool | None = Field(
        None, description="Weight an exact match by the rarity of the value "
                          "(default: on for name and email, off otherwise).")

    @model_validator(mode="after")
    def _check(self) -> "Comparison":
        where = f"comparison {self.column!r} ({self.kind})"
        if self.thresholds is not None:
            if self.kind in SIMILARITY_KINDS:
                if not self.thresholds or any(not 0 < t < 1 for t in self.thresholds):
                    raise ValueError(f"{where}: thresholds are Jaro-Winkler similarities "
                                     "strictly between 0 and 1, e.g. [0.92, 0.8]")
                self.thresholds = sorted(set(self.thresholds), reverse=True)
            elif self.kind in DISTANCE_KINDS:
                if not self.thresholds or any(t < 1 or t != int(t) for t in self.thresholds):
                    raise ValueError(f"{where}: thresholds are edit distances, whole numbers "
                                     "of at least 1, e.g. [1, 2]")
                self.thresholds = sorted({float(int(t)) for t in self.thresholds})
            else:
                raise ValueError(f"{where}: this kind takes no thresholds")
        if self.date_format is not None and self.kind != "date":
            raise ValueError(f"{where}: date_format applies to kind 'date' only")
        if self.prefix_length is not None and self.kind != "postcode":
            raise ValueError(f"{where}: prefix_length applies to kind 'postcode' only")
        return self

    @property
    def effective_thresholds(self) -> list[float]:
        default = SIMILARITY_KINDS.get(self.kind) or DISTANCE_KINDS.get(self.kind) or []
        return list(self.thresholds if self.thresholds is not None else default)

    @property
    def effective_tf(self) -> bool:
        if self.term_frequency_adjustments is None:
            return self.kind in TF_BY_DEFAULT
        return self.term_frequency_adjustments


def _default_comparisons() -> list[Comparison]:
    return [
        Comparison(column="first_name", kind="name"),
        Comparison(column="last_name", kind="name"),
        Comparison(column="birth_date", kind="date"),
        Comparison(column="email", kind="email"),
        Comparison(column="phone", kind="phone"),
        Comparison(column="postcode", kind="postcode"),
        Comparison(column="house_number", kind="exact"),
    ]


def _default_blocking() -> list[list[str]]:
    return [["email"], ["phone"], ["last_name", "birth_date"], ["first_name", "postcode"],
            ["postcode", "house_number"]]


class MatchSettings(BaseModel):
    """What is compared, which pairs are considered, and where the decision thresholds lie."""

    model_config = ConfigDict(extra="forbid")

    comparisons: list[Comparison] = Field(default_factory=_default_comparisons)
    blocking: list[list[str]] = Field(
        default_factory=_default_blocking,
        description="Candidate pairs: records equal on all columns of at least one rule.")
    upper: float = Field(0.99, description="Match probability at or above which records merge.")
    lower: float = Field(0.80, description="Match probability at or above which a pair is "
                                           "sent to review (below upper).")
    max_pairs_for_training: int = Field(
        1_000_000, ge=10_000, description="Random pairs sampled to learn how non-matches look; "
                                          "also caps the pairs of each EM pass.")

    @field_validator("comparisons")
    @classmethod
    def _comparisons(cls, value: list[Comparison]) -> list[Comparison]:
        if not value:
            raise ValueError("comparisons is empty: compare at least one attribute")
        seen: set[str] = set()
        for c in value:
            if c.column in seen:
                raise ValueError(f"column {c.column!r} is compared twice; compare each once")
            seen.add(c.column)
        return value

    @field_validator("blocking")
    @classmethod
    def _blocking(cls, value: list[list[str]]) -> list[list[str]]:
        if not value:
            raise ValueError("blocking is empty: give at least one rule, e.g. [['email']]")
        for i, rule in enumerate(value):
            if not rule or any(not isinstance(c, str) or not c.strip() for c in rule):
                raise ValueError(f"blocking rule {i} ({rule!r}) must list one or more column names")
        return [list(dict.fromkeys(rule)) for rule in value]

    @model_validator(mode="after")
    def _consistent(self) -> "MatchSettings":
        if not 0 < self.lower <= self.upper <= 1:
            raise ValueError(f"thresholds must satisfy 0 < lower <= upper <= 1; got "
                             f"lower={self.lower}, upper={self.upper}")
        if missing := untrainable(self.comparisons, self.blocking):
            raise ValueError(
                f"comparison(s) {missing} appear in every blocking rule, so how they behave for "
                "true matches cannot be learnt; add a blocking rule that does not use them")
        return self


def untrainable(comparisons: list[Comparison], blocking: list[list[str]]) -> list[str]:
    """Compared columns used by every blocking rule (EM cannot estimate them)."""
    return [c.column for c in comparisons if blocking and all(c.column in r for r in blocking)]
