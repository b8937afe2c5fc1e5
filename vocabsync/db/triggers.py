"""The NOTIFY triggers: which ones each mode installs, and their SQL, rendered from the mapping.

Three modes (``VOCABSYNC_TRIGGER_MODE``, ``vocabsync migrate --mode``):

* ``precise``: the payload is the table's name, and the bridge reads that table's fields whole.
  INSERT, DELETE and TRUNCATE notify once per statement; an UPDATE notifies only when the text of a
  vocabulary column of some row changed. NOTIFY serialises committing transactions cluster-wide, so
  writes that cannot change the vocabulary must not send one (ARCHITECTURE invariant 5; README,
  "Write path"). The UPDATE trigger is ``AFTER UPDATE OF <the vocabulary columns>``, so an UPDATE
  that names none of them costs next to nothing, except on a table with BEFORE UPDATE row triggers:
  one of those may change a vocabulary column the UPDATE does not name, which an ``UPDATE OF``
  trigger would not see, so there the trigger fires on every UPDATE and only its WHEN condition
  filters.
* ``statement``: the design document's triggers, every statement notifies, UPDATEs included.
* ``delta`` (the default): like precise mode in what notifies, but the payload says which vocabulary
  values changed (JSON, see :mod:`vocabsync.db.notifications`), so the bridge can look those up
  instead of reloading whole fields. INSERT and DELETE read the values from statement-level
  transition tables: one notification per statement, whatever the row count. An UPDATE's row trigger
  (the same ``UPDATE OF ... WHEN`` as precise mode's) lists the row's old and new values that the
  transaction has not listed yet, remembered in a transaction-local setting: all of a transaction's
  notifications are delivered together, at commit, so each value needs saying once, and renaming
  5,000 rows from 50 names to one sends 50 notifications, not 5,000. Too many values (more than fit
  in a notification, or over :data:`MAX_DELTAS_PER_TRANSACTION` notifications), or TRUNCATE, ask for
  a reload of the columns instead. The lookups need an index per vocabulary column
  (:mod:`vocabsync.db.lookup_indexes`).

Precise and statement modes share the function ``public.notify_vocabulary_change()`` and the
statement trigger's name (``vocabulary_change_trigger``, the design document's); delta mode calls
``public.vocabsync_notify_delta('<table>')`` from four triggers per table. Switching is ``CREATE
OR REPLACE`` and ``DROP TRIGGER``, in one transaction: no moment without triggers, none with two
modes' triggers. The function a mode no longer uses is left in place (dropping it would fail on
a trigger left from an older mapping); the rollback drops both.

The committed migrations are renderings for the default mapping and channel (tests keep them
byte-identical), each of the revision it was released with (:data:`REVISIONS`):
``20261128000100_vocabulary_sync_triggers.sql`` (statement mode, revision 1: the first release),
``20261128000200_vocabulary_precise_triggers.sql`` (precise, revision 1),
``20261128000300_vocabulary_trigger_failure_log.sql`` (precise, revision 2: the failure log) and
``20261128000400_vocabulary_delta_triggers.sql`` (delta, revision 3: delta mode, its indexes,
the identity function). Applied migrations are never edited. ``vocabsync migrate`` applies the
current revision's rendering for the configured mapping, channel and mode instead, and builds the
indexes concurrently: a deployment whose tables are named differently changes configuration, not
code.

The SQL text lives in ``vocabsync/db/sql/*.sql`` (:mod:`vocabsync.db.templates`); this module
quotes names (:mod:`vocabsync.db.quoting`, no connection needed) and assembles the statements,
so the committed files can be compared with the rendering in a plain unit test. The catalogue
checks are in :mod:`vocabsync.db.catalogue`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from vocabsync.db import templates
from vocabsync.db.lookup_indexes import create_index_sql, lookup_indexes
from vocabsync.db.quoting import (
    MAX_IDENTIFIER_BYTES as MAX_IDENTIFIER_BYTES,
    quote_ident as quote_ident,
    quote_literal as quote_literal,
)
from vocabsync.sources import SourceMap

FUNCTION_SIGNATURE: Final = "public.notify_vocabulary_change()"
"""Precise and statement modes' trigger function, schema-qualified so the trigger does not depend
on a search_path."""
DELTA_FUNCTION_SIGNATURE: Final = "public.vocabsync_notify_delta()"
"""Delta mode's trigger function; each trigger passes its table's name as the argument."""
IDENTITY_FUNCTION_SIGNATURE: Final = "public.vocabsync_database_identity()"
"""Returns the database's identity (cluster, timeline, database, generation), which the loader
reads with every version (revision 3, every mode)."""
TRIGGER_NAME: Final = "vocabulary_change_trigger"
"""The statement-level trigger on every vocabulary table, in every mode (the design document's
name): INSERT, DELETE and TRUNCATE in precise mode, plus UPDATE in statement mode; TRUNCATE alone
in delta mode."""
UPDATE_TRIGGER_NAME: Final = "vocabulary_update_trigger"
"""Precise and delta modes' row-level UPDATE trigger, filtered by a WHEN condition on the
vocabulary columns."""
INSERT_TRIGGER_NAME: Final = "vocabulary_insert_trigger"
"""Delta mode: AFTER INSERT FOR EACH STATEMENT, with the new rows as a transition table."""
DELETE_TRIGGER_NAME: Final = "vocabulary_delete_trigger"
"""Delta mode: AFTER DELETE FOR EACH STATEMENT, with the old rows as a transition table."""
TRIGGER_NAMES: Final = (TRIGGER_NAME, UPDATE_TRIGGER_NAME, INSERT_TRIGGER_NAME, DELETE_TRIGGER_NAME)
"""Every trigger name any mode uses: installing one mode drops the names it does not use."""
NEW_TABLE: Final = "vocabsync_new"
OLD_TABLE: Final = "vocabsync_old"
"""The transition tables' names in delta mode's INSERT and DELETE triggers (the function reads
them by these names)."""
DEFAULT_CHANNEL: Final = "vocabulary_changed"
FAILURE_LOG_TABLE: Final = "public.vocabsync_trigger_failures"
"""Where the functions count the notifies they failed to send, per table (the bridge exports the
sum as the gauge ``vocabsync_trigger_failures``)."""

MAX_PAYLOAD_BYTES: Final = 7_800
"""The longest delta payload. NOTIFY refuses 8,000 bytes and more; the bridge's contract is
under 7,900."""
MAX_DELTAS_PER_TRANSACTION: Final = 100
"""Notifications listing values per table and transaction; later changes in the transaction to
that table are announced as reloads (one per set of columns: PostgreSQL sends identical payloads
of a transaction once). Bounds what a transaction of many statements, or an UPDATE of many rows
to many new values, puts in the queue and costs the bridge."""
_LIST_OVERHEAD: Final = 200
"""Room in a payload beside one column's list: the table's and column's names (63 bytes at most
each) and the JSON around them. What a transaction's UPDATEs remember having listed for a column
is kept under :data:`MAX_PAYLOAD_BYTES` minus this; past it, the column is reloaded instead."""

REVISIONS: Final = (1, 2, 3)
"""Revisions of the rendering: 1 only warns on a failed notify (the first two trigger migrations,
already applied in deployments, so they must keep rendering it); 2 also counts the failure in
:data:`FAILURE_LOG_TABLE`, which its rendering creates; 3 adds delta mode, the lookup indexes
(only in the committed file; ``migrate`` builds them concurrently) and the identity function."""
CURRENT_REVISION: Final = 3
"""What ``vocabsync migrate`` installs and the catalogue check expects."""

TriggerMode = Literal["precise", "statement", "delta"]
"""How the triggers fire (``Settings.trigger_mode``); see the module's docstring."""
TRIGGER_MODES: Final[tuple[TriggerMode, ...]] = get_args(TriggerMode)
DEFAULT_TRIGGER_MODE: Final[TriggerMode] = "delta"


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
    function: str = FUNCTION_SIGNATURE
    arguments: tuple[str, ...] = ()
    old_table: str | None = None
    """``REFERENCING OLD TABLE AS`` this name (a statement-level transition table)."""
    new_table: str | None = None
    """``REFERENCING NEW TABLE AS`` this name."""


