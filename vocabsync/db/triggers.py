"""The NOTIFY triggers: their SQL, rendered from the field -> column mapping, and their check.

Two modes (``VOCABSYNC_TRIGGER_MODE``, ``vocabsync migrate --mode``):

* ``precise`` (the default): INSERT, DELETE and TRUNCATE notify once per statement; an UPDATE
  notifies only when the text of a vocabulary column of some row changed. NOTIFY serialises
  committing transactions cluster-wide, so writes that cannot change the vocabulary must not send
  one (ARCHITECTURE invariant 5; README, "Write path"). The UPDATE trigger is ``AFTER UPDATE OF
  <the vocabulary columns>``, so an UPDATE that names none of them costs next to nothing, except
  on a table with BEFORE UPDATE row triggers: one of those may change a vocabulary column the
  UPDATE does not name, which an ``UPDATE OF`` trigger would not see, so there the trigger fires
  on every UPDATE and only its WHEN condition filters.
* ``statement``: the design document's triggers, every statement notifies, UPDATEs included.

Both modes share the function and the statement trigger's name (``vocabulary_change_trigger``, the
design document's); precise mode adds a row-level ``vocabulary_update_trigger``. So switching is
``CREATE OR REPLACE`` of one and ``CREATE`` or ``DROP`` of the other, in one transaction: no moment
without triggers, none with both modes' UPDATE triggers.

The committed migrations are this module's renderings for the default mapping and channel (tests
keep them byte-identical): ``20261128000100_vocabulary_sync_triggers.sql`` in statement mode (the
first release; already applied in existing deployments, so never edited) and
``20261128000200_vocabulary_precise_triggers.sql`` in precise mode, which ``supabase db push``
applies on top of it, both with function revision 1; then
``20261128000300_vocabulary_trigger_failure_log.sql``, precise mode with revision 2, which also
creates the failure log that the function counts failed notifies in (:data:`REVISIONS`).
``vocabsync migrate`` applies the current revision's rendering for the configured mapping,
channel and mode instead: a deployment whose tables are named differently changes configuration,
not code.

Quoting uses :mod:`psycopg.sql` without a connection (``as_string()`` with no context, available
since psycopg 3.2, which the project requires): identifiers are double-quoted with embedded double
quotes doubled, exactly like ``PQescapeIdentifier``, and the channel becomes a string literal
that is correct whatever ``standard_conforming_strings`` says. So rendering needs no database, and
the committed file can be compared with the rendering in a plain unit test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from psycopg import sql

from vocabsync.config import Settings
from vocabsync.db.connection import AsyncConn
from vocabsync.sources import SourceMap

FUNCTION_SIGNATURE: Final = "public.notify_vocabulary_change()"
"""The trigger function, schema-qualified so the trigger does not depend on a search_path."""
TRIGGER_NAME: Final = "vocabulary_change_trigger"
"""The statement-level trigger on every vocabulary table, in both modes (the design document's
name): INSERT, DELETE and TRUNCATE, plus UPDATE in statement mode."""
UPDATE_TRIGGER_NAME: Final = "vocabulary_update_trigger"
"""Precise mode's row-level UPDATE trigger, filtered by a WHEN condition on the vocabulary
columns."""
TRIGGER_NAMES: Final = (TRIGGER_NAME, UPDATE_TRIGGER_NAME)
"""Every trigger name any mode uses: installing one mode drops the names it does not use."""
DEFAULT_CHANNEL: Final = "vocabulary_changed"
FAILURE_LOG_TABLE: Final = "public.vocabsync_trigger_failures"
"""Where the function counts the notifies it failed to send, per table (the bridge exports the
sum as the gauge ``vocabsync_trigger_failures``)."""

REVISIONS: Final = (1, 2)
"""Revisions of the rendered function: 1 only warns on a failed notify (the first two trigger
migrations, already applied in deployments, so they must keep rendering it); 2 also counts the
failure in :data:`FAILURE_LOG_TABLE`, which its rendering creates."""
CURRENT_REVISION: Final = 2
"""What ``vocabsync migrate`` installs and ``check_triggers`` expects."""

TriggerMode = Literal["precise", "statement"]
"""How the triggers fire (``Settings.trigger_mode``).

