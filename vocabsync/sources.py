"""Where each vocabulary field comes from: one table and one column per field.

This mapping is the single place that knows table and column names. The loader's query, the
trigger DDL and the migration check are all built from it, so a deployment whose columns are
named differently changes configuration, not code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from vocabsync.vocabulary import FIELDS


@dataclass(frozen=True, slots=True)
class FieldSource:
    """The table and column that feed one vocabulary field."""

    table: str
    column: str

    @classmethod
    def parse(cls, spec: str) -> FieldSource:
        """Parse ``"Table.column"`` (the form used in configuration)."""
        table, sep, column = spec.partition(".")
        if not sep or not table or not column:
            raise ValueError(f"expected 'Table.column', got {spec!r}")
        return cls(table=table, column=column)

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


DEFAULT_SOURCES: Final[Mapping[str, FieldSource]] = {
    "projects": FieldSource("Project", "project_name"),
    "project_locations": FieldSource("Project", "location"),
    "expense_files": FieldSource("Expenses", "file_name"),
    "cashflow_files": FieldSource("CashFlow", "file_name"),
    "expense_categories": FieldSource("ExpensesColumn", "column_name"),
    "cashflow_categories": FieldSource("CashFlowColumn", "column_name"),
}


@dataclass(frozen=True, slots=True)
class SourceMap:
    """The complete field -> (table, column) mapping, validated to cover exactly the six fields."""

    sources: Mapping[str, FieldSource]

    def __post_init__(self) -> None:
        missing = [name for name in FIELDS if name not in self.sources]
        unknown = [name for name in self.sources if name not in FIELDS]
        if missing or unknown:
            raise ValueError(
                f"vocabulary sources must name exactly the fields {list(FIELDS)}; "
                f"missing {missing}, unknown {unknown}"
            )

    @classmethod
    def default(cls) -> SourceMap:
        return cls(dict(DEFAULT_SOURCES))

    @property
    def is_default(self) -> bool:
        return dict(self.sources) == dict(DEFAULT_SOURCES)

    @property
    def tables(self) -> tuple[str, ...]:
        """The distinct source tables, in field order."""
        return tuple(dict.fromkeys(self.sources[name].table for name in FIELDS))

    def fields_of(self, table: str) -> tuple[str, ...]:
        """The fields fed by ``table`` (empty for a table that feeds none)."""
        return tuple(name for name in FIELDS if self.sources[name].table == table)

    def columns_of(self, table: str) -> tuple[str, ...]:
        """The vocabulary columns of ``table``, without repeats."""
        return tuple(dict.fromkeys(self.sources[name].column for name in self.fields_of(table)))
