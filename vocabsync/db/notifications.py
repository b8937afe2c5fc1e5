"""What a trigger's notification says changed, in vocabulary fields.

Three payload forms arrive on the channel (``vocabsync.db.triggers`` renders the triggers):

* ``{"t": "<table>", "c": {"<column>": ["v1", ...]}}`` (delta mode): the distinct old and new
  text values of the table's vocabulary columns that a statement touched. Whether each is still
  a term is for the database to say (:mod:`vocabsync.services.change_probe`): another row may
  still hold a deleted value, a concurrent transaction may have removed an inserted one.
* ``{"t": "<table>", "r": ["<column>", ...]}`` (delta mode): too many values to list, or a
  TRUNCATE: reload those columns' fields in full. A payload may carry both ``c`` and ``r``.
* ``<table>`` (precise and statement modes, or delta mode's fallback after a failure): reload all
  of the table's fields.

The trigger speaks in tables and columns; the bridge thinks in fields. Several fields may share a
table, and even a column; a column may feed none (the mapping changed since the triggers were
installed, until ``vocabsync migrate`` runs), and then it is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from vocabsync.sources import SourceMap

_BLANK: Final = " \t\r\n"


@dataclass(frozen=True, slots=True)
class TableChange:
    """One notification, in fields: which values to look up, which fields to reload."""

    table: str
    touched: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Field -> the values the change touched (never blank). A field is either here or in
    ``reload``, never both."""
    reload: frozenset[str] = frozenset()
    """Fields to reload in full."""


def parse_notification(payload: str, sources: SourceMap) -> TableChange | None:
    """``payload`` in fields of ``sources``; None for an unknown table or anything malformed
    (the caller counts it and reloads everything). Never raises."""
    try:
        return _parse(payload, sources)
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None


def _parse(payload: str, sources: SourceMap) -> TableChange | None:
    if not isinstance(payload, str):
        return None
    if payload in sources.tables:  # a bare table name: reload all of its fields
        return TableChange(payload, reload=frozenset(sources.fields_of(payload)))
    if not payload.startswith("{"):
        return None
    data: Any = json.loads(payload)
    if not isinstance(data, dict) or not set(data) <= {"t", "c", "r"}:
        return None
    table = data.get("t")
    if not isinstance(table, str) or table not in sources.tables:
        return None
    listed = data.get("c", {})
    reloaded = data.get("r", [])
    if not isinstance(listed, dict) or not isinstance(reloaded, list):
        return None
    if not all(isinstance(column, str) for column in reloaded):
        return None
    fields_of_column: dict[str, list[str]] = {}
    for name in sources.fields_of(table):
        fields_of_column.setdefault(sources.sources[name].column, []).append(name)

    reload = {name for column in reloaded for name in fields_of_column.get(column, ())}
    touched: dict[str, frozenset[str]] = {}
    for column, values in listed.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return None
        terms = frozenset(v for v in values if v.strip(_BLANK))
        for name in fields_of_column.get(column, ()):
            if name not in reload and terms:
                touched[name] = touched.get(name, frozenset()) | terms
    return TableChange(table, touched, frozenset(reload))