``precise``: per table, ``vocabulary_change_trigger`` AFTER INSERT OR DELETE OR TRUNCATE FOR EACH
STATEMENT, and ``vocabulary_update_trigger`` AFTER UPDATE OF <vocabulary columns> FOR EACH ROW
WHEN the text of those columns differs between OLD and NEW (without the column list on a table
with BEFORE UPDATE row triggers). ``statement``: one AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
FOR EACH STATEMENT trigger per table, so every statement notifies.
"""
TRIGGER_MODES: Final[tuple[TriggerMode, ...]] = get_args(TriggerMode)
DEFAULT_TRIGGER_MODE: Final[TriggerMode] = "precise"

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
    when_columns: tuple[str, ...] = ()
    """Row-level UPDATE trigger only: fire when the text of these columns changed."""
    update_of: tuple[str, ...] = ()
    """``UPDATE OF`` these columns only (empty: any UPDATE)."""


@dataclass(frozen=True, slots=True)
class InstalledTrigger:
    """What the catalog says about one installed trigger."""

    tgtype: int
    enabled: str
    calls_function: bool
    called: str
    has_when: bool
    update_of: frozenset[str]
    """The ``UPDATE OF`` columns (empty: any UPDATE)."""
    definition: str
    """``pg_get_triggerdef()``: the WHEN condition as PostgreSQL prints it."""


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
    mode: TriggerMode = DEFAULT_TRIGGER_MODE
    """The mode checked for (the configured one)."""
    installed_mode: TriggerMode | None = None
    """The mode whose triggers are installed exactly as rendered on every table (whatever the
    function looks like); None when neither mode's are."""
    before_update_tables: frozenset[str] = frozenset()
    """Tables of the mapping with BEFORE UPDATE row triggers (see :func:`trigger_specs`)."""


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


def trigger_specs(
    sources: SourceMap,
    mode: TriggerMode = DEFAULT_TRIGGER_MODE,
    before_update_tables: Collection[str] = (),
) -> list[TriggerSpec]:
    """The triggers ``mode`` installs for ``sources``, in table order.

    ``before_update_tables``: tables with BEFORE UPDATE row triggers. Their precise-mode UPDATE
    trigger has no ``UPDATE OF`` list: a BEFORE trigger can change a vocabulary column that the
    UPDATE statement does not name, and PostgreSQL decides ``UPDATE OF`` from the statement.
    Elsewhere the list lets an UPDATE of other columns skip the trigger before its WHEN
    condition is even prepared, which PostgreSQL does for every statement (bench/write_path.py:
    9.3 against 14.4 µs of server time per single-row UPDATE; 1.05x against 0.90x of no trigger
    at 16 clients).
    """
    _require_mode(mode)
    if mode == "statement":
        events = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
        return [TriggerSpec(table, TRIGGER_NAME, events) for table in sources.tables]
    specs: list[TriggerSpec] = []
    for table in sources.tables:
        specs.append(TriggerSpec(table, TRIGGER_NAME, ("INSERT", "DELETE", "TRUNCATE")))
        columns = sources.columns_of(table)
        specs.append(
            TriggerSpec(
                table,
                UPDATE_TRIGGER_NAME,
                ("UPDATE",),
                for_each_row=True,
                when_columns=columns,
                update_of=() if table in before_update_tables else columns,
            )
        )
    return specs


def when_condition(columns: Sequence[str], separator: str = " IS DISTINCT FROM ") -> str:
    """The WHEN condition of the row-level UPDATE trigger: did the text of ``columns`` change?

    Compares ``ROW(...)::text``, the columns' text as the loader reads it, rather than each
    column with ``=``: a type's equality can call different texts equal (citext ignores case,
    numeric ignores trailing zeros, a nondeterministic collation ignores accents), and the
    vocabulary would change without a notification. The row's text form is injective (NULL and
    '' differ), and ``IS DISTINCT FROM`` keeps the comparison NULL-safe.
    """
    old, new = (_row_text(row, columns, quote_ident) for row in ("OLD", "NEW"))
    return f"{old}{separator}{new}"