def trigger_specs(
    sources: SourceMap,
    mode: TriggerMode = DEFAULT_TRIGGER_MODE,
    before_update_tables: Collection[str] = (),
) -> list[TriggerSpec]:
    """The triggers ``mode`` installs for ``sources``, in table order.

    ``before_update_tables``: tables with BEFORE UPDATE row triggers. Their UPDATE triggers have
    no ``UPDATE OF`` list: a BEFORE trigger can change a vocabulary column that the UPDATE
    statement does not name, and PostgreSQL decides ``UPDATE OF`` from the statement. Elsewhere
    the list lets an UPDATE of other columns skip the trigger before its WHEN condition is even
    prepared, which PostgreSQL does for every statement (bench/write_path.py: 9.3 against 14.4
    µs of server time per single-row UPDATE; 1.05x against 0.90x of no trigger at 16 clients).
    """
    require_mode(mode)
    if mode == "statement":
        events = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
        return [TriggerSpec(table, TRIGGER_NAME, events) for table in sources.tables]
    specs: list[TriggerSpec] = []
    for table in sources.tables:
        columns = sources.columns_of(table)
        update_of = () if table in before_update_tables else columns
        if mode == "precise":
            specs.append(TriggerSpec(table, TRIGGER_NAME, ("INSERT", "DELETE", "TRUNCATE")))
            specs.append(
                TriggerSpec(
                    table,
                    UPDATE_TRIGGER_NAME,
                    ("UPDATE",),
                    for_each_row=True,
                    when_columns=columns,
                    update_of=update_of,
                )
            )
            continue
        specs += [
            TriggerSpec(
                table,
                INSERT_TRIGGER_NAME,
                ("INSERT",),
                function=DELTA_FUNCTION_SIGNATURE,
                arguments=(table,),
                new_table=NEW_TABLE,
            ),
            TriggerSpec(
                table,
                DELETE_TRIGGER_NAME,
                ("DELETE",),
                function=DELTA_FUNCTION_SIGNATURE,
                arguments=(table,),
                old_table=OLD_TABLE,
            ),
            TriggerSpec(
                table,
                UPDATE_TRIGGER_NAME,
                ("UPDATE",),
                for_each_row=True,
                when_columns=columns,
                update_of=update_of,
                function=DELTA_FUNCTION_SIGNATURE,
                arguments=(table,),
            ),
            TriggerSpec(
                table,
                TRIGGER_NAME,
                ("TRUNCATE",),
                function=DELTA_FUNCTION_SIGNATURE,
                arguments=(table,),
            ),
        ]
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

