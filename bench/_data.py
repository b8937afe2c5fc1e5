"""The benchmark's vocabulary, built in the database with plain SQL in seconds.

Project names are multi-word and realistic ("Marikina Riverbanks Flood Control Phase 2 Lot 3",
from the demo's word lists, every combination once before a "Lot" number makes them distinct),
file names are monthly spreadsheets ("Expenses_March_2024_004711.xlsx"), and there are 2,000
cost categories whatever the size. ``size`` terms = size / 2 projects + size / 2 file names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from _stack import FACILITIES, FEATURES, MONTHS, PHASES, PLACES, categories

CATEGORY_COUNT = 2000
TABLES = ("Project", "Expenses", "CashFlow", "ExpensesColumn", "CashFlowColumn")
_COMBINATIONS = len(PLACES) * (len(FEATURES) + 1) * len(FACILITIES) * len(PHASES)
_STRIDE = 7919  # a prime that divides no factor of _COMBINATIONS: g -> g * 7919 mod N permutes


def project_name_sql(series: str) -> str:
    """SQL for the distinct multi-word project name number ``series`` (an integer from 0)."""
    # Mixed-radix digits of a permuted index pick place, feature, facility and phase, so
    # neighbouring numbers give unrelated names; past every combination a "Lot" suffix follows.
    k = f"mod(mod({series}, {_COMBINATIONS}) * {_STRIDE}, {_COMBINATIONS})"
    places, features = len(PLACES), len(FEATURES) + 1
    facilities = len(FACILITIES)
    return (
        f"(%(places)s::text[])[1 + mod({k}, {places})] || ' ' "
        f"|| (%(features)s::text[])[1 + mod({k} / {places}, {features})] "
        f"|| (%(facilities)s::text[])[1 + mod({k} / {places * features}, {facilities})] "
        f"|| (%(phases)s::text[])[1 + mod({k} / {places * features * facilities}, {len(PHASES)})] "
        f"|| CASE WHEN {series} >= {_COMBINATIONS} "
        f"THEN ' Lot ' || ({series} / {_COMBINATIONS}) ELSE '' END"
    )


def _word_lists() -> dict[str, Any]:
    return {
        "places": list(PLACES),
        "features": [f"{feature} " for feature in FEATURES] + [""],
        "facilities": list(FACILITIES),
        "phases": list(PHASES),
        "months": list(MONTHS),
    }


@dataclass(frozen=True, slots=True)
class Sizes:
    projects: int
    files: int
    categories: int = CATEGORY_COUNT

    @classmethod
    def for_terms(cls, terms: int) -> Sizes:
        return cls(projects=terms // 2, files=terms - terms // 2)


def build(conn: Any, sizes: Sizes) -> dict[str, int]:
    """Replace the vocabulary tables' rows with a generated vocabulary; returns the row counts.

    Run with no bridge listening (TRUNCATE notifies too). Adds indexes on the foreign keys so a
    project's DELETE does not scan the file tables (any real schema has them).
    """
    words = _word_lists()
    tables = ", ".join(f'"{table}"' for table in TABLES)
    conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    conn.execute(
        'INSERT INTO "Project"(project_name, location) '
        f"SELECT {project_name_sql('g')}, "
        f"(%(places)s::text[])[1 + mod(g * 31, {len(PLACES)})] || ', Philippines' "
        "FROM generate_series(0, %(n)s - 1) AS g",
        {**words, "n": sizes.projects},
    )
    for table, count in (
        ("Expenses", sizes.files // 2),
        ("CashFlow", sizes.files - sizes.files // 2),
    ):
        conn.execute(
            f'INSERT INTO "{table}"(file_name) '
            f"SELECT '{table}_' || (%(months)s::text[])[1 + mod(g, 12)] || '_' "
            "|| (2015 + mod(g / 12, 12)) || '_' || lpad(g::text, 6, '0') "
            "|| CASE WHEN mod(g, 3) = 0 THEN '.csv' ELSE '.xlsx' END "
            "FROM generate_series(0, %(n)s - 1) AS g",
            {**words, "n": count},
        )
    names = categories(sizes.categories)
    half = len(names) // 2
    for table, chunk in (("ExpensesColumn", names[:half]), ("CashFlowColumn", names[half:])):
        conn.execute(f'INSERT INTO "{table}"(column_name) SELECT unnest(%s::text[])', (chunk,))
    for table, column in (
        ("Expenses", "project_id"),
        ("CashFlow", "project_id"),
        ("ExpensesColumn", "expenses_id"),
        ("CashFlowColumn", "cashflow_id"),
    ):
        conn.execute(f'CREATE INDEX IF NOT EXISTS "{table}_{column}_bench" ON "{table}"({column})')
    conn.execute("VACUUM ANALYZE")
    counts = {}
    for table in TABLES:
        row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        counts[table] = int(row[0])
    return counts


def vocabulary_terms(conn: Any) -> int:
    """Distinct terms over the six lists, as instances count them."""
    row = conn.execute(
        'SELECT (SELECT count(DISTINCT project_name) FROM "Project")'
        ' + (SELECT count(DISTINCT location) FROM "Project")'
        ' + (SELECT count(DISTINCT file_name) FROM "Expenses")'
        ' + (SELECT count(DISTINCT file_name) FROM "CashFlow")'
        ' + (SELECT count(DISTINCT column_name) FROM "ExpensesColumn")'
        ' + (SELECT count(DISTINCT column_name) FROM "CashFlowColumn")'
    ).fetchone()
    return int(row[0])


def insert_bulk(conn: Any, count: int, tag: str) -> tuple[int, str, float]:
    """One INSERT of ``count`` new projects named "<tag> <project name>".

    Returns the last id before it (to delete them afterwards), the name of one new project, and
    the ``time.perf_counter()`` at which the INSERT's commit returned.
    """
    row = conn.execute('SELECT coalesce(max(id), 0) FROM "Project"').fetchone()
    last_id = int(row[0])
    name = f"%(tag)s || ' ' || {project_name_sql('g')}"
    params = {**_word_lists(), "tag": tag}
    probe = conn.execute(
        f"SELECT {name} FROM (SELECT %(g)s::bigint AS g) AS one", {**params, "g": count - 1}
    ).fetchone()
    conn.execute(
        f"INSERT INTO \"Project\"(project_name, location) SELECT {name}, 'Bulk Site, Philippines' "
        "FROM generate_series(0, %(n)s - 1) AS g",
        {**params, "n": count},
    )
    return last_id, str(probe[0]), time.perf_counter()


def delete_bulk(conn: Any, last_id: int) -> None:
    conn.execute('DELETE FROM "Project" WHERE id > %s', (last_id,))
    conn.execute('VACUUM ANALYZE "Project"')