def _row_text(row: str, columns: Sequence[str], quote: Callable[[str], str]) -> str:
    return f"(ROW({', '.join(f'{row}.{quote(column)}' for column in columns)}))::text"


def printed_when_condition(quoted_columns: Sequence[str]) -> str:
    """:func:`when_condition` as ``pg_get_triggerdef()`` prints it, given the columns as the
    server's ``quote_ident()`` quotes them (only where needed). PostgreSQL has printed these
    expressions alike for many releases; the tests pass on 15 and 18."""
    old, new = (_row_text(row, quoted_columns, str) for row in ("old", "new"))
    return f"({old} IS DISTINCT FROM {new})"


# --- Rendering ---------------------------------------------------------------------------------

_STATEMENT_HEADER: Final = """\
-- vocabsync: real-time vocabulary sync triggers (PostgreSQL >= 14).
--
-- Every INSERT, UPDATE, DELETE or TRUNCATE on a vocabulary table sends one NOTIFY with the
-- table's name as payload: one per statement, not per row, so a bulk import sends one. PostgreSQL
-- delivers it only when the transaction commits (a rolled-back write sends nothing), and only
-- once per transaction for the same table. A DELETE or TRUNCATE that cascades through a foreign
-- key also notifies for the tables it cascades to. The bridge
-- (python -m vocabsync.services.vocabulary_sync_bridge) LISTENs and forwards it to Redis.
--
-- Writes never pay for a failed notify: the function catches its own errors and only raises a
-- WARNING. It runs with a fixed, empty search_path (the Supabase linter's
-- function_search_path_mutable) and so calls pg_catalog.pg_notify fully qualified.
--
-- Re-running this file is a no-op (CREATE OR REPLACE FUNCTION / CREATE OR REPLACE TRIGGER).
-- Undo it with vocabsync/supabase/rollback/20261128000100_vocabulary_sync_triggers_down.sql.
--
-- Generated by vocabsync.db.triggers.render_trigger_sql() for the default tables and the channel
-- 'vocabulary_changed'; a test keeps this file identical to that rendering, so do not edit it by
-- hand. `vocabsync migrate` applies the rendering for the configured VOCABSYNC_SOURCES and
-- VOCABSYNC_PG_CHANNEL in place of this file, and reinstalls triggers that were dropped or
-- altered.
"""
"""Statement mode's header: the first release's migration file, kept byte for byte."""

_PRECISE_HEADER: Final = """\
-- vocabsync: real-time vocabulary sync triggers, precise mode (PostgreSQL >= 14).
--
-- Replaces the statement-mode triggers of 20261128000100_vocabulary_sync_triggers.sql, which
-- notify on every UPDATE, with two triggers per vocabulary table:
--
--   vocabulary_change_trigger  AFTER INSERT OR DELETE OR TRUNCATE, FOR EACH STATEMENT: one NOTIFY
--                              per statement, as before (a bulk import sends one);
--   vocabulary_update_trigger  AFTER UPDATE OF the table's vocabulary columns, FOR EACH ROW,
--                              only WHEN their text changed (NULL-safe). An UPDATE of other
--                              columns, or one writing the values already there, sends nothing.
--
-- Why: NOTIFY takes a cluster-wide lock at commit and holds it through the WAL flush, so
-- notifying transactions commit one at a time; writes that cannot change the vocabulary should
-- not queue for that lock (README, "Write path"). The comparison is on the columns' text, as the
-- bridge reads them: a change the column type's equality ignores (citext case, numeric scale)
-- still notifies. The UPDATE OF list spares other UPDATEs even the WHEN condition; but it is
-- decided from the UPDATE statement, so on a table with BEFORE UPDATE row triggers (which may
-- change a vocabulary column the statement does not name) `vocabsync migrate` installs the
-- trigger without it, and `vocabsync migrate --check` reports a table that gained one since.
--
-- The payload is the table's name. PostgreSQL delivers a notification only when the transaction
-- commits (a rolled-back write sends nothing) and folds identical ones within a transaction, so
-- an UPDATE that renames many rows still sends one. A DELETE or TRUNCATE that cascades through a
-- foreign key also notifies for the tables it cascades to. The bridge
-- (python -m vocabsync.services.vocabulary_sync_bridge) LISTENs and forwards it to Redis.
--
-- Writes never pay for a failed notify: the function catches its own errors and only raises a
-- WARNING. It runs with a fixed, empty search_path (the Supabase linter's
-- function_search_path_mutable) and so calls pg_catalog.pg_notify fully qualified.
--
-- Re-running this file is a no-op (CREATE OR REPLACE FUNCTION / CREATE OR REPLACE TRIGGER).
-- Undo it with vocabsync/supabase/rollback/20261128000100_vocabulary_sync_triggers_down.sql (both modes).
-- `vocabsync migrate --mode statement` (or VOCABSYNC_TRIGGER_MODE=statement) installs statement
-- mode instead.
--
-- Generated by vocabsync.db.triggers.render_trigger_sql() for the default tables and the channel
-- 'vocabulary_changed'; a test keeps this file identical to that rendering, so do not edit it by
-- hand. `vocabsync migrate` applies the rendering for the configured VOCABSYNC_SOURCES,
-- VOCABSYNC_PG_CHANNEL and VOCABSYNC_TRIGGER_MODE in place of this file, and reinstalls triggers
-- that were dropped or altered.
"""