_HEADERS: Final[Mapping[TriggerMode, str]] = {
    "statement": "statement_header.sql",
    "precise": "precise_header.sql",
}
"""Revision 1's headers: the first two migration files, kept byte for byte."""
_NOTIFY_BODIES: Final[Mapping[int, str]] = {1: "notify_body_v1.sql", 2: "notify_body_v2.sql"}
"""``public.notify_vocabulary_change()``'s body: revision 1 only leaves a WARNING when a notify
fails, 2 also counts it in the failure log (and revision 3 keeps that body)."""


def function_body(channel: str, revision: int = CURRENT_REVISION) -> str:
    """The PL/pgSQL body of ``public.notify_vocabulary_change()`` (what ``pg_proc.prosrc``
    holds, give or take the surrounding newlines). Precise and statement modes' triggers, both
    levels, call it; an AFTER trigger's return value is ignored. ``revision`` selects an older
    body, so committed migrations keep rendering as they were released."""
    require_revision(revision)
    name = _NOTIFY_BODIES[min(revision, 2)]
    return templates.render(name, channel=quote_literal(channel)).removesuffix("\n")


def delta_function_body(sources: SourceMap, channel: str) -> str:
    """The PL/pgSQL body of ``public.vocabsync_notify_delta()`` for ``sources``: one branch per
    table, reading that table's vocabulary columns by name (static SQL, so PostgreSQL caches its
    plans per trigger)."""
    heads = [
        _delta_head(index, table, sources.columns_of(table), channel)
        for index, table in enumerate(sources.tables)
    ]
    branches = [_delta_branch(table, sources.columns_of(table)) for table in sources.tables]
    return templates.render(
        "delta_body.sql",
        heads="".join(heads).rstrip("\n"),
        branches="".join(branches).rstrip("\n"),
        channel=quote_literal(channel),
        max_list_bytes=str(MAX_PAYLOAD_BYTES - _LIST_OVERHEAD),
        max_payload_bytes=str(MAX_PAYLOAD_BYTES),
        max_deltas=str(MAX_DELTAS_PER_TRANSACTION),
    ).removesuffix("\n")


