"""Where each vocabulary field comes from: one table and one column per field.

This mapping is the single place that knows table and column names, and which fields exist. The
design document's six fields are always there (their tables and columns can be remapped); a
deployment adds more fields by configuration (``VOCABSYNC_SOURCES``), after the six, in the order
given. The loader's query, the trigger DDL, the migration check, the snapshot's fields, the API
schema and the matcher's entity types are all built from it, so neither a rename nor an extra
field needs a code change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from vocabsync.vocabulary import FIELDS, META_KEY

FIELD_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
"""A field name: it becomes a JSON key, a Redis key suffix, a metrics label and an entity type,
so it is kept to lower-case letters, digits and underscores (at most 63 characters)."""

RESERVED_NAMES: Final = frozenset({META_KEY})
"""Keys the snapshot's JSON already uses beside the fields."""


@dataclass(frozen=True, slots=True)
class FieldSource:
    """The table and column that feed one vocabulary field."""

    table: str
    column: str

    @classmethod
    def parse(cls, spec: str) -> FieldSource:
        """Parse ``"Table.column"`` (the form used in configuration)."""
        table, sep, column = spec.partition(".")
        if not sep or not table.strip() or not column.strip():
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


def check_field_name(name: object) -> str:
    """``name`` if it can name a vocabulary field; ValueError saying what is allowed if not."""
    if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
        raise ValueError(
            f"field name {name!r} is not allowed: use a lower-case letter, then lower-case "
            "letters, digits or '_' (at most 63 characters), e.g. \"suppliers\""
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"field name {name!r} is reserved: choose another")
    return name


@dataclass(frozen=True, slots=True)
class SourceMap:
    """The complete field -> (table, column) mapping: the six fields first, then added ones."""

    sources: Mapping[str, FieldSource]

    def __post_init__(self) -> None:
        missing = [name for name in FIELDS if name not in self.sources]
        if missing:
            raise ValueError(f"vocabulary sources must include the fields {missing}")
        for name in self.sources:
            check_field_name(name)
        ordered = {name: self.sources[name] for name in self.fields}
        object.__setattr__(self, "sources", ordered)

    @classmethod
    def default(cls) -> SourceMap:
        return cls(dict(DEFAULT_SOURCES))

    @property
    def fields(self) -> tuple[str, ...]:
        """The vocabulary fields: the design document's six in its order, then added ones."""
        return FIELDS + tuple(name for name in self.sources if name not in FIELDS)

    @property
    def added(self) -> tuple[str, ...]:
        """The fields beyond the six."""
        return self.fields[len(FIELDS) :]

    @property
    def is_default(self) -> bool:
        """Exactly the default mapping (the committed trigger migrations are its rendering)."""
        return dict(self.sources) == dict(DEFAULT_SOURCES)

    @property
    def defaults_unchanged(self) -> bool:
        """The six come from their default tables and columns (fields may have been added), so
        the base schema's default tables are the ones to create."""
        return all(self.sources[name] == source for name, source in DEFAULT_SOURCES.items())

    @property
    def tables(self) -> tuple[str, ...]:
        """The distinct source tables, in field order."""
        return tuple(dict.fromkeys(source.table for source in self.sources.values()))

    def fields_of(self, table: str) -> tuple[str, ...]:
        """The fields fed by ``table`` (empty for a table that feeds none)."""
        return tuple(name for name, source in self.sources.items() if source.table == table)

    def columns_of(self, table: str) -> tuple[str, ...]:
        """The vocabulary columns of ``table``, without repeats."""
        return tuple(dict.fromkeys(self.sources[name].column for name in self.fields_of(table)))