_FAILURE_LOG_HEADER: Final = """\
-- vocabsync: count the notifies the vocabulary trigger fails to send (PostgreSQL >= 14).
--
-- The trigger function never lets a failed notify fail the write: it catches the error and
-- raises a WARNING, which only the PostgreSQL log keeps. This migration adds the table
-- public.vocabsync_trigger_failures (one row per table: failures, last_failure_at, last_error)
-- and re-creates the function so that, after the WARNING, it also counts the failure there, in a
-- nested block that cannot fail the write either. The bridge exports the sum as the gauge
-- vocabsync_trigger_failures (alert VocabsyncTriggerFailures; docs/operations.md).
--
-- Privileges: the function is not SECURITY DEFINER, so it writes the table as the role that runs
-- the write. Roles that write the vocabulary tables without owning this table need
--     GRANT SELECT, INSERT, UPDATE ON public.vocabsync_trigger_failures TO <writer role>;
-- (SELECT because the upsert reads the old count). Without it a failure is not counted, but the
-- write still commits and the WARNING is still logged. Nothing is granted to PUBLIC: any role
-- could then reset the counter that the alert watches.
--
-- The triggers are re-created unchanged, in precise mode (`vocabsync migrate` renders the
-- configured VOCABSYNC_SOURCES, VOCABSYNC_PG_CHANNEL and VOCABSYNC_TRIGGER_MODE instead).
-- Re-running this file is a no-op (CREATE TABLE IF NOT EXISTS, CREATE OR REPLACE). The rollback
-- script (vocabsync/supabase/rollback/20261128000100_vocabulary_sync_triggers_down.sql) keeps the table:
-- its history outlives the triggers.
--
-- Generated by vocabsync.db.triggers.render_trigger_sql() for the default tables and the channel
-- 'vocabulary_changed'; a test keeps this file identical to that rendering, so do not edit it by
-- hand.
"""
"""Revision 2's header (whatever the mode: the committed file is precise mode's rendering)."""

_FAILURE_LOG_SQL: Final = f"""\
CREATE TABLE IF NOT EXISTS {FAILURE_LOG_TABLE} (
    table_name text PRIMARY KEY,
    failures bigint NOT NULL DEFAULT 0,
    last_failure_at timestamptz,
    last_error text
);
"""
"""The failure log. Kept by the rollback: a count of lost notifications is history, not part of
the triggers."""

_HEADERS: Final[Mapping[TriggerMode, str]] = {
    "statement": _STATEMENT_HEADER,
    "precise": _PRECISE_HEADER,
}

