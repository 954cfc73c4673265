"""Custom dimensions (`dimensions:` in llmtally.yaml): the keys the receiver keeps from `llmtally.dim.<key>`, and
which of them are Prometheus labels (with a cap on distinct values).

    dimensions:
      - team                                   # a group-by, filter, export column and budget scope
      - key: billing_mode
        label: true                            # also a label of the llmtally_* record metrics
        max_values: 20                         # distinct values per label; the rest become `other`
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import Config, ConfigError
from .normalise.dimensions import KEY_PATTERN, MAX_DIMENSIONS
from .normalise.record import Record

DEFAULT_MAX_VALUES = 20
OTHER = "other"
# Names a dimension may not take: the built-in filters, groups and request fields it would shadow.
RESERVED = frozenset(
    {
        "user",
        "user_id",
        "api_key",
        "model",
        "request_model",
        "response_model",
        "provider",
        "operation",
        "feature",
        "department",
        "environment",
        "error_type",
        "service_tier",
        "service",
        "status",
        "hour",
        "day",
        "week",
        "month",
        "range",
        "start",
        "end",
        "limit",
        "cursor",
        "format",
        "payloads",
        "group_by",
        "id",
        "source",
        "params",
        "param",
        "dimensions",
        "le",
        "kind",
        "token_type",
        "job",
        "instance",
    }
)


@dataclass(frozen=True)
class Dimension:
    key: str
    label: bool = False  # also a Prometheus label of the record metrics
    max_values: int = DEFAULT_MAX_VALUES  # distinct label values kept; later ones are `other`


@dataclass(frozen=True)
class Dimensions:
    """The declared dimensions, in the order given."""

    declared: tuple[Dimension, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(d.key for d in self.declared)

    @property
    def labels(self) -> tuple[Dimension, ...]:
        return tuple(d for d in self.declared if d.label)

    @classmethod
    def from_config(cls, config: Config) -> Dimensions:
        return cls.parse(config.dimensions)

    @classmethod
    def parse(cls, raw: Any) -> Dimensions:
        """The `dimensions:` section: a list of keys, or of mappings with `key`, `label` and `max_values`."""
        if raw is None:
            return cls()
        if not isinstance(raw, list):
            raise ConfigError("dimensions must be a list of keys (or of mappings with key, label, max_values)")
        if len(raw) > MAX_DIMENSIONS:
            raise ConfigError(f"dimensions: at most {MAX_DIMENSIONS} may be declared, not {len(raw)}")
        found = [_one(item, i) for i, item in enumerate(raw)]
        keys = [d.key for d in found]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ConfigError(f"dimensions: {', '.join(twice)} declared more than once")
        return cls(tuple(found))

    def keep(self, records: Sequence[Record]) -> int:
        """Drops the undeclared dimensions of `records` (in place); returns how many were dropped."""
        keys = set(self.keys)
        dropped = 0
        for record in records:
            if record.dimensions and not keys.issuperset(record.dimensions):
                kept = {k: v for k, v in record.dimensions.items() if k in keys}
                dropped += len(record.dimensions) - len(kept)
                record.dimensions = kept
        return dropped


def _one(item: Any, index: int) -> Dimension:
    where = f"dimensions[{index}]"
    if isinstance(item, str):
        item = {"key": item}
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be a key or a mapping with key, label, max_values")
    unknown = set(item) - {"key", "label", "max_values"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: key, label, max_values)")
    key = item.get("key")
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise ConfigError(
            f"{where}.key must be a name of lower-case letters, digits and _ (starting with a letter, at most "
            f"32 characters), not {key!r}"
        )
    if key in RESERVED:
        raise ConfigError(f"{where}.key {key!r} is a built-in name; choose another")
    label = item.get("label", False)
    if not isinstance(label, bool):
        raise ConfigError(f"{where}.label must be true or false, not {label!r}")
    most = item.get("max_values", DEFAULT_MAX_VALUES)
    if not isinstance(most, int) or isinstance(most, bool) or not 1 <= most <= 10_000:
        raise ConfigError(f"{where}.max_values must be a whole number from 1 to 10000, not {most!r}")
    return Dimension(key, label, most)
