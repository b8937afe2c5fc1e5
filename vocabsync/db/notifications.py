"""What a ``vocabulary_changed`` notification says: which terms of which fields a statement touched.

Payloads: ``{"t": table, "c": {column: [values]}}`` (the touched values, old and new),
``{"t": table, "r": [columns]}`` (too many to list, or TRUNCATE: reload those columns), or a bare
table name (triggers of an earlier release: reload all the table's fields). Garbage never raises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from vocabsync.sources import SourceMap


@dataclass(frozen=True, slots=True)
class TableChange:
    """The fields a statement on ``table`` touched: listed terms, or whole fields to reload."""

    table: str
    touched: Mapping[str, frozenset[str]] = field(default_factory=dict)
    reload: frozenset[str] = frozenset()


def parse_notification(payload: str, sources: SourceMap) -> TableChange | None:
    """Decode one payload; None for an unknown table or a payload that is not one of ours."""
    text = payload.strip()
    if not text.startswith("{"):
        fields = sources.fields_of(text)
        return TableChange(text, {}, frozenset(fields)) if fields else None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("t"), str):
        return None
    table: str = document["t"]
    fields = sources.fields_of(table)
    if not fields:
        return None
    by_column: dict[str, list[str]] = {}
    for name in fields:
        by_column.setdefault(sources.sources[name].column, []).append(name)
    touched: dict[str, frozenset[str]] = {}
    reload: set[str] = set()
    columns = document.get("c", {})
    if isinstance(columns, dict):
        for column, values in columns.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                reload.update(by_column.get(column, ()))
                continue
            for name in by_column.get(column, ()):
                touched[name] = frozenset(values)
    else:
        reload.update(fields)
    reloaded = document.get("r", [])
    if isinstance(reloaded, list):
        for column in reloaded:
            reload.update(by_column.get(column, ()) if isinstance(column, str) else ())
    else:
        reload.update(fields)
    for name in reload:
        touched.pop(name, None)
    return TableChange(table, touched, frozenset(reload))