_ROLLBACK_HEADER: Final = """\
-- vocabsync: undo the vocabulary sync triggers, in either mode:
-- vocabsync/supabase/migrations/20261128000100_vocabulary_sync_triggers.sql (statement mode),
-- vocabsync/supabase/migrations/20261128000200_vocabulary_precise_triggers.sql (precise mode) and
-- vocabsync/supabase/migrations/20261128000300_vocabulary_trigger_failure_log.sql (the failure count).
--
-- Kept outside vocabsync/supabase/migrations so the Supabase CLI never applies it. Run it by hand:
--     psql "$DATABASE_URL" -f vocabsync/supabase/rollback/20261128000100_vocabulary_sync_triggers_down.sql
-- Notifications stop; API instances keep serving their last vocabulary and read through to the
-- database when they need to. Writes are unaffected.
--
-- `vocabsync migrate` reinstalls the triggers (it repairs missing ones), so stop running it while
-- they should stay off. To let `supabase db push` apply the migrations again, mark them reverted:
--     supabase migration repair --status reverted 20261128000100 20261128000200 20261128000300
--
-- The failure log public.vocabsync_trigger_failures is kept: its counts are history, and the
-- migrations re-create it only if it is missing. Drop it by hand if you want it gone.
--
-- The function is dropped without CASCADE: if a trigger outside this list still uses it (left
-- over from an older VOCABSYNC_SOURCES), this fails and changes nothing; drop that trigger first.
--
-- Generated by vocabsync.db.triggers.render_rollback_sql() for the default tables; a test keeps this
-- file identical to that rendering.
"""

_FUNCTION_BODY_V1: Final = """\
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
"""Revision 1, the first two trigger migrations': a failed notify only leaves a WARNING."""

_FUNCTION_BODY: Final = """\
BEGIN
    BEGIN
        PERFORM pg_catalog.pg_notify({channel}, TG_TABLE_NAME);
    EXCEPTION WHEN OTHERS THEN
        -- A failed notify must never fail the write: warn, count it and carry on.
        RAISE WARNING 'vocabsync: failed to notify vocabulary change on %: %',
            TG_TABLE_NAME, SQLERRM;
        BEGIN
            INSERT INTO public.vocabsync_trigger_failures AS f
                (table_name, failures, last_failure_at, last_error)
            VALUES (TG_TABLE_NAME, 1, pg_catalog.now(), SQLERRM)
            ON CONFLICT (table_name) DO UPDATE
                SET failures = f.failures + 1,
                    last_failure_at = excluded.last_failure_at,
                    last_error = excluded.last_error;
        EXCEPTION WHEN OTHERS THEN
            -- Nor may counting it (no table, no privilege): the WARNING above is the record.
            NULL;
        END;
    END;
    RETURN NULL;
END;"""
"""Revision 2 (the current one): the failure is also counted in the failure log."""

_FUNCTION_BODIES: Final[Mapping[int, str]] = {1: _FUNCTION_BODY_V1, 2: _FUNCTION_BODY}


def function_body(channel: str, revision: int = CURRENT_REVISION) -> str:
    """The PL/pgSQL body of the trigger function (what ``pg_proc.prosrc`` holds, give or take
    the surrounding newlines). Both modes and both trigger levels call it; an AFTER trigger's
    return value is ignored. ``revision`` selects an older body, so committed migrations keep
    rendering as they were released."""
    _require_revision(revision)
    return _FUNCTION_BODIES[revision].replace("{channel}", quote_literal(channel))


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
    when = ""
    if spec.when_columns:
        condition = when_condition(spec.when_columns, separator="\n          IS DISTINCT FROM ")
        when = f"    WHEN ({condition})\n"
    events = _events_sql(spec.events)
    if spec.update_of:
        events += " OF " + ", ".join(quote_ident(column) for column in spec.update_of)
    return (
        f"CREATE OR REPLACE TRIGGER {_trigger_name_sql(spec.name)}\n"
        f"    AFTER {events} ON {quote_ident(spec.table)}\n"
        f"    FOR EACH {level}\n"
        f"{when}"
        f"    EXECUTE FUNCTION {FUNCTION_SIGNATURE};\n"
    )


def _drop_trigger_sql(table: str, name: str) -> str:
    return f"DROP TRIGGER IF EXISTS {_trigger_name_sql(name)} ON {quote_ident(table)};\n"