def _delta_head(index: int, table: str, columns: Sequence[str], channel: str) -> str:
    """The table's first branch: for an INSERT or DELETE of one row (the usual write), the
    whole notification in one query, counter included, since every PL/pgSQL statement costs
    (the dozen it replaces cost about 3 µs more per single-row INSERT; README, "Write path");
    else the table's names, and for an INSERT or DELETE the number of rows (counting no further
    than two) and the listing of the first."""
    quoted = [quote_ident(column) for column in columns]
    keys = [f"{_json_string(column)}:" for column in columns]
    row_listing = ",".join(
        f"\n                           CASE WHEN pg_catalog.btrim(r.{column}::text,"
        f" E' \\t\\r\\n') <> ''\n                           THEN {quote_literal(key + '[')}"
        f" || pg_catalog.to_json(r.{column}::text)::text || ']' END"
        for column, key in zip(quoted, keys, strict=True)
    )

    def one_row(transition: str) -> str:
        return templates.render(
            "delta_one_row.sql",
            transition=transition,
            payload_head=quote_literal('{"t":' + _json_string(table) + ',"c":{'),
            counter=quote_literal(f"vocabsync.delta_{index}_n"),
            channel=quote_literal(channel),
            max_deltas=str(MAX_DELTAS_PER_TRANSACTION),
            max_payload_bytes=str(MAX_PAYLOAD_BYTES),
            row_listing=row_listing,
        ).removesuffix("\n")

    return templates.render(
        "delta_head.sql",
        table=quote_literal(table),
        head=quote_literal('{"t":' + _json_string(table)),
        index=str(index),
        one_inserted=one_row("vocabsync_new"),
        one_deleted=one_row("vocabsync_old"),
        row_listing=row_listing,
    )


