"""The NOTIFY triggers: their SQL, rendered from the field -> column mapping, and their check.

The committed migration ``supabase/migrations/20261128000100_vocabulary_sync_triggers.sql`` is
this module's rendering for the default mapping and channel (a test keeps the two byte-identical),
so ``supabase db push`` can apply it. ``vocabsync migrate`` applies the rendering for the configured
mapping and channel instead: a deployment whose tables are named differently changes
configuration, not code.

Quoting uses :mod:`psycopg.sql` without a connection (``as_string()`` with no context, available
since psycopg 3.2, which the project requires): identifiers are double-quoted with embedded double
quotes doubled, exactly like ``PQescapeIdentifier``, and the channel becomes a string literal
that is correct whatever ``standard_conforming_strings`` says. So rendering needs no database, and
the committed file can be compared with the rendering in a plain unit test.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from psycopg import sql

from app.config import Settings
from app.db.connection import AsyncConn
from app.sources import SourceMap

FUNCTION_SIGNATURE: Final = "public.notify_vocabulary_change()"
"""The trigger function, schema-qualified so the trigger does not depend on a search_path."""
TRIGGER_NAME: Final = "vocabulary_change_trigger"
"""The name of the trigger on every vocabulary table (the design document's name)."""
DEFAULT_CHANNEL: Final = "vocabulary_changed"

TriggerMode = Literal["statement"]
"""How the triggers fire.

``statement``: one AFTER ... FOR EACH STATEMENT trigger per table on INSERT, UPDATE, DELETE and
TRUNCATE, so a bulk statement sends one notification. A later mode that notifies on UPDATE only
when a vocabulary column changed (a row-level UPDATE trigger with
``WHEN (OLD.col IS DISTINCT FROM NEW.col)`` beside a statement-level one for the other events)
adds its name here and its shapes in :func:`trigger_specs`; rendering, rollback and the check all
work from those specs.
"""
TRIGGER_MODES: Final[tuple[str, ...]] = get_args(TriggerMode)

# pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h).
TGTYPE_ROW: Final = 1
TGTYPE_BEFORE: Final = 2
TGTYPE_INSERT: Final = 4
TGTYPE_DELETE: Final = 8
TGTYPE_UPDATE: Final = 16
TGTYPE_TRUNCATE: Final = 32
TGTYPE_INSTEAD: Final = 64
EVENT_BITS: Final[dict[str, int]] = {
    "INSERT": TGTYPE_INSERT,
    "UPDATE": TGTYPE_UPDATE,
    "DELETE": TGTYPE_DELETE,
    "TRUNCATE": TGTYPE_TRUNCATE,
}

MAX_IDENTIFIER_BYTES: Final = 63
"""PostgreSQL silently truncates longer identifiers, which could put a trigger on another table."""

_TABLE_KINDS: Final[dict[str, str]] = {
    "v": "view",
    "m": "materialized view",
    "i": "index",
    "I": "partitioned index",
    "S": "sequence",
    "c": "composite type",
    "t": "TOAST table",
}
_TRIGGERABLE_KINDS: Final = frozenset({"r", "p", "f"})


@dataclass(frozen=True, slots=True)
class TriggerSpec:
    """One trigger a mode needs: on which table, under which name, for which events and level."""

    table: str
    name: str
    events: tuple[str, ...]
    for_each_row: bool = False


@dataclass(slots=True)
class TriggerCheck:
    """What is wrong with the installed triggers; ``ok`` when nothing is."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    missing_tables: list[str] = field(default_factory=list)
    """Tables of the mapping that do not exist (or whose names PostgreSQL cannot hold)."""
    configuration_problems: list[str] = field(default_factory=list)
    """The problems (also in ``problems``) that reinstalling the triggers cannot fix: missing
    tables or columns, views. They need VOCABSYNC_SOURCES or the schema changed."""


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


def trigger_specs(sources: SourceMap, mode: TriggerMode = "statement") -> list[TriggerSpec]:
    """The triggers ``mode`` installs for ``sources``, in table order."""
    _require_mode(mode)
    events = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
    return [TriggerSpec(table=table, name=TRIGGER_NAME, events=events) for table in sources.tables]


# --- Rendering ---------------------------------------------------------------------------------

_TRIGGERS_HEADER: Final = """\
-- vocabsync: real-time vocabulary sync triggers (PostgreSQL >= 14).
--
-- Every INSERT, UPDATE, DELETE or TRUNCATE on a vocabulary table sends one NOTIFY with the
-- table's name as payload: one per statement, not per row, so a bulk import sends one. PostgreSQL
-- delivers it only when the transaction commits (a rolled-back write sends nothing), and only
-- once per transaction for the same table. A DELETE or TRUNCATE that cascades through a foreign
-- key also notifies for the tables it cascades to. The bridge
-- (python -m app.services.vocabulary_sync_bridge) LISTENs and forwards it to Redis.
--
-- Writes never pay for a failed notify: the function catches its own errors and only raises a
-- WARNING. It runs with a fixed, empty search_path (the Supabase linter's
-- function_search_path_mutable) and so calls pg_catalog.pg_notify fully qualified.
--
-- Re-running this file is a no-op (CREATE OR REPLACE FUNCTION / CREATE OR REPLACE TRIGGER).
-- Undo it with supabase/rollback/20261128000100_vocabulary_sync_triggers_down.sql.
--
-- Generated by app.db.triggers.render_trigger_sql() for the default tables and the channel
-- 'vocabulary_changed'; a test keeps this file identical to that rendering, so do not edit it by
-- hand. `vocabsync migrate` applies the rendering for the configured VOCABSYNC_SOURCES and
-- VOCABSYNC_PG_CHANNEL in place of this file, and reinstalls triggers that were dropped or
-- altered.
"""

_ROLLBACK_HEADER: Final = """\
-- vocabsync: undo supabase/migrations/20261128000100_vocabulary_sync_triggers.sql.
--
-- Kept outside supabase/migrations so the Supabase CLI never applies it. Run it by hand:
--     psql "$DATABASE_URL" -f supabase/rollback/20261128000100_vocabulary_sync_triggers_down.sql
-- Notifications stop; API instances keep serving their last vocabulary and read through to the
-- database when they need to. Writes are unaffected.
--
-- `vocabsync migrate` reinstalls the triggers (it repairs missing ones), so stop running it while
-- they should stay off. To let `supabase db push` apply the migration again, mark it reverted:
--     supabase migration repair --status reverted 20261128000100
--
-- The function is dropped without CASCADE: if a trigger outside this list still uses it (left
-- over from an older VOCABSYNC_SOURCES), this fails and changes nothing; drop that trigger first.
--
-- Generated by app.db.triggers.render_rollback_sql() for the default tables; a test keeps this
-- file identical to that rendering.
"""

_FUNCTION_BODY: Final = """\
BEGIN
    BEGIN
        PERFORM pg_catalog.pg_notify({channel}, TG_TABLE_NAME);
    EXCEPTION WHEN OTHERS THEN
        -- A failed notify must never fail the write: warn and carry on.
        RAISE WARNING 'vocabsync: failed to notify vocabulary change on %: %',
            TG_TABLE_NAME, SQLERRM;
    END;
    RETURN NULL;
END;"""


def function_body(channel: str) -> str:
    """The PL/pgSQL body of the trigger function (what ``pg_proc.prosrc`` holds, give or take
    the surrounding newlines)."""
    return _FUNCTION_BODY.replace("{channel}", quote_literal(channel))


def _dollar_tag(body: str) -> str:
    """A dollar-quote tag that does not occur in ``body`` (only a strange channel could)."""
    tag, n = "$function$", 0
    while tag in body:
        n += 1
        tag = f"$function{n}$"
    return tag


def _events_sql(events: Sequence[str]) -> str:
    return " OR ".join(events)


def _trigger_name_sql(name: str) -> str:
    """Trigger names are this module's own constants: plain lower-case words need no quotes."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else quote_ident(name)


def _create_trigger_sql(spec: TriggerSpec) -> str:
    level = "ROW" if spec.for_each_row else "STATEMENT"
    return (
        f"CREATE OR REPLACE TRIGGER {_trigger_name_sql(spec.name)}\n"
        f"    AFTER {_events_sql(spec.events)} ON {quote_ident(spec.table)}\n"
        f"    FOR EACH {level}\n"
        f"    EXECUTE FUNCTION {FUNCTION_SIGNATURE};\n"
    )


def render_trigger_sql(sources: SourceMap, channel: str, *, mode: TriggerMode = "statement") -> str:
    """The trigger migration for ``sources`` and ``channel``: the function, then one trigger per
    table. For the default mapping and ``vocabulary_changed`` it is the committed migration file.

    The channel is not validated here (settings do that), so tests can install a function whose
    notify fails.
    """
    specs = trigger_specs(sources, mode)
    body = function_body(channel)
    tag = _dollar_tag(body)
    parts = [
        _TRIGGERS_HEADER,
        f"CREATE OR REPLACE FUNCTION {FUNCTION_SIGNATURE}\n"
        "    RETURNS trigger\n"
        "    LANGUAGE plpgsql\n"
        "    SET search_path = ''\n"
        f"AS {tag}\n{body}\n{tag};\n",
    ]
    parts.extend(_create_trigger_sql(spec) for spec in specs)
    return "\n".join(parts)


def render_rollback_sql(sources: SourceMap, *, mode: TriggerMode = "statement") -> str:
    """SQL that drops the triggers of ``sources`` and the function, in one transaction.

    Tables that no longer exist are fine (``DROP TRIGGER IF EXISTS`` only notices them).
    """
    specs = trigger_specs(sources, mode)
    drops = "".join(
        f"DROP TRIGGER IF EXISTS {_trigger_name_sql(spec.name)} ON {quote_ident(spec.table)};\n"
        for spec in specs
    )
    return (
        f"{_ROLLBACK_HEADER}\n"
        "BEGIN;\n\n"
        f"{drops}\n"
        f"DROP FUNCTION IF EXISTS {FUNCTION_SIGNATURE};\n\n"
        "COMMIT;\n"
    )


def _require_mode(mode: str) -> None:
    if mode not in TRIGGER_MODES:
        raise ValueError(f"unknown trigger mode {mode!r}; known: {', '.join(TRIGGER_MODES)}")


# --- Checking ----------------------------------------------------------------------------------

_FUNCTION_QUERY: Final = """
SELECT p.oid, p.prosrc, p.proconfig, l.lanname::text,
       p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE p.oid = pg_catalog.to_regprocedure(%s)
"""

# One row per expected trigger: its table (if it exists), the table's columns, and the
# installed trigger of that name (if any).
_TRIGGERS_QUERY: Final = """
SELECT s.n,
       c.oid IS NOT NULL,
       c.relkind::text,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       tr.oid IS NOT NULL,
       tr.tgtype::int,
       tr.tgenabled::text,
       tr.tgfoid,
       tr.tgfoid::pg_catalog.regprocedure::text,
       tr.tgqual IS NOT NULL,
       pg_catalog.cardinality(tr.tgattr::pg_catalog.int2[])
FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[]))
     WITH ORDINALITY AS s(quoted, trigger_name, n)
LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(s.quoted)
LEFT JOIN pg_catalog.pg_trigger tr
       ON tr.tgrelid = c.oid AND tr.tgname = s.trigger_name AND NOT tr.tgisinternal
ORDER BY s.n
"""


async def check_triggers(
    conn: AsyncConn, settings: Settings, *, mode: TriggerMode = "statement"
) -> TriggerCheck:
    """Compare what is installed with what ``settings`` need; list every difference.

    Checks the function (present, a trigger function with the expected body for
    ``settings.pg_channel``: a function left from another channel would notify where nobody
    listens), every table and vocabulary column of the mapping, and each table's trigger (AFTER,
    FOR EACH STATEMENT, all four events, enabled, calling the function, unconditional).
    """
    sources = settings.sources
    specs = trigger_specs(sources, mode)
    problems: list[str] = []
    config_problems: list[str] = []
    missing_tables: list[str] = []

    function_oid = await _check_function(conn, settings.pg_channel, problems)

    quoted = {spec.table: _quote_or_none(spec.table) for spec in specs}
    for table, table_sql in quoted.items():
        if table_sql is None:
            missing_tables.append(table)
            config_problems.append(
                f"table name {table!r} is not a valid PostgreSQL identifier (empty, NUL or over "
                f"{MAX_IDENTIFIER_BYTES} bytes): fix VOCABSYNC_SOURCES"
            )
    checkable = [spec for spec in specs if quoted[spec.table] is not None]

    cursor = await conn.execute(
        _TRIGGERS_QUERY,
        ([quoted[spec.table] for spec in checkable], [spec.name for spec in checkable]),
    )
    rows = await cursor.fetchall()
    seen_tables: set[str] = set()
    for spec, row in zip(checkable, rows, strict=True):
        (_, exists, relkind, columns, has_trigger, tgtype, enabled, tgfoid, called, has_when,
         n_update_columns) = row  # fmt: skip
        table_sql = quote_ident(spec.table)
        first_time = spec.table not in seen_tables
        seen_tables.add(spec.table)
        if not exists:
            if first_time:
                missing_tables.append(spec.table)
                config_problems.append(_missing_table_problem(sources, spec.table))
            continue
        if first_time:
            config_problems.extend(_table_problems(sources, spec.table, relkind, columns))
        if not has_trigger:
            problems.append(f"trigger {spec.name} on {table_sql} is missing")
            continue
        problems.extend(
            _trigger_problems(
                spec,
                tgtype=tgtype,
                enabled=enabled,
                calls_function=function_oid is not None and tgfoid == function_oid,
                called=called,
                has_when=has_when,
                update_columns=n_update_columns or 0,
            )
        )
    problems = config_problems + problems
    return TriggerCheck(
        ok=not problems,
        problems=problems,
        missing_tables=missing_tables,
        configuration_problems=config_problems,
    )


def _missing_table_problem(sources: SourceMap, table: str) -> str:
    fields = ", ".join(sources.fields_of(table))
    remedy = (
        "run `vocabsync migrate` (it creates the default tables) or fix VOCABSYNC_SOURCES"
        if sources.is_default
        else "fix VOCABSYNC_SOURCES or create the table"
    )
    return f"table {quote_ident(table)} (vocabulary fields: {fields}) does not exist: {remedy}"


def _quote_or_none(name: str) -> str | None:
    try:
        return quote_ident(name)
    except ValueError:
        return None


def _normalise(text: str) -> str:
    return " ".join(text.split())


async def _check_function(conn: AsyncConn, channel: str, problems: list[str]) -> int | None:
    cursor = await conn.execute(_FUNCTION_QUERY, (FUNCTION_SIGNATURE,))
    row = await cursor.fetchone()
    if row is None:
        problems.append(f"function {FUNCTION_SIGNATURE} is missing")
        return None
    oid, source, config, language, returns_trigger = row
    if not returns_trigger or language != "plpgsql":
        problems.append(
            f"function {FUNCTION_SIGNATURE} is not a PL/pgSQL trigger function "
            f"(language {language})"
        )
    elif _normalise(source) != _normalise(function_body(channel)):
        problems.append(
            f"function {FUNCTION_SIGNATURE} differs from the expected definition for channel "
            f"{quote_literal(channel)} (edited by hand, or VOCABSYNC_PG_CHANNEL changed since it "
            "was installed)"
        )
    if list(config or []) != ['search_path=""']:
        problems.append(f"function {FUNCTION_SIGNATURE} does not have SET search_path = ''")
    return int(oid)


def _table_problems(
    sources: SourceMap, table: str, relkind: str, columns: Sequence[str]
) -> list[str]:
    table_sql = quote_ident(table)
    problems: list[str] = []
    if relkind not in _TRIGGERABLE_KINDS:
        kind = _TABLE_KINDS.get(relkind, f"relation of kind {relkind!r}")
        problems.append(
            f"{table_sql} is a {kind}, not a table, so its changes cannot be followed: point "
            "VOCABSYNC_SOURCES at the table it reads from"
        )
    for name in sources.fields_of(table):
        column = sources.sources[name].column
        if column not in columns:
            problems.append(
                f"column {table_sql}.{sql.Identifier(column).as_string()} (vocabulary field "
                f"{name}) does not exist: fix VOCABSYNC_SOURCES"
            )
    return problems


def _trigger_problems(
    spec: TriggerSpec,
    *,
    tgtype: int,
    enabled: str,
    calls_function: bool,
    called: str,
    has_when: bool,
    update_columns: int,
) -> list[str]:
    what = f"trigger {spec.name} on {quote_ident(spec.table)}"
    problems: list[str] = []
    if tgtype & TGTYPE_INSTEAD:
        problems.append(f"{what} fires INSTEAD OF instead of AFTER")
    elif tgtype & TGTYPE_BEFORE:
        problems.append(f"{what} fires BEFORE instead of AFTER")
    is_row = bool(tgtype & TGTYPE_ROW)
    if is_row and not spec.for_each_row:
        problems.append(f"{what} is FOR EACH ROW instead of FOR EACH STATEMENT")
    elif spec.for_each_row and not is_row:
        problems.append(f"{what} is FOR EACH STATEMENT instead of FOR EACH ROW")
    missing = [event for event in spec.events if not tgtype & EVENT_BITS[event]]
    if missing:
        problems.append(f"{what} misses {', '.join(missing)}")
    extra = [e for e, bit in EVENT_BITS.items() if tgtype & bit and e not in spec.events]
    if extra:
        problems.append(f"{what} also fires on {', '.join(extra)}")
    if update_columns:
        problems.append(f"{what} fires only on UPDATE OF some columns")
    if has_when:
        problems.append(f"{what} has a WHEN condition")
    if enabled == "D":
        problems.append(f"{what} is disabled")
    elif enabled == "R":
        problems.append(f"{what} fires only in replica mode (ENABLE REPLICA TRIGGER)")
    if not calls_function:
        problems.append(f"{what} calls another function ({called}) instead of {FUNCTION_SIGNATURE}")
    return problems