def render_trigger_sql(
    sources: SourceMap,
    channel: str,
    *,
    mode: TriggerMode = DEFAULT_TRIGGER_MODE,
    revision: int = CURRENT_REVISION,
    drop_other_modes: bool = False,
    before_update_tables: Collection[str] = (),
) -> str:
    """The trigger migration for ``sources``, ``channel`` and ``mode``: the function, then each
    table's triggers. For the default mapping and ``vocabulary_changed`` it is the committed
    migration file of that mode.

    ``drop_other_modes`` appends ``DROP TRIGGER IF EXISTS`` for the trigger names ``mode`` does
    not use (statement mode drops precise mode's UPDATE trigger): what ``vocabsync migrate``
    runs, so that switching modes leaves nothing behind. The committed files go without: each is
    applied on a database that holds no trigger of a later mode.

    ``before_update_tables``: see :func:`trigger_specs` (``migrate`` asks the database; the
    committed files assume none, as in the base schema).

    ``revision``: see :data:`REVISIONS`. Each committed file is the rendering of the revision it
    was released with; revision 2 also creates the failure log the function writes to.

    The channel is not validated here (settings do that), so tests can install a function whose
    notify fails.
    """
    specs = trigger_specs(sources, mode, before_update_tables)
    body = function_body(channel, revision)
    tag = _dollar_tag(body)
    parts = [_HEADERS[mode]] if revision == 1 else [_FAILURE_LOG_HEADER, _FAILURE_LOG_SQL]
    parts += [
        f"CREATE OR REPLACE FUNCTION {FUNCTION_SIGNATURE}\n"
        "    RETURNS trigger\n"
        "    LANGUAGE plpgsql\n"
        "    SET search_path = ''\n"
        f"AS {tag}\n{body}\n{tag};\n",
    ]
    parts.extend(_create_trigger_sql(spec) for spec in specs)
    if drop_other_modes:
        used = {(spec.table, spec.name) for spec in specs}
        drops = [
            _drop_trigger_sql(table, name)
            for table in sources.tables
            for name in TRIGGER_NAMES
            if (table, name) not in used
        ]
        if drops:
            parts.append("".join(drops))
    return "\n".join(parts)


def render_rollback_sql(sources: SourceMap) -> str:
    """SQL that drops both modes' triggers on the tables of ``sources`` and the function, in one
    transaction.

    Tables that no longer exist are fine (``DROP TRIGGER IF EXISTS`` only notices them).
    """
    drops = "".join(
        _drop_trigger_sql(table, name) for table in sources.tables for name in TRIGGER_NAMES
    )
    return (
        f"{_ROLLBACK_HEADER}\n"
        "BEGIN;\n\n"
        f"{drops}\n"
        f"DROP FUNCTION IF EXISTS {FUNCTION_SIGNATURE};\n\n"
        "COMMIT;\n"
    )


def _require_revision(revision: int) -> None:
    if revision not in REVISIONS:
        raise ValueError(f"unknown function revision {revision!r}; known: {REVISIONS}")


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

_FAILURE_LOG_QUERY: Final = "SELECT pg_catalog.to_regclass(%s) IS NOT NULL"

# One row per (table, trigger name): the table (if it exists), its columns, the installed trigger
# of that name (if any), and whether the table (or a partition) has BEFORE UPDATE row triggers.
_BEFORE_UPDATE_ROW: Final = TGTYPE_ROW | TGTYPE_BEFORE | TGTYPE_UPDATE
_TRIGGERS_QUERY: Final = f"""
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
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = tr.tgrelid AND a.attnum = ANY (tr.tgattr::pg_catalog.int2[])),
       pg_catalog.pg_get_triggerdef(tr.oid),
       EXISTS (SELECT FROM pg_catalog.pg_trigger b
               WHERE (b.tgrelid = c.oid  -- a plain table is not in its own "partition tree"
                      OR b.tgrelid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree(c.oid) p))
                 AND NOT b.tgisinternal
                 AND b.tgtype::int & {_BEFORE_UPDATE_ROW} = {_BEFORE_UPDATE_ROW})
FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[]))
     WITH ORDINALITY AS s(quoted, trigger_name, n)
LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(s.quoted)
LEFT JOIN pg_catalog.pg_trigger tr
       ON tr.tgrelid = c.oid AND tr.tgname = s.trigger_name AND NOT tr.tgisinternal
ORDER BY s.n
"""