def _delta_branch(table: str, columns: Sequence[str]) -> str:
    """The table's second branch, for everything else: its columns, and their values."""
    quoted = [quote_ident(column) for column in columns]

    def values(transition: str) -> str:
        """Each distinct value of each column once, and no more than could fit in a payload:
        a list cut at the limit is always too long to send, so it becomes a reload."""
        return ",\n".join(
            templates.render(
                "delta_list.sql",
                column=column,
                transition=transition,
                max_values=str(MAX_PAYLOAD_BYTES // 4 + 1),
            ).rstrip("\n")
            for column in quoted
        )

    return templates.render(
        "delta_table.sql",
        table=quote_literal(table),
        columns=_text_array(columns),
        keys=_text_array([f"{_json_string(column)}:" for column in columns]),
        old_texts=", ".join(f"OLD.{column}::text" for column in quoted),
        new_texts=", ".join(f"NEW.{column}::text" for column in quoted),
        row_texts=", ".join(f"r.{column}::text" for column in quoted),
        inserted_values=values(NEW_TABLE),
        deleted_values=values(OLD_TABLE),
    )


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _text_array(items: Sequence[str]) -> str:
    return "ARRAY[" + ", ".join(quote_literal(item) for item in items) + "]"


def identity_function_body() -> str:
    """The PL/pgSQL body of ``public.vocabsync_database_identity()``."""
    return templates.load("identity_body.sql").removesuffix("\n")


def identity_sql() -> str:
    """``public.vocabsync_database_identity()``, and its generation comment (set only once)."""
    function = _function_sql(
        IDENTITY_FUNCTION_SIGNATURE, identity_function_body(), returns="text", stable=True
    )
    return f"{function}\n{templates.load('identity_generation.sql')}"


def _dollar_tag(body: str) -> str:
    """A dollar-quote tag that does not occur in ``body`` (only a strange channel could)."""
    tag, n = "$function$", 0
    while tag in body:
        n += 1
        tag = f"$function{n}$"
    return tag


def _trigger_name_sql(name: str) -> str:
    """Trigger names are this module's own constants: plain lower-case words need no quotes."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else quote_ident(name)


def _create_trigger_sql(spec: TriggerSpec) -> str:
    level = "ROW" if spec.for_each_row else "STATEMENT"
    when = ""
    if spec.when_columns:
        condition = when_condition(spec.when_columns, separator="\n          IS DISTINCT FROM ")
        when = f"    WHEN ({condition})\n"
    events = []
    for event in spec.events:
        if event == "UPDATE" and spec.update_of:
            event += " OF " + ", ".join(quote_ident(column) for column in spec.update_of)
        events.append(event)
    referencing = ""
    if spec.old_table:
        referencing = f"    REFERENCING OLD TABLE AS {spec.old_table}\n"
    elif spec.new_table:
        referencing = f"    REFERENCING NEW TABLE AS {spec.new_table}\n"
    arguments = ", ".join(quote_literal(argument) for argument in spec.arguments)
    function = spec.function.removesuffix("()")
    return (
        f"CREATE OR REPLACE TRIGGER {_trigger_name_sql(spec.name)}\n"
        f"    AFTER {' OR '.join(events)} ON {quote_ident(spec.table)}\n"
        f"{referencing}"
        f"    FOR EACH {level}\n"
        f"{when}"
        f"    EXECUTE FUNCTION {function}({arguments});\n"
    )


def _drop_trigger_sql(table: str, name: str) -> str:
    return f"DROP TRIGGER IF EXISTS {_trigger_name_sql(name)} ON {quote_ident(table)};\n"


def _function_sql(
    signature: str, body: str, *, returns: str = "trigger", stable: bool = False
) -> str:
    tag = _dollar_tag(body)
    volatility = "    STABLE\n" if stable else ""
    return (
        f"CREATE OR REPLACE FUNCTION {signature}\n"
        f"    RETURNS {returns}\n"
        "    LANGUAGE plpgsql\n"
        f"{volatility}"
        "    SET search_path = ''\n"
        f"AS {tag}\n{body}\n{tag};\n"
    )


def render_trigger_sql(
    sources: SourceMap,
    channel: str,
    *,
    mode: TriggerMode = DEFAULT_TRIGGER_MODE,
    revision: int = CURRENT_REVISION,
    drop_other_modes: bool = False,
    before_update_tables: Collection[str] = (),
    with_indexes: bool = False,
) -> str:
    """The trigger migration for ``sources``, ``channel`` and ``mode``: the function, then each
    table's triggers. For the default mapping and ``vocabulary_changed`` it is the committed
    migration file of that mode and revision.

    ``drop_other_modes`` appends ``DROP TRIGGER IF EXISTS`` for the trigger names ``mode`` does
    not use (statement mode drops precise mode's UPDATE trigger): what ``vocabsync migrate``
    runs, so that switching modes leaves nothing behind. The committed files go without: each is
    applied on a database that holds no trigger of a later mode.

    ``before_update_tables``: see :func:`trigger_specs` (``migrate`` asks the database; the
    committed files assume none, as in the base schema).

    ``revision``: see :data:`REVISIONS`. Each committed file is the rendering of the revision it
    was released with; revision 2 and later also create the failure log the function writes to,
    revision 3 the identity function. Delta mode needs revision 3.

    ``with_indexes`` (delta mode): append ``CREATE INDEX IF NOT EXISTS`` for the lookup indexes,
    which blocks writes while they build: the committed file does, for ``supabase db push``;
    ``vocabsync migrate`` builds them with ``CREATE INDEX CONCURRENTLY`` instead.

    The channel is not validated here (settings do that), so tests can install a function whose
    notify fails.
    """
    require_revision(revision)
    specs = trigger_specs(sources, mode, before_update_tables)
    if mode == "delta" and revision < 3:
        raise ValueError("delta mode needs revision 3 or later")
    if revision == 1:
        parts = [templates.load(_HEADERS[mode])]
    elif revision == 2:
        parts = [templates.load("failure_log_header.sql"), templates.load("failure_log_table.sql")]
    else:
        header = templates.render(
            "delta_header.sql",
            mode=mode,
            max_payload_bytes=f"{MAX_PAYLOAD_BYTES:,}",
            max_deltas=f"{MAX_DELTAS_PER_TRANSACTION:,}",
        )
        parts = [header, templates.load("failure_log_table.sql"), identity_sql()]
    if mode == "delta":
        parts.append(_function_sql(DELTA_FUNCTION_SIGNATURE, delta_function_body(sources, channel)))
    else:
        parts.append(_function_sql(FUNCTION_SIGNATURE, function_body(channel, revision)))
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
    if with_indexes and mode == "delta":
        parts.append("".join(f"{create_index_sql(i)};\n" for i in lookup_indexes(sources)))
    return "\n".join(parts)


def render_rollback_sql(sources: SourceMap) -> str:
    """SQL that drops every mode's triggers on the tables of ``sources`` and both trigger
    functions, in one transaction. It keeps the failure log, the identity function and the
    lookup indexes: history, and what the loader still reads.

    Tables that no longer exist are fine (``DROP TRIGGER IF EXISTS`` only notices them).
    """
    drops = "".join(
        _drop_trigger_sql(table, name) for table in sources.tables for name in TRIGGER_NAMES
    )
    return (
        f"{templates.load('rollback_header.sql')}\n"
        "BEGIN;\n\n"
        f"{drops}\n"
        f"DROP FUNCTION IF EXISTS {FUNCTION_SIGNATURE};\n"
        f"DROP FUNCTION IF EXISTS {DELTA_FUNCTION_SIGNATURE};\n\n"
        "COMMIT;\n"
    )


def require_revision(revision: int) -> None:
    if revision not in REVISIONS:
        raise ValueError(f"unknown function revision {revision!r}; known: {REVISIONS}")


def require_mode(mode: str) -> None:
    if mode not in TRIGGER_MODES:
        raise ValueError(f"unknown trigger mode {mode!r}; known: {', '.join(TRIGGER_MODES)}")
