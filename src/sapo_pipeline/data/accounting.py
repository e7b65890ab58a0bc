"""Row accounting: every row that enters a step is kept, filtered by a named rule, or rejected.

A :class:`Ledger` records one step. ``check()`` enforces the identity

    rows_in = kept + sum(filtered by rule) + sum(rejected by reason)

so that nothing is dropped silently; the ingest report is built from ledgers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import polars as pl


class AccountingError(RuntimeError):
    """Rows went missing (or appeared) between the input and the outputs of a step."""


@dataclass
class Ledger:
    """Counts for one processing step."""

    step: str
    rows_in: int
    kept: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    def filter(self, rule: str, n: int) -> None:
        """Record ``n`` rows removed by the named rule (zero counts are recorded too)."""
        self.filtered[rule] = self.filtered.get(rule, 0) + int(n)

    def reject(self, reason: str, n: int) -> None:
        """Record ``n`` rows quarantined for ``reason``."""
        self.rejected[reason] = self.rejected.get(reason, 0) + int(n)

    def reject_frame(self, rejects: pl.DataFrame) -> None:
        """Record every row of a rejects table (REJECT_SCHEMA) under its reason."""
        if rejects.height:
            for reason, n in rejects.group_by("reason").len().sort("reason").iter_rows():
                self.reject(reason, n)

    @property
    def balance(self) -> int:
        """rows_in minus everything accounted for; zero when the books balance."""
        return self.rows_in - self.kept - sum(self.filtered.values()) - sum(self.rejected.values())

    def check(self) -> Ledger:
        """Raise :class:`AccountingError` unless the identity holds; return self."""
        if self.balance != 0:
            raise AccountingError(
                f"step {self.step!r}: rows in ({self.rows_in}) != kept ({self.kept}) + filtered "
                f"{self.filtered} + rejected {self.rejected} (off by {self.balance})"
            )
        return self

    def to_dict(self) -> dict:
        """JSON-serialisable form, identity included."""
        out = asdict(self)
        out["identity_holds"] = self.balance == 0
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Ledger:
        """Inverse of :meth:`to_dict` (the stored identity flag is recomputed, not trusted)."""
        return cls(**{k: v for k, v in data.items() if k != "identity_holds"})