# The server's own quoting (only where needed, by its keyword list), as pg_get_triggerdef uses.
_QUOTE_QUERY: Final = """
SELECT pg_catalog.quote_ident(u.name)
FROM pg_catalog.unnest(%s::text[]) WITH ORDINALITY AS u(name, n)
ORDER BY u.n
"""


async def check_triggers(
    conn: AsyncConn, settings: Settings, *, mode: TriggerMode | None = None
) -> TriggerCheck:
    """Compare what is installed with what ``settings`` need; list every difference.

    Checks the function (present, a trigger function with the current revision's body for
    ``settings.pg_channel``: a function left from another channel would notify where nobody
    listens), the failure log table (present, or failures go uncounted), every table and
    vocabulary column of the mapping, and each table's triggers for ``mode`` (default
    ``settings.trigger_mode``): timing, level, events, enabled, calling the function, the WHEN
    condition comparing exactly the mapped columns, and no trigger of the other mode left behind.
    Also finds which mode, if either, is completely installed: when it is not the one checked
    for, that is the one problem reported about the triggers.
    """
    mode = settings.trigger_mode if mode is None else mode
    _require_mode(mode)
    sources = settings.sources
    function_problems: list[str] = []
    config_problems: list[str] = []
    missing_tables: list[str] = []

    function_oid = await _check_function(conn, settings.pg_channel, function_problems)
    cursor = await conn.execute(_FAILURE_LOG_QUERY, (FAILURE_LOG_TABLE,))
    row = await cursor.fetchone()
    if row is None or not row[0]:
        function_problems.append(
            f"table {FAILURE_LOG_TABLE} (where the function counts failed notifies) is missing"
        )

    checkable: list[str] = []
    for table in sources.tables:
        if _quote_or_none(table) is None:
            missing_tables.append(table)
            config_problems.append(
                f"table name {table!r} is not a valid PostgreSQL identifier (empty, NUL or over "
                f"{MAX_IDENTIFIER_BYTES} bytes): fix VOCABSYNC_SOURCES"
            )
        else:
            checkable.append(table)

    pairs = [(table, name) for table in checkable for name in TRIGGER_NAMES]
    cursor = await conn.execute(
        _TRIGGERS_QUERY, ([quote_ident(table) for table, _ in pairs], [n for _, n in pairs])
    )
    rows = await cursor.fetchall()
    present: list[str] = []
    before_update_tables: set[str] = set()
    installed: dict[tuple[str, str], InstalledTrigger] = {}
    for (table, name), row in zip(pairs, rows, strict=True):
        (_, exists, relkind, columns, has_trigger, tgtype, enabled, tgfoid, called, has_when,
         update_of, definition, has_before_update) = row  # fmt: skip
        if not exists:
            if name == TRIGGER_NAMES[0]:
                missing_tables.append(table)
                config_problems.append(_missing_table_problem(sources, table))
            continue
        if name == TRIGGER_NAMES[0]:
            present.append(table)
            config_problems.extend(_table_problems(sources, table, relkind, columns))
            if has_before_update:
                before_update_tables.add(table)
        if has_trigger:
            installed[(table, name)] = InstalledTrigger(
                tgtype=tgtype,
                enabled=enabled,
                calls_function=function_oid is not None and tgfoid == function_oid,
                called=called,
                has_when=has_when,
                update_of=frozenset(update_of or ()),
                definition=definition or "",
            )

    printed = await _server_quoted(
        conn, list(dict.fromkeys(c for t in present for c in sources.columns_of(t)))
    )
    specs = {
        m: [
            spec
            for spec in trigger_specs(sources, m, before_update_tables)
            if spec.table in present
        ]
        for m in TRIGGER_MODES
    }
    per_mode = {m: _mode_problems(m, specs, installed, printed) for m in TRIGGER_MODES}
    installed_mode: TriggerMode | None = None
    if present and not config_problems:
        installed_mode = next((m for m in TRIGGER_MODES if not per_mode[m]), None)

    if installed_mode is not None and installed_mode != mode:
        trigger_problems = [
            f"the {installed_mode}-mode triggers are installed, but the configured mode is "
            f"{mode} (VOCABSYNC_TRIGGER_MODE or `vocabsync migrate --mode`): `vocabsync "
            "migrate` switches them"
        ]
    else:
        trigger_problems = per_mode[mode]
    problems = config_problems + function_problems + trigger_problems
    return TriggerCheck(
        ok=not problems,
        problems=problems,
        missing_tables=missing_tables,
        configuration_problems=config_problems,
        mode=mode,
        installed_mode=installed_mode,
        before_update_tables=frozenset(before_update_tables),
    )


