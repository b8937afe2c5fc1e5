"""SQL quoting without a connection, for SQL rendered into files and compared in unit tests.

:mod:`psycopg.sql` ``as_string()`` with no context (psycopg >= 3.2, which the project requires):
identifiers are double-quoted with embedded double quotes doubled, exactly like
``PQescapeIdentifier``, and string literals are correct whatever ``standard_conforming_strings``
says.
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

MAX_IDENTIFIER_BYTES: Final = 63
"""PostgreSQL silently truncates longer identifiers, which could put a trigger on another table."""


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier: double-quoted, embedded double quotes doubled.

    Always quoted, so mixed case (``"CashFlow"``) and reserved words survive. Refuses what
    PostgreSQL would reject or silently change: NUL characters and names over 63 bytes.
    """
    if not name:
        raise ValueError("an SQL identifier cannot be empty")
    if "\x00" in name:
        raise ValueError(f"an SQL identifier cannot contain NUL characters: {name!r}")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"identifier {name!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte limit"
        )
    return sql.Identifier(name).as_string()


def quote_literal(value: str) -> str:
    """``value`` as an SQL string literal (``E'...'`` when it holds backslashes)."""
    return sql.Literal(value).as_string().lstrip()
