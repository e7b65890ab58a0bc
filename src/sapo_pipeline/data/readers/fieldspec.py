"""What the JSON-lines core extracts from each line: one :class:`FieldSpec` per output column."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

_SCALARS = (pl.Utf8, pl.Int64, pl.Float64, pl.Boolean)
_STR_LIST = pl.List(pl.Utf8)


@dataclass(frozen=True)
class FieldSpec:
    """One JSON field to extract, with its type and how missing values are handled."""

    name: str = field(metadata={"help": "Output column name (the rename target)."})
    dtype: pl.DataType = field(
        default=pl.Utf8,
        metadata={"help": "Polars type: Utf8, Int64, Float64, Boolean or List(Utf8)."},
    )
    path: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "JSON key path, 1 or 2 keys (e.g. ('details', 'Brand')); default (name,)."
        },
    )
    required: bool = field(
        default=False,
        metadata={
            "help": "Reject the line as missing_field when the value (after fallback) is "
            "absent, null, or a blank string."
        },
    )
    fallback: str | None = field(
        default=None,
        metadata={
            "help": "Name of an earlier spec whose value is used when this one is null or "
            "a blank string."
        },
    )
    scalar_ok: bool = field(
        default=False,
        metadata={"help": "List(Utf8) only: accept a bare JSON string as a one-element list."},
    )

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("FieldSpec.name must be a non-empty string")
        if not self.path:
            object.__setattr__(self, "path", (self.name,))
        if not 1 <= len(self.path) <= 2 or not all(isinstance(k, str) and k for k in self.path):
            raise ValueError(
                f"FieldSpec {self.name!r}: path must be 1 or 2 non-empty keys, got {self.path!r}"
            )
        if self.dtype not in _SCALARS and self.dtype != _STR_LIST:
            raise ValueError(
                f"FieldSpec {self.name!r}: unsupported dtype {self.dtype}; use one of "
                f"Utf8, Int64, Float64, Boolean, List(Utf8)"
            )
        if self.scalar_ok and self.dtype != _STR_LIST:
            raise ValueError(f"FieldSpec {self.name!r}: scalar_ok needs dtype List(Utf8)")
        if self.fallback == self.name:
            raise ValueError(f"FieldSpec {self.name!r}: fallback cannot be the field itself")

    @property
    def source(self) -> str:
        """The JSON field as named in reject rows (dotted path)."""
        return ".".join(self.path)