async def _server_quoted(conn: AsyncConn, names: list[str]) -> dict[str, str]:
    """``names`` quoted by the server's ``quote_ident()``."""
    if not names:
        return {}
    cursor = await conn.execute(_QUOTE_QUERY, (names,))
    return {name: row[0] for name, row in zip(names, await cursor.fetchall(), strict=True)}


def _mode_problems(
    mode: TriggerMode,
    specs: Mapping[TriggerMode, list[TriggerSpec]],
    installed: Mapping[tuple[str, str], InstalledTrigger],
    printed: Mapping[str, str],
) -> list[str]:
    """What differs from ``mode``'s triggers on the existing tables, in table order."""
    problems: list[str] = []
    wanted = {(spec.table, spec.name): spec for spec in specs[mode]}
    for (table, name), spec in wanted.items():
        found = installed.get((table, name))
        if found is None:
            problems.append(f"trigger {name} on {quote_ident(table)} is missing")
            continue
        printed_when = None
        if spec.when_columns and all(column in printed for column in spec.when_columns):
            printed_when = printed_when_condition([printed[c] for c in spec.when_columns])
        problems.extend(_trigger_problems(spec, found, printed_when))
    for table, name in installed:
        if (table, name) not in wanted:
            owners = [m for m in TRIGGER_MODES if any(s.name == name for s in specs[m])]
            problems.append(
                f"trigger {name} on {quote_ident(table)} is not part of {mode} mode (left over "
                f"from {' or '.join(owners) or 'an unknown'} mode)"
            )
    return problems


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
    spec: TriggerSpec, found: InstalledTrigger, printed_when: str | None
) -> list[str]:
    """How one installed trigger differs from ``spec``; ``printed_when`` is its expected WHEN
    condition as the server prints it (None when it cannot be known: a column is missing)."""
    what = f"trigger {spec.name} on {quote_ident(spec.table)}"
    tgtype = found.tgtype
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
    problems.extend(_update_of_problems(spec, found.update_of))
    if not spec.when_columns:
        if found.has_when:
            problems.append(f"{what} has a WHEN condition")
    elif not found.has_when:
        problems.append(f"{what} has no WHEN condition, so it fires on every UPDATE")
    elif printed_when is None or f" WHEN ({printed_when}) EXECUTE " not in found.definition:
        columns = ", ".join(spec.when_columns)
        problems.append(
            f"{what} does not compare exactly the vocabulary columns ({columns}): "
            "VOCABSYNC_SOURCES changed since it was installed, or it was edited"
        )
    if found.enabled == "D":
        problems.append(f"{what} is disabled")
    elif found.enabled == "R":
        problems.append(f"{what} fires only in replica mode (ENABLE REPLICA TRIGGER)")
    if not found.calls_function:
        problems.append(
            f"{what} calls another function ({found.called}) instead of {FUNCTION_SIGNATURE}"
        )
    return problems


def _update_of_problems(spec: TriggerSpec, installed: frozenset[str]) -> list[str]:
    what = f"trigger {spec.name} on {quote_ident(spec.table)}"
    if installed == frozenset(spec.update_of):
        return []
    if not spec.update_of and spec.for_each_row:
        return [
            f"{what} fires only on UPDATE OF some columns, but {quote_ident(spec.table)} has "
            "BEFORE UPDATE row triggers, which may change a vocabulary column that the UPDATE "
            "does not name"
        ]
    if not spec.update_of:
        return [f"{what} fires only on UPDATE OF some columns"]
    if not installed:
        return [f"{what} fires on every UPDATE, not only on UPDATE OF the vocabulary columns"]
    return [
        f"{what} fires on UPDATE OF other columns ({', '.join(sorted(installed))}) than the "
        f"vocabulary columns ({', '.join(spec.update_of)})"
    ]
