"""Label selectors over clusters and the wave model, shared by fleet files and the catalog.

A fleet file (:mod:`tasks.fleet.config`) and a catalog environment that targets a fleet
(:class:`shipyard.core.catalog.FleetTarget`) describe their waves the same way: a name,
a Kubernetes ``LabelSelector`` over cluster labels, ``max_parallel``, ``bake_seconds``,
``on_unreachable`` and ``approve``. The models live here, in the foundation, once, so
the catalog (foundation) and the fleet steps (tasks) cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["LabelSelector", "Requirement", "Wave", "selector_matches"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Requirement(_Model):
    """One ``matchExpressions`` entry, as Kubernetes' LabelSelectorRequirement."""

    key: str = Field(description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="Operator.")
    values: list[str] = Field(default_factory=list, description="Values (In, NotIn).")

    @model_validator(mode="after")
    def _values(self) -> Requirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(_Model):
    """A Kubernetes LabelSelector: every ``matchLabels`` pair and every expression hold."""

    matchLabels: dict[str, str] = Field(default_factory=dict, description="Equalities.")
    matchExpressions: list[Requirement] = Field(
        default_factory=list, description="Set-based requirements."
    )

    @property
    def empty(self) -> bool:
        """True when the selector has no requirement (it matches everything)."""
        return not self.matchLabels and not self.matchExpressions


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """True when ``labels`` satisfy ``selector`` (None matches everything), as Kubernetes:
    ``NotIn`` and ``DoesNotExist`` hold for a label that is absent."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in selector.matchLabels.items()):
        return False
    for req in selector.matchExpressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


class Wave(_Model):
    """One step of the rollout: the clusters its selector picks (first match wins)."""

    name: str = Field(description="Wave name, unique in the fleet.")
    selector: LabelSelector | None = Field(
        None, description="Which clusters; none: every cluster not in an earlier wave."
    )
    bake_seconds: float = Field(0.0, ge=0, description="Wait after the wave passed, re-checked.")
    max_parallel: int | None = Field(
        None, ge=1, description="Clusters synced and verified at once (default: all)."
    )
    on_unreachable: Literal["fail", "skip"] = Field(
        "fail", description="fail: an unreachable cluster halts; skip: report it skipped."
    )
    approve: bool = Field(False, description="Wait for approval before the wave starts.")
